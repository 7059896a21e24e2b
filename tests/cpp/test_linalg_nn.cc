// Tests of the linalg and nn families beyond the generic sample tests:
// matmul against a naive f64 reference at awkward sizes and layouts (every
// path of the kernel: direct, transposed, folded batch, per-matrix batch,
// packed copies), error messages, softmax stability, the cross_entropy /
// mse_loss / dropout compositions against NumPy, their gradients and the
// statistics of dropout.
#include <catch2/catch.hpp>

#include <cmath>

#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// C = A @ B for 2-d tensors, by the definition, in f64.
Tensor reference_matmul(const Tensor& a, const Tensor& b) {
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  std::vector<double> c(static_cast<size_t>(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) c[i * N + j] += av[i * K + k] * bv[k * N + j];
  return tensor(c, {M, N});
}

// An M x K operand, either contiguous or as the transposed view of a K x M one.
Tensor operand(int64_t rows, int64_t cols, bool transposed, uint64_t seed, DType dt) {
  return transposed ? rnd({cols, rows}, seed, -1, 1, dt).t() : rnd({rows, cols}, seed, -1, 1, dt);
}

double f32_atol(int64_t K) { return 2e-6 * static_cast<double>(std::max<int64_t>(K, 1)); }

}  // namespace

TEST_CASE("matmul f32 and f64 match a naive reference, any transposition (outer products too)", "[linalg]") {
  struct Size { int64_t M, N, K; };
  for (Size s : {Size{1, 1, 1}, Size{3, 5, 7}, Size{65, 129, 33}, Size{256, 256, 256}, Size{300, 70, 1}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        INFO("M=" << s.M << " N=" << s.N << " K=" << s.K << " transA=" << ta << " transB=" << tb);
        Tensor a = operand(s.M, s.K, ta, 11, DType::f32), b = operand(s.K, s.N, tb, 12, DType::f32);
        REQUIRE(a.is_contiguous() == (ta == 0 || s.M == 1 || s.K == 1));
        Tensor expected = reference_matmul(a, b);
        Tensor c = matmul(a, b);
        REQUIRE(c.dtype() == DType::f32);
        REQUIRE_CLOSE(c, expected, f32_atol(s.K), 1e-5);
        Tensor c64 = matmul(a.to(DType::f64), b.to(DType::f64));
        REQUIRE(c64.dtype() == DType::f64);
        REQUIRE_CLOSE(c64, expected, 1e-12, 1e-12);
      }
  }
}

TEST_CASE("matmul batches: folded, broadcast, many small, expanded operands", "[linalg]") {
  for (DType dt : {DType::f32, DType::f64}) {
    INFO("dtype " << dtype_name(dt));
    double atol = dt == DType::f32 ? 1e-4 : 1e-12;
    auto check = [&](const Tensor& a, const Tensor& b) {
      Tensor c = matmul(a, b);
      // Compare each batch element with the 2-d reference.
      Tensor a4 = broadcast_to(a, {c.size(0), a.size(-2), a.size(-1)});
      Tensor b4 = broadcast_to(b, {c.size(0), b.size(-2), b.size(-1)});
      for (int64_t i = 0; i < c.size(0); ++i) {
        INFO("batch element " << i);
        REQUIRE_CLOSE(c.slice(0, i, i + 1).squeeze({0}),
                      reference_matmul(a4.slice(0, i, i + 1).squeeze({0}),
                                       b4.slice(0, i, i + 1).squeeze({0})),
                      atol, 1e-5);
      }
    };
    // Shared right operand: one tall GEMM.
    check(rnd({4, 65, 33}, 1, -1, 1, dt), rnd({33, 17}, 2, -1, 1, dt));
    // Shared right operand, transposed left: one GEMM per batch element.
    check(rnd({4, 33, 65}, 3, -1, 1, dt).transpose(1, 2), rnd({33, 17}, 4, -1, 1, dt));
    // Shared left operand, batched right.
    check(rnd({9, 12}, 5, -1, 1, dt), rnd({3, 12, 7}, 6, -1, 1, dt));
    // Many small matrices: spread over threads, one per thread.
    check(rnd({300, 4, 5}, 7, -1, 1, dt), rnd({300, 5, 3}, 8, -1, 1, dt));
    // A right operand whose rows are all the same vector (stride 0): packed first.
    check(rnd({2, 6, 8}, 9, -1, 1, dt), broadcast_to(rnd({1, 5}, 10, -1, 1, dt), {8, 5}));
  }
  // Batch dims broadcast both ways: [2,1,4,3] @ [5,3,6] -> [2,5,4,6].
  Tensor a = rnd({2, 1, 4, 3}, 13), b = rnd({5, 3, 6}, 14);
  Tensor c = matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 5, 4, 6});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j) {
      Tensor ai = a.slice(0, i, i + 1).reshape({4, 3}), bj = b.slice(0, j, j + 1).reshape({3, 6});
      REQUIRE_CLOSE(c.slice(0, i, i + 1).slice(1, j, j + 1).reshape({4, 6}),
                    reference_matmul(ai, bj), 1e-12, 1e-12);
    }
}

