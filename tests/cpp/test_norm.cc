// Tests of batch norm, layer norm and embedding beyond the generic sample
// tests: running statistics over several training steps and their use in
// inference, the update as a graph node writing the Variables (matching
// eager), f32 against f64 on shapes that take the parallel paths, gradients
// of small composite nets in f64, embedding gradients (only looked-up rows,
// none at padding_idx), and errors that name the op and the values.
#include <catch2/catch.hpp>

#include "op_samples.h"
#include "runtime/session.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// The batch statistics of x [N, C, *] as NumPy would compute them.
Axes stat_axes(const Tensor& x) {
  Axes a{0};
  for (int64_t d = 2; d < x.rank(); ++d) a.push_back(d);
  return a;
}

Tensor per_channel(const Tensor& v, const Tensor& x) {
  Shape s(static_cast<size_t>(x.rank()), 1);
  s[1] = v.shape()[0];
  return reshape(v, s);
}

// (x - mean) / sqrt(var + eps) * w + b from elementwise ops.
Tensor reference_bn(const Tensor& x, const Tensor& mean, const Tensor& var, const Tensor& w, const Tensor& b,
                    double eps) {
  Tensor y = (x - per_channel(mean, x)) * rsqrt(per_channel(var, x) + eps);
  return w.defined() ? y * per_channel(w, x) + per_channel(b, x) : y;
}

// Row i of t along axis 0 (t[i] in NumPy).
Tensor row(const Tensor& t, int64_t i) {
  Shape rest;
  for (size_t d = 1; d < t.shape().size(); ++d) rest.push_back(t.shape()[d]);
  return reshape(slice(t, 0, i, i + 1), rest);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace

TEST_CASE("batch_norm: running statistics over training steps, then inference", "[norm]") {
  Tensor w = rnd({3}, 2, 0.5, 1.5), b = rnd({3}, 3);
  Tensor rm = zeros({3}, DType::f64).mark_variable("running_mean");
  Tensor rv = ones({3}, DType::f64).mark_variable("running_var");
  Tensor em = zeros({3}, DType::f64), ev = ones({3}, DType::f64);  // expected
  const double momentum = 0.2, eps = 1e-5;
  for (uint64_t step = 0; step < 4; ++step) {
    Tensor x = rnd({5, 3, 2, 2}, 10 + step, -2.0, 3.0);
    Tensor y = batch_norm(x, w, b, rm, rv, true, momentum, eps);
    Axes ax = stat_axes(x);
    REQUIRE_CLOSE(y, reference_bn(x, mean(x, ax), var(x, ax, false, 0), w, b, eps), 1e-12, 1e-10);
    em = em * (1 - momentum) + mean(x, ax) * momentum;
    ev = ev * (1 - momentum) + var(x, ax, false, 1) * momentum;  // unbiased, as PyTorch
    REQUIRE_CLOSE(rm, em, 1e-12, 1e-12);
    REQUIRE_CLOSE(rv, ev, 1e-12, 1e-12);
  }
  Tensor x = rnd({2, 3, 2, 2}, 99);
  REQUIRE_CLOSE(batch_norm(x, w, b, rm, rv, false, momentum, eps), reference_bn(x, rm, rv, w, b, eps), 1e-12,
                1e-10);
  // Inference does not touch the statistics; training without them only normalizes.
  REQUIRE_CLOSE(rm, em, 1e-12, 1e-12);
  Tensor y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true);
  REQUIRE_CLOSE(y, reference_bn(x, mean(x, {0, 2, 3}), var(x, {0, 2, 3}, false, 0), Tensor(), Tensor(), 1e-5),
                1e-12, 1e-10);
  // A weight without a bias (or the reverse) is completed with zeros (ones).
  REQUIRE_CLOSE(batch_norm(x, w, Tensor(), rm, rv, false),
                reference_bn(x, rm, rv, w, zeros({3}, DType::f64), 1e-5), 1e-12, 1e-10);
}

