// Tests of the shape/array ops beyond the generic samples: storage sharing of
// views, contiguous(), clear errors on bad input, composites (stack, split,
// flatten, transpose), the parallel paths on large tensors, and casts
// between all dtypes. Expected numbers come from NumPy semantics.
#include <catch2/catch.hpp>

#include <numeric>

#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;
using Catch::Contains;

namespace {

Tensor f64(std::vector<double> v, const Shape& s) { return tensor(v, s); }
Tensor i64(std::vector<int64_t> v, const Shape& s) { return tensor(v, s); }
bool shares(const Tensor& a, const Tensor& b) { return a.impl()->storage == b.impl()->storage; }

}  // namespace

TEST_CASE("array samples: forward, strided inputs and gradcheck", "[array]") {
  for (const OpSample& s : array_samples()) {
    INFO("sample " << s.op << " with " << s.inputs.size() << " inputs, first shape "
                   << shape_str(s.inputs[0].shape()));
    auto outs = call_op(op_def(s.op), s.inputs, s.attrs);
    std::vector<TensorMeta> metas;
    for (auto& t : s.inputs) metas.push_back({t.shape(), t.dtype(), t.device()});
    auto inferred = op_def(s.op).run_infer(metas, s.attrs);
    REQUIRE(inferred.size() == outs.size());
    for (size_t j = 0; j < outs.size(); ++j) {
      REQUIRE(inferred[j].shape == outs[j].shape());
      REQUIRE(inferred[j].dtype == outs[j].dtype());
    }
    for (size_t j = 0; j < s.expected.size(); ++j) REQUIRE_CLOSE(outs[j], s.expected[j], s.atol, s.rtol);
    std::vector<Tensor> strided;
    for (auto& t : s.inputs)
      strided.push_back(t.rank() >= 2 && t.numel() >= 2 ? t.transpose(0, -1).contiguous().transpose(0, -1) : t);
    auto outs2 = call_op(op_def(s.op), strided, s.attrs);
    for (size_t j = 0; j < s.expected.size(); ++j) REQUIRE_CLOSE(outs2[j], s.expected[j], s.atol, s.rtol);
    if (!op_def(s.op).differentiable() || !s.check_grad) continue;
    std::vector<Tensor> ins;
    for (size_t i = 0; i < s.inputs.size(); ++i) {
      Tensor t = s.inputs[i].detach();
      bool want = s.grad_inputs.empty() ? is_floating(t.dtype())
                                        : std::count(s.grad_inputs.begin(), s.grad_inputs.end(), int(i)) > 0;
      if (want) t = t.to(DType::f64).detach().set_requires_grad(true);
      ins.push_back(t);
    }
    REQUIRE_NOTHROW(gradcheck([&](const std::vector<Tensor>& xs) { return call_op1(op_def(s.op), xs, s.attrs); }, ins));
  }
}

TEST_CASE("views share storage and writes through them reach the base", "[array]") {
  Tensor x = zeros({3, 4}, DType::f64);
  REQUIRE(shares(reshape(x, {4, 3}), x));
  REQUIRE(shares(x.transpose(0, 1), x));
  REQUIRE(shares(permute(x, {1, 0}), x));
  REQUIRE(shares(unsqueeze(x, 1), x));
  REQUIRE(shares(squeeze(unsqueeze(x, 0)), x));
  REQUIRE(shares(expand(unsqueeze(x, 0), {2, 3, 4}), x));
  REQUIRE(shares(x.slice(1, 1, 3), x));

  x.slice(1, 1, 3).copy_(f64({1, 2}, {2}));  // broadcast over rows
  REQUIRE_CLOSE(x, f64({0, 1, 2, 0, 0, 1, 2, 0, 0, 1, 2, 0}, {3, 4}));
  x.t().slice(0, 3, 4).copy_(f64({7, 8, 9}, {1, 3}));  // last column, through a transpose
  REQUIRE_CLOSE(x, f64({0, 1, 2, 7, 0, 1, 2, 8, 0, 1, 2, 9}, {3, 4}));
  reshape(x, {12}).slice(0, 0, 12, 5).copy_(f64({-1, -2, -3}, {3}));  // flat positions 0, 5, 10
  REQUIRE_CLOSE(x, f64({-1, 1, 2, 7, 0, -2, 2, 8, 0, 1, -3, 9}, {3, 4}));

  // A row slice is still viewable as a flat vector; a column slice is not.
  Tensor rows = x.slice(0, 1, 3);
  REQUIRE(shares(reshape(rows, {8}), x));
  REQUIRE(reshape(rows, {8}).raw_data() == rows.raw_data());
  Tensor cols = x.slice(1, 0, 2);
  Tensor flat = reshape(cols, {6});
  REQUIRE_FALSE(shares(flat, x));
  REQUIRE_CLOSE(flat, f64({-1, 1, 0, -2, 0, 1}, {6}));
  // Merging dims of a transposed view needs a copy; splitting one does not.
  REQUIRE_FALSE(shares(reshape(x.t(), {12}), x));
  REQUIRE(shares(reshape(x.t(), {2, 2, 3}), x));
  REQUIRE_CLOSE(reshape(x.t(), {2, 2, 3}), reshape(x.t().contiguous(), {2, 2, 3}));
}