TEST_CASE("matmul does not read the memory it writes, in-place targets may be views", "[linalg]") {
  const OpDef& op = op_def("matmul");
  Tensor a = rnd({3, 4}, 21, -1, 1, DType::f32), b = rnd({4, 5}, 22, -1, 1, DType::f32);
  Tensor out = full({3, 5}, std::nan(""), DType::f32);
  Tensor ins[2] = {a, b};
  Tensor outs[1] = {out};
  Attrs attrs;
  KernelContext ctx(op, ins, outs, attrs, get_num_threads());
  op.kernel(DeviceType::CPU)(ctx);
  REQUIRE_CLOSE(out, reference_matmul(a, b), 1e-5, 1e-5);

  // Writing into a transposed view goes through a temporary.
  Tensor base = zeros({5, 3}, DType::f32);
  Tensor view = base.t();
  call_op_into(op, ins, {}, view);
  REQUIRE_CLOSE(base, reference_matmul(a, b).t(), 1e-5, 1e-5);
}

TEST_CASE("matmul rejects bad shapes and dtypes with the op's name", "[linalg]") {
  REQUIRE_THROWS_AS(matmul(zeros({2, 3}), zeros({4, 5})), ShapeError);
  REQUIRE_THROWS_WITH(matmul(zeros({2, 3}), zeros({4, 5})),
                      Catch::Contains("[matmul] inner dimensions differ: a has shape [2,3], b has "
                                      "shape [4,5] (a's last dim 3 must equal b's second-to-last 4)"));
  REQUIRE_THROWS_WITH(matmul(zeros({3}), zeros({4})), Catch::Contains("[matmul]") &&
                                                          Catch::Contains("b's length 4"));
  REQUIRE_THROWS_AS(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), ShapeError);
  REQUIRE_THROWS_WITH(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})),
                      Catch::Contains("[matmul] batch dimensions do not broadcast"));
  REQUIRE_THROWS_AS(matmul(scalar(2.0), zeros({2, 2})), ShapeError);
  REQUIRE_THROWS_WITH(matmul(scalar(2.0), zeros({2, 2})), Catch::Contains("[matmul]"));
  Tensor i = tensor(std::vector<int64_t>{1, 2, 3, 4}, {2, 2});
  REQUIRE_THROWS_AS(matmul(i, i), TypeError);
  REQUIRE_THROWS_WITH(matmul(i, i), Catch::Contains("[matmul]") && Catch::Contains("i64"));
}