TEST_CASE("batch_norm_update_stats: momentum and the unbiased variance", "[norm]") {
  Tensor rm = tensor(std::vector<double>{1, 2, 3}, {3}), rv = tensor(std::vector<double>{1, 1, 2}, {3});
  Tensor m = tensor(std::vector<double>{0, 1, -1}, {3}), v = tensor(std::vector<double>{0.5, 2, 4}, {3});
  batch_norm_update_stats(rm, rv, m, v, zeros({2, 3, 2}, DType::f64), 0.25);  // n = 4
  REQUIRE_CLOSE(rm, tensor(std::vector<double>{0.75, 1.75, 2.0}, {3}), 1e-15, 0);
  REQUIRE_CLOSE(rv, tensor(std::vector<double>{0.75 + 0.25 * 0.5 * 4 / 3, 0.75 + 0.25 * 2 * 4 / 3,
                                               1.5 + 0.25 * 4 * 4 / 3}, {3}), 1e-15, 1e-15);
  // Strided running statistics (a view) are written in place.
  Tensor buf = zeros({3, 2}, DType::f64);
  Tensor a = Tensor::make_view(buf, {3}, {2}, buf.offset()), c = Tensor::make_view(buf, {3}, {2}, buf.offset() + 1);
  REQUIRE(!a.is_contiguous());
  batch_norm_update_stats(a, c, m, v, zeros({4, 3}, DType::f64), 1.0);
  REQUIRE_CLOSE(buf, tensor(std::vector<double>{0, 0.5 * 4 / 3, 1, 2 * 4 / 3.0, -1, 4 * 4 / 3.0}, {3, 2}), 1e-15,
                1e-15);
}

TEST_CASE("batch_norm: training steps with backward keep working (the update never bumps a saved tensor)",
          "[norm][grad]") {
  Tensor w = rnd({4}, 2, 0.5, 1.5).set_requires_grad(), b = rnd({4}, 3).set_requires_grad();
  Tensor rm = zeros({4}, DType::f64).mark_variable(), rv = ones({4}, DType::f64).mark_variable();
  for (uint64_t step = 0; step < 3; ++step) {
    Tensor x = rnd({6, 4}, 20 + step).set_requires_grad();
    Tensor y = batch_norm(x, w, b, rm, rv, true);
    Tensor y2 = batch_norm(relu(y), w, b, rm, rv, true);  // the statistics are updated twice per step
    REQUIRE_NOTHROW(sum(y2 * y2).backward());
    REQUIRE(x.grad().defined());
  }
  // The sums of the normalized values over the batch vanish, so does sum(dx) of sum(y).
  Tensor x = rnd({6, 4}, 30).set_requires_grad();
  sum(batch_norm(x, w, b, rm, rv, true)).backward();
  REQUIRE(max_abs(x.grad()) < 1e-12);
  // Running statistics that require grad are refused (they are buffers, not parameters).
  Tensor rg = zeros({4}, DType::f64).set_requires_grad();
  REQUIRE_THROWS_WITH(batch_norm(x, w, b, rg, rv, true),
                      Catch::Contains("[batch_norm_update_stats]") && Catch::Contains("requires grad"));
}

TEST_CASE("norm layers in composite nets pass gradcheck in f64", "[norm][grad]") {
  Tensor x = rnd({4, 3, 2, 2}, 1), w = rnd({3}, 2, 0.5, 1.5), b = rnd({3}, 3);
  Tensor lw = rnd({2, 2}, 4, 0.5, 1.5), lb = rnd({2, 2}, 5);
  for (Tensor* t : {&x, &w, &b, &lw, &lb}) t->set_requires_grad(true);
  Tensor rm = rnd({3}, 6, -0.5, 0.5), rv = rnd({3}, 7, 0.5, 2.0);  // fixed: inference only
  gradcheck(
      [&](const std::vector<Tensor>& in) {
        Tensor h = batch_norm(in[0], in[1], in[2], Tensor(), Tensor(), true);
        h = layer_norm(tanh(h), {2, 2}, in[3], in[4]);
        return batch_norm(h * h, in[1], Tensor(), rm, rv, false);
      },
      {x, w, b, lw, lb});
  Tensor table = rnd({6, 4}, 6).set_requires_grad();
  Tensor idx = tensor(std::vector<int64_t>{5, 0, 5, 2, 3, 3}, {2, 3});
  gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(embedding(in[0], idx), {4}); }, {table});
}