TEST_CASE("copy_ handles overlap, dtype conversion and strided targets", "[array]") {
  Tensor x = f64({0, 1, 2, 3, 4}, {5});
  x.slice(0, 1, 5).copy_(x.slice(0, 0, 4));  // like NumPy x[1:] = x[:-1]
  REQUIRE_CLOSE(x, f64({0, 0, 1, 2, 3}, {5}));
  Tensor y = zeros({2, 3}, DType::f32);
  y.t().copy_(f64({1.5, 2.5, 3.5}, {3, 1}));
  REQUIRE_CLOSE(y, f64({1.5, 2.5, 3.5, 1.5, 2.5, 3.5}, {2, 3}));
  Tensor z = zeros({3}, DType::i32);
  z.copy_(f64({1.9, -1.9, 7}, {3}));  // truncation like a NumPy astype
  REQUIRE(z.to_vector<int32_t>() == std::vector<int32_t>{1, -1, 7});
  REQUIRE_THROWS_AS(z.copy_(f64({1, 2}, {2})), ShapeError);
}

TEST_CASE("contiguous() and cast() return the input when nothing changes", "[array]") {
  Tensor x = seq({2, 3});
  REQUIRE(contiguous(x).same(x));
  REQUIRE(cast(x, DType::f64).same(x));
  Tensor c = x.clone();  // the cast op always writes a fresh buffer
  REQUIRE_FALSE(shares(c, x));
  REQUIRE_CLOSE(c, x);
  Tensor t = x.t();
  REQUIRE_FALSE(t.is_contiguous());
  Tensor tc = contiguous(t);
  REQUIRE(tc.is_contiguous());
  REQUIRE_FALSE(shares(tc, x));
  REQUIRE_CLOSE(tc, f64({-1, -0.25, -0.75, 0, -0.5, 0.25}, {3, 2}));
  Tensor e = expand(f64({1, 2}, {2, 1}), {2, 3});
  REQUIRE_CLOSE(contiguous(e), f64({1, 1, 1, 2, 2, 2}, {2, 3}));
}

TEST_CASE("cast converts between all dtypes", "[array]") {
  const DType all[] = {DType::f32, DType::f64, DType::f16, DType::bf16,
                       DType::i32, DType::i64, DType::u8,  DType::boolean};
  Tensor base = f64({0, 1, 2, 3, 100, 5}, {2, 3});
  for (DType a : all) {
    Tensor xa = cast(base, a);
    REQUIRE(xa.dtype() == a);
    for (DType b : all) {
      INFO(dtype_name(a) << " -> " << dtype_name(b));
      Tensor xb = cast(xa.t(), b).t();  // strided input too
      REQUIRE(xb.dtype() == b);
      bool to_bool = a == DType::boolean || b == DType::boolean;
      REQUIRE_CLOSE(cast(xb, DType::f64), to_bool ? f64({0, 1, 1, 1, 1, 1}, {2, 3}) : base);
    }
  }
}