TEST_CASE("matmul gradients: vectors, broadcast batches, transposed inputs", "[linalg]") {
  auto mm = [](const std::vector<Tensor>& xs) { return matmul(xs[0], xs[1]); };
  std::vector<std::pair<Shape, Shape>> cases = {
      {{3}, {3}}, {{3}, {2, 3, 4}}, {{2, 1, 4, 3}, {5, 3, 2}}, {{2, 3, 4}, {4}}, {{1, 3}, {2, 3, 2}},
      {{2, 2, 3, 4}, {4, 5}}};
  for (auto& [sa, sb] : cases) {
    INFO("a " << shape_str(sa) << " b " << shape_str(sb));
    Tensor a = rnd(sa, 31).set_requires_grad(), b = rnd(sb, 32).set_requires_grad();
    REQUIRE_NOTHROW(gradcheck(mm, {a, b}));
  }
  Tensor at = rnd({4, 3}, 33).t().set_requires_grad(), bt = rnd({2, 4}, 34).t().set_requires_grad();
  REQUIRE_NOTHROW(gradcheck(mm, {at, bt}));
}

// ------------------------------------------------------------------------ nn

TEST_CASE("softmax rows sum to 1 along any axis, f32 matches f64", "[nn]") {
  for (auto [shape, axis] : std::vector<std::pair<Shape, int64_t>>{
           {{64, 1000}, -1}, {{1000, 64}, 0}, {{6, 300, 50}, 1}, {{3, 7}, 1}, {{1, 1}, 0},
           {{5000, 10}, -1}, {{300, 63}, 1}, {{70, 64}, -1}, {{2, 3, 600}, 1}}) {
    INFO("shape " << shape_str(shape) << " axis " << axis);
    Tensor x = rnd(shape, 41, -20, 20, DType::f32);
    Tensor y = softmax(x, axis);
    REQUIRE_CLOSE(sum(y, {axis}), ones(sum(x, {axis}).shape(), DType::f32), 1e-5, 1e-5);
    Tensor y64 = softmax(x.to(DType::f64), axis);
    REQUIRE_CLOSE(y, y64, 1e-7, 1e-5);
    REQUIRE_CLOSE(log_softmax(x, axis), log_softmax(x.to(DType::f64), axis), 1e-5, 1e-5);
    REQUIRE_CLOSE(exp(log_softmax(x.to(DType::f64), axis)), y64, 1e-12, 1e-10);
  }
}

TEST_CASE("softmax and log_softmax are stable for huge logits", "[nn]") {
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = tensor(std::vector<double>{1000, -1000, -1000, -1000, 1000, 999}, {2, 3}).to(dt);
    REQUIRE_CLOSE(softmax(x), tensor(std::vector<double>{1, 0, 0, 0, 0.7310585786300049, 0.2689414213699951}, {2, 3}), 1e-7, 1e-6);
    REQUIRE_CLOSE(log_softmax(x), tensor(std::vector<double>{0, -2000, -2000, -2000.3132616875182, -0.31326168751822286, -1.3132616875182228}, {2, 3}), 1e-5, 1e-6);
    REQUIRE_CLOSE(softmax(x, 0), tensor(std::vector<double>{1, 0, 0, 0, 1, 1}, {2, 3}), 1e-7, 1e-6);
  }
  // Integers are computed in f32; a bad axis names the op.
  REQUIRE(softmax(tensor(std::vector<int64_t>{1, 2, 3})).dtype() == DType::f32);
  REQUIRE_THROWS_AS(softmax(zeros({2, 3}), 2), IndexError);
  REQUIRE_THROWS_WITH(log_softmax(zeros({2, 3}), -3), Catch::Contains("[log_softmax]"));
}