TEST_CASE("batch_norm and layer_norm: f32 matches f64 on the parallel paths", "[norm]") {
  // [N, C] (columns), [N, C, H, W] (planes) and a wide layer norm, forward and backward.
  for (Shape s : {Shape{512, 96}, Shape{8, 16, 20, 20}, Shape{3, 1, 4097}}) {
    INFO("shape " << shape_str(s));
    int64_t C = s[1];
    Tensor x = rnd(s, 1, -2.0, 4.0), g = rnd(s, 2), w = rnd({C}, 3, 0.5, 1.5), b = rnd({C}, 4);
    for (bool training : {true, false}) {
      Tensor rm = rnd({C}, 5, -0.5, 0.5), rv = rnd({C}, 6, 0.5, 2.0);
      std::vector<Tensor> r64, r32;
      for (DType dt : {DType::f64, DType::f32}) {
        Tensor xi = x.to(dt).detach().set_requires_grad(), wi = w.to(dt).detach().set_requires_grad();
        Tensor bi = b.to(dt);
        Tensor y = training ? batch_norm(xi, wi, bi, Tensor(), Tensor(), true)
                            : batch_norm(xi, wi, bi, rm.to(dt), rv.to(dt), false);
        sum(y * g.to(dt)).backward();
        auto& r = dt == DType::f64 ? r64 : r32;
        r = {y, xi.grad(), wi.grad()};
      }
      for (size_t i = 0; i < r64.size(); ++i)
        REQUIRE_CLOSE(r32[i].to(DType::f64), r64[i], 2e-5 * std::max(1.0, max_abs(r64[i])), 1e-4);
    }
  }
  for (Shape s : {Shape{300, 257}, Shape{2, 3, 5000}}) {
    INFO("layer_norm shape " << shape_str(s));
    int64_t D = s.back();
    Tensor x = rnd(s, 7, -1.0, 3.0), g = rnd(s, 8), w = rnd({D}, 9, 0.5, 1.5), b = rnd({D}, 10);
    std::vector<Tensor> r64, r32;
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor xi = x.to(dt).detach().set_requires_grad(), wi = w.to(dt).detach().set_requires_grad();
      Tensor bi = b.to(dt).detach().set_requires_grad();
      Tensor y = layer_norm(xi, {D}, wi, bi);
      sum(y * g.to(dt)).backward();
      auto& r = dt == DType::f64 ? r64 : r32;
      r = {y, xi.grad(), wi.grad(), bi.grad()};
    }
    for (size_t i = 0; i < r64.size(); ++i)
      REQUIRE_CLOSE(r32[i].to(DType::f64), r64[i], 2e-5 * std::max(1.0, max_abs(r64[i])), 1e-4);
  }
}