TEST_CASE("bad input raises the right error with the op and shapes", "[array]") {
  Tensor x = seq({2, 3});
  REQUIRE_THROWS_AS(reshape(x, {4, 2}), ShapeError);
  REQUIRE_THROWS_WITH(reshape(x, {4, 2}), Contains("[reshape]") && Contains("[2,3]") && Contains("[4,2]"));
  REQUIRE_THROWS_WITH(reshape(x, {4, -1}), Contains("[reshape]") && Contains("6 elements"));
  REQUIRE_THROWS_AS(reshape(x, {-1, -1}), ValueError);
  REQUIRE_THROWS_AS(x.transpose(0, 2), IndexError);
  REQUIRE_THROWS_WITH(x.transpose(0, 2), Contains("[transpose]") && Contains("rank 2"));
  REQUIRE_THROWS_AS(permute(x, {0, 0}), ValueError);
  REQUIRE_THROWS_AS(permute(x, {0}), ValueError);
  REQUIRE_THROWS_AS(permute(x, {0, 5}), IndexError);
  REQUIRE_THROWS_AS(squeeze(x, {0}), ShapeError);
  REQUIRE_THROWS_WITH(squeeze(x, {1}), Contains("[squeeze]") && Contains("size 3"));
  REQUIRE_THROWS_AS(unsqueeze(x, 3), IndexError);
  REQUIRE_THROWS_AS(expand(x, {4, 3}), ShapeError);
  REQUIRE_THROWS_WITH(expand(x, {3}), Contains("[expand]") && Contains("[2,3]") && Contains("[3]"));
  REQUIRE_THROWS_WITH(broadcast_to(x, {2, 4}), Contains("[broadcast_to]") && Contains("[2,4]"));
  REQUIRE_THROWS_AS(broadcast_like(x, seq({3, 2})), ShapeError);
  REQUIRE_THROWS_AS(x.slice(0, 0, 1, 0), ValueError);
  REQUIRE_THROWS_AS(x.slice(2, 0, 1), IndexError);
  REQUIRE_THROWS_WITH(concat({x, seq({2, 3, 4})}), Contains("[concat] inputs have ranks 2 and 3") &&
                                                        Contains("[2,3]") && Contains("[2,3,4]"));
  REQUIRE_THROWS_WITH(concat({x, seq({3, 3})}, 1), Contains("[concat]") && Contains("[3,3]"));
  REQUIRE_THROWS_AS(concat({}), ValueError);
  REQUIRE_THROWS_AS(concat({scalar(1.0), scalar(2.0)}), ShapeError);
  REQUIRE_THROWS_AS(stack({x, seq({3, 2})}), ShapeError);
  REQUIRE_THROWS_AS(split(x, {1, 1}, 1), ShapeError);
  REQUIRE_THROWS_AS(split(x, int64_t{2}, 1), ShapeError);
  REQUIRE_THROWS_AS(split(x, int64_t{0}, 1), ValueError);
  REQUIRE_THROWS_AS(flatten(x, 1, 0), ValueError);

  Tensor idx = i64({0, 5}, {2});
  REQUIRE_THROWS_AS(index_select(x, 1, idx), IndexError);
  REQUIRE_THROWS_WITH(index_select(x, 1, idx), Contains("[index_select]") && Contains("index 5") &&
                                                   Contains("0..2") && Contains("[2,3]"));
  REQUIRE_THROWS_AS(index_select(x, 0, i64({-1}, {1})), IndexError);
  REQUIRE_THROWS_AS(index_select(x, 0, f64({0}, {1})), TypeError);
  REQUIRE_THROWS_AS(index_select(x, 0, i64({0}, {1, 1})), ShapeError);
  REQUIRE_THROWS_AS(index_select(scalar(1.0), 0, i64({0}, {1})), ShapeError);
  REQUIRE_THROWS_WITH(gather(x, 1, i64({0, -1}, {1, 2})), Contains("[gather]") && Contains("index -1"));
  REQUIRE_THROWS_AS(gather(x, 0, i64({0}, {1})), ShapeError);
  REQUIRE_THROWS_AS(gather(x, 0, i64({0, 0, 0, 0}, {1, 4})), ShapeError);
  REQUIRE_THROWS_AS(gather(x, 0, f64({0}, {1, 1})), TypeError);
  REQUIRE_THROWS_WITH(scatter_add(x, 0, i64({2}, {1, 1}), f64({1}, {1, 1})),
                      Contains("[scatter_add]") && Contains("index 2") && Contains("0..1"));
  REQUIRE_THROWS_AS(scatter_add(x, 0, i64({0}, {1, 1}), f64({1, 2}, {1, 2})), ShapeError);
  REQUIRE_THROWS_WITH(one_hot(i64({0, 3}, {2}), 3), Contains("[one_hot]") && Contains("label 3"));
  REQUIRE_THROWS_AS(one_hot(i64({-1}, {1}), 3), IndexError);
  REQUIRE_THROWS_AS(one_hot(f64({0}, {1}), 3), TypeError);
  REQUIRE_THROWS_AS(pad(x, {{2, 0}}, "reflect"), ValueError);
  REQUIRE_THROWS_WITH(pad(x, {{0, 1}}, "wrap"), Contains("[pad]") && Contains("wrap"));
  REQUIRE_THROWS_AS(pad(x, {{0, 1}, {1, 1}, {1, 1}}), ValueError);
  REQUIRE_THROWS_AS(pad(x, {{-1, 1}}), ValueError);
  REQUIRE_THROWS_AS(pad(seq({0, 2}), {{1, 1}}, "replicate"), ValueError);
}