TEST_CASE("cross_entropy matches NumPy for every reduction and gradchecks", "[nn]") {
  Tensor logits = tensor(std::vector<double>{1.0, 2.0, 0.5, -1.0, 0.0, 0.3, -0.2, 2.2, 1.1, -1.5,
                                             -2.0, 0.0, 0.7, 0.4, 1.9, 0.25, 0.5, 0.75, 1.0, 1.25},
                         {4, 5});
  Tensor labels = tensor(std::vector<int64_t>{1, 2, 4, 0});
  Tensor none = tensor(std::vector<double>{0.5744379396277961, 0.46867849081278745,
                                           0.5271722286724988, 2.171111984358621});
  REQUIRE_CLOSE(cross_entropy(logits, labels, Reduction::None), none, 1e-12, 1e-12);
  REQUIRE_CLOSE(cross_entropy(logits, labels, Reduction::Mean), scalar(0.9353501608679259, DType::f64), 1e-12, 1e-12);
  REQUIRE_CLOSE(cross_entropy(logits, labels, Reduction::Sum), scalar(3.7414006434717035, DType::f64), 1e-12, 1e-12);
  // f32 logits and i32 labels.
  REQUIRE_CLOSE(cross_entropy(logits.to(DType::f32), labels.to(DType::i32)), scalar(0.9353501608679259), 1e-6, 1e-6);

  // [N, C, d] logits with [N, d] labels.
  Tensor x3 = tensor(std::vector<double>{0.1, -0.4, 1.2, 0.8, -1.0, 0.3, 0.6, 0.9, -0.2, 0.05, 1.5, -0.7}, {2, 3, 2});
  Tensor y3 = tensor(std::vector<int64_t>{2, 0, 1, 1}, {2, 2});
  REQUIRE_CLOSE(cross_entropy(x3, y3, Reduction::None),
                tensor(std::vector<double>{2.567191420879461, 1.8459113653670536, 2.1632642101630863, 1.3381575022251764}, {2, 2}),
                1e-12, 1e-12);
  REQUIRE_CLOSE(cross_entropy(x3, y3), scalar(1.978631124658694, DType::f64), 1e-12, 1e-12);

  for (Reduction r : {Reduction::Mean, Reduction::Sum, Reduction::None}) {
    auto f = [r](const std::vector<Tensor>& xs) { return cross_entropy(xs[0], xs[1], r); };
    REQUIRE_NOTHROW(gradcheck(f, {logits.detach().set_requires_grad(), labels}));
    REQUIRE_NOTHROW(gradcheck(f, {x3.detach().set_requires_grad(), y3}));
  }
}

// Loss and d(sum of losses)/d logits by the definition, in f64, for logits
// [N, C, inner] flattened and labels [N, inner].
std::pair<std::vector<double>, std::vector<double>> reference_ce(const Tensor& logits,
                                                                const Tensor& labels) {
  auto x = logits.to_vector<double>();
  auto y = labels.to_vector<int64_t>();
  int64_t N = logits.size(0), C = logits.size(1), inner = logits.numel() / (N * C);
  std::vector<double> loss(static_cast<size_t>(N * inner)), grad(x.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < inner; ++j) {
      auto at = [&](int64_t c) { return static_cast<size_t>((n * C + c) * inner + j); };
      double m = -INFINITY, s = 0;
      for (int64_t c = 0; c < C; ++c) m = std::max(m, x[at(c)]);
      for (int64_t c = 0; c < C; ++c) s += std::exp(x[at(c)] - m);
      int64_t k = y[static_cast<size_t>(n * inner + j)];
      loss[static_cast<size_t>(n * inner + j)] = std::log(s) + m - x[at(k)];
      for (int64_t c = 0; c < C; ++c) grad[at(c)] = std::exp(x[at(c)] - m) / s - (c == k);
    }
  return {loss, grad};
}