TEST_CASE("batch_norm in a graph: the running-statistics update is a node writing the Variables",
          "[norm][graph]") {
  Tensor w = rnd({3}, 2, 0.5, 1.5, DType::f32), b = rnd({3}, 3, -1, 1, DType::f32);
  Tensor rm = zeros({3}).mark_variable("rm"), rv = ones({3}).mark_variable("rv");
  Tensor erm = zeros({3}).mark_variable(), erv = ones({3}).mark_variable();  // the eager twin
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 3, 2});
    Tensor y = batch_norm(x, w, b, rm, rv, true, 0.3);
    CHECK(y.shape() == Shape{-1, 3, 2});
    g.mark_output("y", y);
    g.mark_output("dx", gradients({sum(y * y * y)}, {x})[0]);
  }
  std::string update;
  for (const Node* n : g.nodes())
    if (n->op->name() == "batch_norm_update_stats") update = n->name;
  REQUIRE(!update.empty());
  Session sess(g);
  for (int64_t n : {4, 7, 2}) {
    Tensor x = rnd({n, 3, 2}, static_cast<uint64_t>(n), -1, 2, DType::f32).set_requires_grad();
    auto out = sess.run({{"x", x}}, {"y", "dx"}, {update});
    Tensor y = batch_norm(x, w, b, erm, erv, true, 0.3);
    REQUIRE_CLOSE(out[0], y, 1e-6, 1e-5);
    sum(y * y * y).backward();
    REQUIRE_CLOSE(out[1], x.grad(), 1e-5, 1e-4);
    REQUIRE_CLOSE(rm, erm, 1e-6, 1e-6);
    REQUIRE_CLOSE(rv, erv, 1e-6, 1e-6);
  }
  // Inference in a graph reads the Variables by reference.
  Graph gi;
  {
    GraphScope scope(gi);
    gi.mark_output("y", batch_norm(gi.placeholder("x", {-1, 3}), w, b, rm, rv, false));
  }
  Session si(gi);
  Tensor x = rnd({2, 3}, 5, -1, 1, DType::f32);
  REQUIRE_CLOSE(si.run({{"x", x}}, {"y"})[0], batch_norm(x, w, b, erm, erv, false), 1e-6, 1e-6);
  {
    NoGradGuard ng;
    rm.fill_(1.0);
    erm.fill_(1.0);
  }
  REQUIRE_CLOSE(si.run({{"x", x}}, {"y"})[0], batch_norm(x, w, b, erm, erv, false), 1e-6, 1e-6);
}

TEST_CASE("embedding: rows, gradients of looked-up rows only, padding_idx", "[norm][embedding]") {
  Tensor table = rnd({6, 3}, 1).set_requires_grad();
  Tensor idx = tensor(std::vector<int32_t>{4, 1, 4, 0, 1, 4}, {3, 2});
  Tensor y = embedding(table, idx, -2);  // padding_idx -2 is row 4
  REQUIRE(y.shape() == Shape{3, 2, 3});
  Tensor flat = reshape(y.detach(), {6, 3});
  REQUIRE_CLOSE(row(flat, 0), row(table.detach(), 4), 0, 0);
  REQUIRE_CLOSE(row(flat, 5), row(table.detach(), 4), 0, 0);
  REQUIRE_CLOSE(row(flat, 3), row(table.detach(), 0), 0, 0);
  Tensor g = rnd({3, 2, 3}, 2), gf = reshape(g, {6, 3});
  sum(y * g).backward();
  Tensor dw = table.grad();
  REQUIRE_CLOSE(row(dw, 1), row(gf, 1) + row(gf, 4), 1e-15, 0);
  REQUIRE_CLOSE(row(dw, 0), row(gf, 3), 0, 0);
  for (int64_t r : {2, 3, 4, 5}) REQUIRE_CLOSE(row(dw, r), zeros({3}, DType::f64), 0, 0);  // 4: padding
  // Without padding, row 4 sums its three lookups.
  REQUIRE_CLOSE(row(embedding_backward(g, idx, 6), 4), row(gf, 0) + row(gf, 2) + row(gf, 5), 1e-15, 0);
  // 0-d indices, and an empty index list.
  REQUIRE(embedding(table, tensor(std::vector<int64_t>{2}, {})).shape() == Shape{3});
  REQUIRE(embedding(table, zeros({0, 2}, DType::i64)).shape() == Shape{0, 2, 3});
  REQUIRE(embedding_backward(zeros({0, 3}, DType::f64), zeros({0}, DType::i64), 4).shape() == Shape{4, 3});
  // Large enough to split the columns across threads: equal to the loop.
  Tensor big = rnd({1000, 64}, 3), bidx = tensor(std::vector<int64_t>(4096, 7), {4096});
  Tensor bg = rnd({4096, 64}, 4);
  Tensor d = embedding_backward(bg, bidx, 1000);
  REQUIRE_CLOSE(row(d, 7), sum(bg, {0}), 1e-10, 1e-12);
  REQUIRE(max_abs(row(d, 6)) == 0);
}