TEST_CASE("composites: transpose, stack, split, flatten", "[array]") {
  Tensor x = seq({2, 3, 4});
  REQUIRE_CLOSE(x.transpose(0, -1), permute(x, {2, 1, 0}));
  Tensor a = seq({2, 2}), b = seq({2, 2}, 5.0, 1.0);
  REQUIRE_CLOSE(stack({a, b}), f64({-1, -0.75, -0.5, -0.25, 5, 6, 7, 8}, {2, 2, 2}));
  REQUIRE_CLOSE(stack({a, b}, -1), f64({-1, 5, -0.75, 6, -0.5, 7, -0.25, 8}, {2, 2, 2}));
  auto parts = split(x, {1, 3}, -1);
  REQUIRE(parts.size() == 2);
  REQUIRE(parts[1].shape() == Shape{2, 3, 3});
  REQUIRE(shares(parts[1], x));
  REQUIRE_CLOSE(concat(parts, -1), x);
  auto halves = split(x, int64_t{3}, 1);
  REQUIRE(halves.size() == 3);
  REQUIRE_CLOSE(halves[2], x.slice(1, 2, 3));
  REQUIRE(flatten(x).shape() == Shape{24});
  REQUIRE(flatten(x, 1).shape() == Shape{2, 12});
  REQUIRE(flatten(x, 0, -2).shape() == Shape{6, 4});
  REQUIRE(flatten(scalar(2.0)).shape() == Shape{1});

  GradcheckOptions opt;
  Tensor p = seq({2, 3}).set_requires_grad();
  Tensor q = seq({2, 3}, 0.3, 0.1).set_requires_grad();
  gradcheck([](const std::vector<Tensor>& v) { return stack({v[0], v[1]}, 1); }, {p, q}, opt);
  gradcheck([](const std::vector<Tensor>& v) {
    auto s = split(v[0], {1, 2}, 1);
    return concat({s[1] * 2.0, s[0]}, 1);
  }, {p}, opt);
  gradcheck([](const std::vector<Tensor>& v) { return flatten(v[0].t()); }, {p}, opt);
  gradcheck([](const std::vector<Tensor>& v) { return reshape(squeeze(unsqueeze(v[0], 1)).t(), {3, 2}); }, {p}, opt);
}

TEST_CASE("large tensors take the parallel paths and agree with a naive loop", "[array]") {
  const int64_t R = 600, C = 257;
  Tensor x = rnd({R, C}, 7);
  std::vector<double> xv = x.to_vector<double>();
  // strided copy
  std::vector<double> tv = contiguous(x.t()).to_vector<double>();
  for (int64_t i = 0; i < R; i += 37)
    for (int64_t j = 0; j < C; j += 13) REQUIRE(tv[j * R + i] == xv[i * C + j]);
  // index_select and its backward
  std::vector<int64_t> idx(900);
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int64_t>((i * 7919) % R);
  Tensor sel = index_select(x, 0, tensor(idx));
  std::vector<double> sv = sel.to_vector<double>();
  for (size_t i = 0; i < idx.size(); i += 11)
    for (int64_t j = 0; j < C; j += 5) REQUIRE(sv[i * C + j] == xv[idx[i] * C + j]);
  Tensor xg = x.detach().set_requires_grad();
  sum(index_select(xg, 0, tensor(idx))).backward();
  std::vector<double> count(R, 0);
  for (int64_t k : idx) count[k] += 1;
  std::vector<double> gv = xg.grad().to_vector<double>();
  for (int64_t i = 0; i < R; ++i) REQUIRE(gv[i * C + 3] == count[i]);
  // gather and scatter_add along axis 1
  std::vector<int64_t> gi(R * 300);
  for (size_t i = 0; i < gi.size(); ++i) gi[i] = static_cast<int64_t>((i * 104729) % C);
  Tensor gidx = tensor(gi, {R, 300});
  std::vector<double> gav = gather(x, 1, gidx).to_vector<double>();
  for (int64_t i = 0; i < R; i += 7)
    for (int64_t j = 0; j < 300; ++j) REQUIRE(gav[i * 300 + j] == xv[i * C + gi[i * 300 + j]]);
  Tensor src = rnd({R, 300}, 9);
  std::vector<double> srcv = src.to_vector<double>();
  std::vector<double> want(xv);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < 300; ++j) want[i * C + gi[i * 300 + j]] += srcv[i * 300 + j];
  REQUIRE_CLOSE(scatter_add(x, 1, gidx, src), tensor(want, {R, C}), 1e-12, 1e-12);
  // reflect pad of a large image-like tensor, checked at the borders
  Tensor img = rnd({4, 3, 100, 120}, 3);
  Tensor padded = pad(img, {{0, 0}, {0, 0}, {2, 2}, {3, 3}}, "reflect");
  REQUIRE(padded.shape() == Shape{4, 3, 104, 126});
  REQUIRE(padded.at({1, 2, 0, 0}) == img.at({1, 2, 2, 3}));
  REQUIRE(padded.at({3, 1, 103, 125}) == img.at({3, 1, 97, 116}));
  REQUIRE_CLOSE(padded.slice(2, 2, 102).slice(3, 3, 123), img);
}