TEST_CASE("cross_entropy kernels agree with a naive reference on every path", "[nn]") {
  // Short rows in blocks, long rows, strided columns across a block boundary.
  for (Shape shape : {Shape{3000, 10}, Shape{50, 100}, Shape{4, 7, 300}, Shape{3, 5, 2, 3}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      INFO("logits " << shape_str(shape) << " " << dtype_name(dt));
      Tensor x = rnd(shape, 61, -8, 8, dt).set_requires_grad();
      Shape ls = shape;
      ls.erase(1);
      Tensor u = rnd(ls, 62, 0, static_cast<double>(shape[1]) - 1e-9);
      Tensor y = floor(u).to(DType::i64);
      auto [loss, grad] = reference_ce(x.detach(), y);
      Tensor l = cross_entropy(x, y, Reduction::None);
      REQUIRE_CLOSE(l, tensor(loss, ls), 1e-5, 1e-5);
      l.backward(ones_like(l));
      REQUIRE_CLOSE(x.grad(), tensor(grad, shape), 1e-6, 1e-5);
    }
  }
  // Unbatched logits [C] with a 0-d label; u8 labels.
  Tensor x = tensor(std::vector<double>{0.2, -1.3, 0.7});
  REQUIRE_CLOSE(cross_entropy(x, scalar(2, DType::i64), Reduction::None), scalar(0.5549569196419908, DType::f64), 1e-12, 1e-12);
  REQUIRE_CLOSE(cross_entropy(x.reshape({1, 3}), tensor(std::vector<uint8_t>{2}, {1})), scalar(0.5549569196419908, DType::f64), 1e-12, 1e-12);
}

TEST_CASE("cross_entropy rejects bad labels with the op's name", "[nn]") {
  Tensor logits = zeros({3, 4});
  REQUIRE_THROWS_AS(cross_entropy(logits, tensor(std::vector<int64_t>{0, 4, 1})), IndexError);
  REQUIRE_THROWS_WITH(cross_entropy(logits, tensor(std::vector<int64_t>{0, 4, 1})),
                      Catch::Contains("[cross_entropy] label 4") && Catch::Contains("4 classes"));
  REQUIRE_THROWS_WITH(cross_entropy(logits, tensor(std::vector<int64_t>{0, -1, 1})),
                      Catch::Contains("[cross_entropy] label -1"));
  REQUIRE_THROWS_AS(cross_entropy(logits, tensor(std::vector<float>{0, 1, 2})), TypeError);
  REQUIRE_THROWS_WITH(cross_entropy(logits, tensor(std::vector<float>{0, 1, 2})),
                      Catch::Contains("[cross_entropy] labels must be an integer"));
  // The strided path ([N, C, d] logits) checks too.
  REQUIRE_THROWS_WITH(cross_entropy(zeros({2, 4, 3}), tensor(std::vector<int64_t>{0, 1, 2, 3, 7, 0}, {2, 3})),
                      Catch::Contains("[cross_entropy] label 7"));
  REQUIRE_THROWS_AS(cross_entropy(logits, tensor(std::vector<int64_t>{0, 1})), ShapeError);
  REQUIRE_THROWS_AS(cross_entropy(logits, zeros({3, 4}, DType::i64)), ShapeError);
}

TEST_CASE("mse_loss matches NumPy, gradchecks, and refuses to broadcast", "[nn]") {
  Tensor p = tensor(std::vector<double>{0.5, -1.0, 2.0, 0.25}, {2, 2});
  Tensor t = tensor(std::vector<double>{1.0, -0.5, 1.5, 1.0}, {2, 2});
  REQUIRE_CLOSE(mse_loss(p, t, Reduction::None), tensor(std::vector<double>{0.25, 0.25, 0.25, 0.5625}, {2, 2}));
  REQUIRE_CLOSE(mse_loss(p, t), scalar(0.328125, DType::f64));
  REQUIRE_CLOSE(mse_loss(p, t, Reduction::Sum), scalar(1.3125, DType::f64));
  REQUIRE_NOTHROW(gradcheck([](const std::vector<Tensor>& xs) { return mse_loss(xs[0], xs[1]); },
                            {p.detach().set_requires_grad(), t.detach().set_requires_grad()}));
  REQUIRE_THROWS_AS(mse_loss(zeros({4, 1}), zeros({4})), ShapeError);
  REQUIRE_THROWS_WITH(mse_loss(zeros({4, 1}), zeros({4})), Catch::Contains("[mse_loss]"));
}