TEST_CASE("norm and embedding errors name the op and the values", "[norm][errors]") {
  Tensor x = zeros({4, 3}, DType::f64), w = ones({3}, DType::f64), rm = zeros({3}, DType::f64);
  REQUIRE_THROWS_AS(batch_norm(zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true), ValueError);
  REQUIRE_THROWS_WITH(batch_norm(zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                      Catch::Contains("[batch_norm]") && Catch::Contains("more than one value per channel") &&
                          Catch::Contains("[1,3]"));
  REQUIRE_THROWS_WITH(batch_norm(x, ones({4}, DType::f64), zeros({4}, DType::f64), rm, rm, true),
                      Catch::Contains("[batch_norm] weight must have shape [3]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, Tensor(), Tensor(), false),
                      Catch::Contains("[batch_norm] inference (training = false) needs running_mean"));
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, zeros({2}, DType::f64), rm, false),
                      Catch::Contains("[batch_norm_inference] mean must have shape [3]"));
  REQUIRE_THROWS_WITH(batch_norm(zeros({4}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                      Catch::Contains("at least 2 dims"));
  REQUIRE_THROWS_AS(batch_norm(zeros({4, 3}, DType::i64), Tensor(), Tensor(), Tensor(), Tensor(), true), TypeError);
  REQUIRE_THROWS_WITH(batch_norm(x, w, w, rm, rm, true, 1.5),
                      Catch::Contains("[batch_norm_update_stats] momentum must be in [0, 1]"));

  REQUIRE_THROWS_WITH(layer_norm(zeros({2, 3, 4}), {3}),
                      Catch::Contains("[layer_norm] input of shape [2,3,4] does not end with normalized_shape [3]"));
  REQUIRE_THROWS_WITH(layer_norm(zeros({2, 4}), {4}, ones({3})),
                      Catch::Contains("[layer_norm] weight must have the normalized shape [4]"));
  REQUIRE_THROWS_AS(layer_norm(zeros({2, 4}), {}), ValueError);

  Tensor table = zeros({5, 3});
  REQUIRE_THROWS_AS(embedding(table, tensor(std::vector<int64_t>{0, 7, 1}, {3})), IndexError);
  REQUIRE_THROWS_WITH(embedding(table, tensor(std::vector<int64_t>{0, 7, 1}, {3})),
                      Catch::Contains("[embedding] index 7 at position 1 is out of range for 5 embeddings") &&
                          Catch::Contains("0..4"));
  REQUIRE_THROWS_WITH(embedding(table, tensor(std::vector<int32_t>{-1}, {1})),
                      Catch::Contains("[embedding] index -1"));
  REQUIRE_THROWS_WITH(embedding_backward(zeros({1, 3}), tensor(std::vector<int64_t>{5}, {1}), 5),
                      Catch::Contains("[embedding_backward] index 5"));
  REQUIRE_THROWS_AS(embedding(table, zeros({2})), TypeError);
  REQUIRE_THROWS_WITH(embedding(table, zeros({2})), Catch::Contains("[embedding] indices must be i32 or i64"));
  REQUIRE_THROWS_WITH(embedding(zeros({5}), zeros({2}, DType::i64)), Catch::Contains("[embedding] weight must be 2-d"));
  REQUIRE_THROWS_WITH(embedding(table, zeros({2}, DType::i64), 5), Catch::Contains("padding_idx 5 is out of range"));
  REQUIRE_THROWS_WITH(embedding_backward(zeros({2, 3}), zeros({3}, DType::i64), 5),
                      Catch::Contains("[embedding_backward] grad must have shape"));
}