TEST_CASE("dropout zeroes a fraction p, preserves the expectation, is identity in eval", "[nn]") {
  const int64_t n = 200000;
  Tensor x = ones({n});
  for (double p : {0.1, 0.3, 0.5, 0.9}) {
    INFO("p = " << p);
    Generator gen(1234);
    Tensor y = dropout(x, p, true, &gen);
    auto v = y.to_vector<float>();
    int64_t zeros_seen = 0;
    for (float e : v) {
      if (e == 0.0f) ++zeros_seen;
      else REQUIRE(e == Approx(1.0 / (1.0 - p)).epsilon(1e-6));
    }
    double frac = static_cast<double>(zeros_seen) / n;
    double sd = std::sqrt(p * (1 - p) / n);
    REQUIRE(std::abs(frac - p) < 6 * sd);
    REQUIRE(mean(y).item<double>() == Approx(1.0).margin(6 * sd / (1 - p)));
    // The generator advances: the next mask differs.
    Tensor y2 = dropout(x, p, true, &gen);
    REQUIRE_FALSE(compare_tensors(y, y2).empty());
  }
  Tensor r = rnd({5, 7}, 51, -1, 1, DType::f32);
  REQUIRE_CLOSE(dropout(r, 0.5, false), r, 0, 0);
  REQUIRE_CLOSE(dropout(r, 0.0, true), r, 0, 0);
  REQUIRE_THROWS_AS(dropout(r, 1.0, true), ValueError);
  REQUIRE_THROWS_AS(dropout(r, -0.1, true), ValueError);
  REQUIRE_THROWS_WITH(dropout(r, 1.5, false), Catch::Contains("[dropout]"));
}

TEST_CASE("dropout's gradient is its mask scaled by 1/(1-p)", "[nn]") {
  Tensor x = ones({1000}).set_requires_grad();
  Generator gen(7);
  Tensor y = dropout(x, 0.4, true, &gen);
  y.sum().backward();
  REQUIRE_CLOSE(x.grad(), y.detach(), 1e-6, 1e-6);
}

TEST_CASE("matmul and the nn ops build graphs with unknown batch dims, gradients included",
          "[linalg][nn]") {
  Graph g;
  GraphScope scope(g);
  Tensor x = g.placeholder("x", {-1, 4});
  Tensor w = g.placeholder("w", {4, 3});
  Tensor labels = g.placeholder("labels", {-1}, DType::i64);
  Tensor h = matmul(x, w);
  CHECK(h.shape() == Shape{-1, 3});
  Tensor loss = cross_entropy(h, labels);
  CHECK(loss.shape() == Shape{});
  auto gs = gradients({loss}, {x, w});
  CHECK(gs[0].shape() == Shape{-1, 4});
  CHECK(gs[1].shape() == Shape{4, 3});

  // A batch of matrices times a vector, and times a shared matrix (the
  // gradient of the shared matrix goes through the flattened GEMM).
  Tensor b3 = g.placeholder("b3", {-1, 5, 4});
  Tensor v = g.placeholder("v", {4});
  Tensor r = matmul(b3, v);
  CHECK(r.shape() == Shape{-1, 5});
  Tensor bw = matmul(b3, w);
  CHECK(bw.shape() == Shape{-1, 5, 3});
  Tensor y = sum(log_softmax(bw, 1)) + sum(softmax(r, 0)) + mse_loss(r, r * 2.0);
  auto g2 = gradients({y}, {b3, v, w});
  CHECK(g2[0].shape() == Shape{-1, 5, 4});
  CHECK(g2[1].shape() == Shape{4});
  CHECK(g2[2].shape() == Shape{4, 3});
  CHECK(dropout(r, 0.5, false).same(r));
  REQUIRE_THROWS_WITH(matmul(x, g.placeholder("bad", {5, 2})), Catch::Contains("[matmul] inner dimensions differ"));
}
