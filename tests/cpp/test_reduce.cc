// Reductions beyond the generic samples: the composites (mean, var, std,
// logsumexp) against NumPy and through gradcheck, gradient rules at ties and
// zeros, large inputs that take the parallel and split paths (against a
// double-precision reference, and bit-identical across thread counts),
// strided and expanded layouts, empty tensors, dtypes and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

Tensor T(const std::vector<double>& v, const Shape& s) { return tensor(v, s); }

// Restores the intra-op thread count when a test changes it.
struct ThreadCountGuard {
  int saved = get_num_threads();
  ~ThreadCountGuard() { set_num_threads(saved); }
};

// Row/column/total sums of a row-major rows x cols matrix, in double.
std::vector<double> reference_sum(const std::vector<float>& v, int64_t rows, int64_t cols,
                                  int axis) {
  std::vector<double> out(axis == 0 ? cols : axis == 1 ? rows : 1, 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      out[axis == 0 ? j : axis == 1 ? i : 0] += v[static_cast<size_t>(i * cols + j)];
  return out;
}

// The reduction of x over the normalized `axes`, one element at a time in
// double: 0 sum, 1 prod, 2 max, 3 min, 4 argmax over the single axis.
Tensor naive_reduce(const Tensor& x, const std::vector<int64_t>& axes, int kind) {
  const Shape& xs = x.shape();
  Shape os = xs;
  for (int64_t a : axes) os[a] = 1;
  int64_t on = shape_numel(os);
  const double init[] = {0.0, 1.0, -INFINITY, INFINITY, 0.0};
  std::vector<double> acc(static_cast<size_t>(on), init[kind]);
  std::vector<double> best(static_cast<size_t>(on), -INFINITY);
  std::vector<int64_t> idx(xs.size(), 0);
  for (int64_t flat = 0; flat < x.numel(); ++flat) {
    int64_t o = 0, along = 0;
    for (size_t d = 0; d < xs.size(); ++d) {
      o = o * os[d] + (os[d] == 1 ? 0 : idx[d]);
      if (!axes.empty() && static_cast<int64_t>(d) == axes[0]) along = idx[d];
    }
    double v = x.at(idx), &a = acc[static_cast<size_t>(o)];
    if (kind == 0) a += v;
    if (kind == 1) a *= v;
    if (kind == 2) a = std::max(a, v);
    if (kind == 3) a = std::min(a, v);
    if (kind == 4 && v > best[static_cast<size_t>(o)])
      best[static_cast<size_t>(o)] = v, a = static_cast<double>(along);
    for (size_t d = xs.size(); d-- > 0;) {
      if (++idx[d] < xs[d]) break;
      idx[d] = 0;
    }
  }
  return tensor(acc, os);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

}  // namespace

// ----------------------------------------------------------------- composites

TEST_CASE("mean matches NumPy", "[reduce]") {
  Tensor x = rnd({3, 4}, 21);
  REQUIRE_CLOSE(mean(x, {1}),
                T({-0.389822077976008, -0.21171286066089207, 0.33115862345377345}, {3}));
  REQUIRE_CLOSE(mean(x), T({-0.09012543839437552}, {}));
  REQUIRE_CLOSE(x.mean(), T({-0.09012543839437552}, {}));
  REQUIRE_CLOSE(mean(x, {-2}, true), T({-0.20479077641844215, 0.036362580571077364,
                                        -0.1886196193458686, -0.0034539383842687363},
                                       {1, 4}));
  Tensor m = mean(seq({2, 3}, -3.0, 1.0, DType::i32), {1});
  CHECK(m.dtype() == DType::f32);  // integers average in f32
  REQUIRE_CLOSE(m, T({-2.0, 1.0}, {2}).to(DType::f32));
  CHECK(mean(x.to(DType::f32)).dtype() == DType::f32);
}

TEST_CASE("var and std match NumPy, with correction", "[reduce]") {
  Tensor x = rnd({3, 4, 5}, 22);
  REQUIRE_CLOSE(
      var(x, {0, 2}),
      T({0.38989745565427075, 0.42819426319632764, 0.356623949110876, 0.4139535589240481}, {4}));
  Tensor v0 = var(x, {-1}, true, 0);
  CHECK(v0.shape() == Shape{3, 4, 1});
  REQUIRE_CLOSE(v0.reshape({12}), T({0.4001142356384686, 0.47948092668867215, 0.3488480633304334,
                                     0.30846103936213765, 0.1395271611253513, 0.4067148511217627,
                                     0.39312412388251455, 0.3067231062912077, 0.15834301788202604,
                                     0.23935815035476873, 0.053698964166782694, 0.4745345637767648},
                                    {12}));
  Tensor s1 = ndflow::std(x, {1});
  CHECK(s1.shape() == Shape{3, 5});
  REQUIRE_CLOSE(s1.reshape({15}).slice(0, 0, 3),
                T({0.5209660532326229, 0.7629759206958076, 0.795844184315437}, {3}));
  REQUIRE_CLOSE(ndflow::std(x, {}, false, 0), T({0.6154486231557227}, {}));
  // n <= correction divides by zero, as in NumPy and PyTorch.
  CHECK(std::isnan(var(T({2.0}, {1})).item<double>()));
  CHECK(std::isinf(var(T({2.0, 3.0}, {2}), {}, false, 2).item<double>()));
}

TEST_CASE("var is two-pass: no cancellation when |mean| >> std", "[reduce]") {
  // In f32 the one-pass E[x^2] - E[x]^2 would lose every digit here.
  Tensor x = (rnd({1000}, 24) + 1e4).to(DType::f32);
  double v = var(x).item<double>();
  CHECK(v == Approx(0.3387510822590168).epsilon(1e-4));
}

TEST_CASE("logsumexp matches NumPy and is stable", "[reduce]") {
  Tensor x = rnd({2, 5}, 23, -50.0, 50.0);
  REQUIRE_CLOSE(logsumexp(x, {1}), T({47.910154338537374, 23.95153794828219}, {2}));
  REQUIRE_CLOSE(logsumexp(x), T({47.91015433857672}, {}));
  REQUIRE_CLOSE(logsumexp(x, {0}, true),
                T({-2.100154020387265, 17.310114050104954, 47.91015003933716, 35.553079778932336,
                   -27.99567809821246},
                  {1, 5}));
  // exp(1000) overflows; the shifted form does not.
  REQUIRE_CLOSE(logsumexp(T({1000.0, 1000.0}, {2})), T({1000.0 + std::log(2.0)}, {}));
  const double inf = std::numeric_limits<double>::infinity();
  REQUIRE_CLOSE(logsumexp(T({0.0, -inf, 0.0, -inf, -inf, -inf}, {2, 3}), {1}),
                T({std::log(2.0), -inf}, {2}));
  CHECK(logsumexp(T({1.0, inf}, {2})).item<double>() == inf);
  CHECK(std::isnan(logsumexp(T({1.0, NAN}, {2})).item<double>()));
}

TEST_CASE("composites pass gradcheck", "[reduce][grad]") {
  Tensor x = rnd({3, 4, 2}, 25).set_requires_grad();
  auto f = [](auto fn) { return [fn](const std::vector<Tensor>& xs) { return fn(xs[0]); }; };
  REQUIRE_NOTHROW(gradcheck(f([](const Tensor& t) { return mean(t, {1}); }), {x}));
  REQUIRE_NOTHROW(gradcheck(f([](const Tensor& t) { return mean(t, {0, -1}, true); }), {x}));
  REQUIRE_NOTHROW(gradcheck(f([](const Tensor& t) { return var(t, {0, 2}); }), {x}));
  REQUIRE_NOTHROW(gradcheck(f([](const Tensor& t) { return var(t, {}, false, 0); }), {x}));
  REQUIRE_NOTHROW(gradcheck(f([](const Tensor& t) { return ndflow::std(t, {1}, true); }), {x}));
  REQUIRE_NOTHROW(gradcheck(f([](const Tensor& t) { return logsumexp(t, {1}); }), {x}));
  REQUIRE_NOTHROW(gradcheck(f([](const Tensor& t) { return logsumexp(t * 40.0); }), {x}));
}

// ------------------------------------------------------------- gradient rules

TEST_CASE("max/min gradients split evenly among ties", "[reduce][grad]") {
  Tensor x = T({1, 3, 3, 2, 2, 2}, {2, 3}).set_requires_grad();
  max(x, {1}).backward(ones({2}, DType::f64));
  REQUIRE_CLOSE(x.grad(), T({0, 0.5, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3}, {2, 3}));
  x.zero_grad();
  min(x, {}).backward();
  REQUIRE_CLOSE(x.grad(), T({1, 0, 0, 0, 0, 0}, {2, 3}));
  x.zero_grad();
  max(x, {0}, true).backward(T({1, 2, 4}, {1, 3}));
  REQUIRE_CLOSE(x.grad(), T({0, 2, 4, 1, 0, 0}, {2, 3}));
}

TEST_CASE("prod gradient is exact at zeros", "[reduce][grad]") {
  Tensor x = T({2, 0, 3, 0, 0, 3, 1, 2, 4}, {3, 3}).set_requires_grad();
  prod(x, {1}).backward(ones({3}, DType::f64));
  // One zero: it gets the product of the others; two zeros: everything is 0.
  REQUIRE_CLOSE(x.grad(), T({0, 6, 0, 0, 0, 0, 8, 4, 2}, {3, 3}));
  REQUIRE_NOTHROW(gradcheck([](const std::vector<Tensor>& xs) { return prod(xs[0], {0}); },
                            {T({0, 1.5, 0, -2, 0.5, 0, 3, 2, 0}, {3, 3}).set_requires_grad()}));
}

TEST_CASE("sum gradient broadcasts back, sum_to_like undoes broadcasting", "[reduce][grad]") {
  Tensor x = rnd({2, 3, 4}, 26).set_requires_grad();
  sum(x, {0, 2}).backward(T({1, 2, 3}, {3}));
  Tensor g = x.grad();
  CHECK(g.shape() == Shape{2, 3, 4});
  CHECK(g.at({1, 2, 3}) == 3.0);
  CHECK(g.at({0, 1, 0}) == 2.0);

  Tensor a = rnd({3, 1}, 27).set_requires_grad(), b = rnd({2, 1, 4}, 28).set_requires_grad();
  sum(a + b).backward();
  REQUIRE_CLOSE(a.grad(), full({3, 1}, 8.0, DType::f64));
  REQUIRE_CLOSE(b.grad(), full({2, 1, 4}, 3.0, DType::f64));
  Tensor same = rnd({2, 3}, 29);
  CHECK(sum_to_like(same, zeros({2, 3})).same(same));  // nothing to undo: no op at all
}

// ------------------------------------------------------------ large tensors

TEST_CASE("1000x1000 f32 sums match a double reference on every path", "[reduce][large]") {
  const int64_t n = 1000;
  Tensor x = rnd({n, n}, 30, -1.0, 1.0, DType::f32);
  std::vector<float> v = x.to_vector<float>();
  for (int axis : {0, 1, 2}) {
    INFO("axis " << axis);
    std::vector<double> ref = reference_sum(v, n, n, axis);
    Tensor expected = T(ref, axis == 2 ? Shape{} : Shape{n}).to(DType::f32);
    Tensor got = axis == 2 ? sum(x) : sum(x, {axis});
    REQUIRE_CLOSE(got, expected, 1e-4, 1e-5);
    // The transpose reduces the other way through the strided paths.
    Tensor got_t = axis == 2 ? sum(x.t()) : sum(x.t(), {1 - axis});
    REQUIRE_CLOSE(got_t, expected, 1e-4, 1e-5);
  }
  REQUIRE_CLOSE(mean(x.to(DType::f64)), T({reference_sum(v, n, n, 2)[0] / (n * n)}, {}), 1e-12);
}

TEST_CASE("results are bit-identical for any thread count", "[reduce][large]") {
  ThreadCountGuard guard;
  Tensor x = rnd({1000, 1000}, 31, -1.0, 1.0, DType::f32);
  Tensor y = rnd({64, 70000}, 32, -1.0, 1.0, DType::f32);
  auto all = [&] {
    return std::vector<Tensor>{sum(x, {0}),     sum(x, {1}), sum(x),       sum(y, {0}), sum(y, {1}),
                               sum(x.t(), {0}), max(y, {0}), argmax(x, 0), argmin(y, 1)};
  };
  set_num_threads(1);
  auto one = all();
  set_num_threads(4);
  auto four = all();
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    CHECK(bitwise_equal(one[i], four[i]));
  }
}

TEST_CASE("large max/min/argmax: NaN propagates, first occurrence wins", "[reduce][large]") {
  Tensor x = rnd({600, 700}, 33);
  {
    NoGradGuard ng;
    float big = 5.0f;
    Tensor xf = x.to(DType::f32);
    float* p = xf.data<float>();
    p[123 * 700 + 456] = big;
    p[500 * 700 + 456] = big;  // a later tie in the same column
    p[7 * 700 + 9] = NAN;
    CHECK(std::isnan(max(xf).item<double>()));
    CHECK(argmax(xf).item<int64_t>() == 7 * 700 + 9);
    Tensor col = argmax(xf, 0);
    CHECK(col.at({456}) == 123);
    CHECK(std::isnan(max(xf, {1}).at({7})));
    CHECK(max(xf, {1}).at({123}) == big);
    CHECK(max(xf, {0}).at({456}) == big);
    CHECK(argmin(xf, 1).at({7}) == 9);
  }
}

TEST_CASE("strided, sliced and expanded inputs", "[reduce]") {
  Tensor x = rnd({200, 300}, 34);
  Tensor sliced = x.slice(1, 1, 300, 3);  // stride 3 along the reduced or kept dim
  Tensor dense = sliced.contiguous();
  for (int64_t a : {0, 1}) REQUIRE_CLOSE(sum(sliced, {a}), sum(dense, {a}), 1e-10);
  REQUIRE_CLOSE(max(sliced, {0}), max(dense, {0}));
  REQUIRE_CLOSE(prod(sliced.slice(0, 0, 3), {1}), prod(dense.slice(0, 0, 3).contiguous(), {1}));
  Tensor row = rnd({1, 300}, 35);
  Tensor wide = broadcast_to(row, {500, 300});  // stride 0 along the reduced dim
  REQUIRE_CLOSE(sum(wide, {0}), (row * 500.0).reshape({300}), 1e-10);
  Tensor cube = rnd({40, 50, 60}, 36);  // a middle axis: column mode with an outer dim
  REQUIRE_CLOSE(sum(cube, {1}), sum(cube.permute({1, 0, 2}).contiguous(), {0}), 1e-10);
  REQUIRE_CLOSE(argmax(cube, 1).to(DType::f64),
                argmax(cube.permute({0, 2, 1}).contiguous(), 2).to(DType::f64));
}

TEST_CASE("random shapes, axes and layouts match a naive reference", "[reduce][large]") {
  uint64_t state = 12345;
  auto next = [&](int64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<int64_t>((state >> 33) % static_cast<uint64_t>(n));
  };
  for (int trial = 0; trial < 150; ++trial) {
    int64_t rank = 1 + next(4);
    Shape base_shape;
    for (int64_t d = 0; d < rank; ++d) base_shape.push_back(next(5) == 0 ? 1 : 1 + next(9));
    if (trial % 10 == 0) {  // few results, many reduced elements: the split path
      rank = 2;
      base_shape = next(2) ? Shape{1 + next(4), 20000 + next(50000)}
                           : Shape{20000 + next(50000), 1 + next(4)};
    }
    Tensor x = rnd(base_shape, static_cast<uint64_t>(trial), 0.5, 1.5);
    if (next(2)) {  // a transposed and maybe sliced layout
      std::vector<int64_t> perm(static_cast<size_t>(rank));
      for (int64_t d = 0; d < rank; ++d) perm[static_cast<size_t>(d)] = d;
      for (int64_t d = rank - 1; d > 0; --d)
        std::swap(perm[static_cast<size_t>(d)], perm[static_cast<size_t>(next(d + 1))]);
      x = x.permute(perm);
      int64_t a = next(rank);
      if (x.size(a) > 2) x = x.slice(a, 1, x.size(a), 2);
    }
    std::vector<int64_t> axes;
    for (int64_t d = 0; d < rank; ++d)
      if (next(2)) axes.push_back(next(2) ? d : d - rank);
    bool keep = next(2);
    auto norm = normalize_axes(axes, rank, "test");
    INFO("trial " << trial << ": shape " << shape_str(x.shape()) << ", axes " << shape_str(axes)
                  << ", keepdims " << keep);
    auto shaped = [&](const Tensor& r, bool keepdims) {
      return keepdims ? r : r.reshape(sum(x, axes).shape());
    };
    REQUIRE_CLOSE(shaped(naive_reduce(x, norm, 0), keep), sum(x, axes, keep), 1e-9, 1e-12);
    REQUIRE_CLOSE(shaped(naive_reduce(x, norm, 2), keep), max(x, axes, keep), 0, 0);
    REQUIRE_CLOSE(shaped(naive_reduce(x, norm, 3), keep), min(x, axes, keep), 0, 0);
    if (x.numel() < 5000)
      REQUIRE_CLOSE(shaped(naive_reduce(x, norm, 1), keep), prod(x, axes, keep), 0, 1e-12);
    if (rank > 0) {
      int64_t a = next(rank);
      Tensor expected = naive_reduce(x, {a}, 4);
      REQUIRE_CLOSE(argmax(x, a, true).to(DType::f64), expected, 0, 0);
    }
    // Flattened: the index counts in logical (row-major) order, whatever the layout.
    CHECK(argmin(x).item<int64_t>() == argmin(x.contiguous()).item<int64_t>());
  }
}

// ------------------------------------------------------------ empty tensors

TEST_CASE("empty reductions", "[reduce][empty]") {
  Tensor e = zeros({0, 3}, DType::f64);
  REQUIRE_CLOSE(sum(e, {0}), zeros({3}, DType::f64));
  CHECK(sum(e, {1}).shape() == Shape{0});
  CHECK(sum(e).item<double>() == 0.0);
  CHECK(prod(e).item<double>() == 1.0);
  CHECK(max(e, {1}).shape() == Shape{0});  // axis 1 is not empty: an empty result
  CHECK(std::isnan(mean(e).item<double>()));
  CHECK(logsumexp(e, {0}).at({1}) == -std::numeric_limits<double>::infinity());
  REQUIRE_THROWS_AS(max(e), ValueError);
  REQUIRE_THROWS_WITH(max(e, {0}), Catch::Contains("[max]") && Catch::Contains("[0,3]"));
  REQUIRE_THROWS_WITH(min(e), Catch::Contains("[min]"));
  REQUIRE_THROWS_AS(argmax(zeros({0})), ValueError);
  REQUIRE_THROWS_WITH(argmin(e, 0), Catch::Contains("[argmin]"));
}

// ------------------------------------------------------------------- dtypes

TEST_CASE("integer and bool reductions", "[reduce]") {
  Tensor u = tensor(std::vector<uint8_t>{200, 200, 100}, {3});
  CHECK(sum(u).dtype() == DType::i64);
  CHECK(sum(u).item<int64_t>() == 500);
  CHECK(max(u).dtype() == DType::u8);
  CHECK(max(u).item<int64_t>() == 200);
  Tensor b = tensor(std::vector<bool>{true, false, true}, {3});
  CHECK(sum(b).item<int64_t>() == 2);
  CHECK(max(b).item<int64_t>() == 1);
  CHECK(argmin(b).item<int64_t>() == 1);
  // Overflow wraps like two's-complement i64 (never undefined behaviour).
  Tensor big = tensor(std::vector<int64_t>{int64_t(1) << 62, 4}, {2});
  CHECK(prod(big).item<int64_t>() == 0);
  Tensor i32 = tensor(std::vector<int32_t>{-5, 7, 2}, {3});
  CHECK(sum_to_like(i32, zeros({1}, DType::i32)).dtype() == DType::i32);
  CHECK(sum_to_like(i32, zeros({1}, DType::i32)).item<int64_t>() == 4);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("bad axes and shapes raise errors naming the op", "[reduce][errors]") {
  Tensor x = rnd({2, 3}, 37);
  REQUIRE_THROWS_AS(sum(x, {3}), IndexError);
  REQUIRE_THROWS_WITH(
      sum(x, {3}),
      Catch::Contains("[sum] axis 3 is out of range for a tensor of rank 2 (valid: -2..1)"));
  REQUIRE_THROWS_WITH(prod(x, {-3}), Catch::Contains("[prod]"));
  REQUIRE_THROWS_AS(sum(x, {0, -2}), ValueError);
  REQUIRE_THROWS_WITH(sum(x, {0, -2}),
                      Catch::Contains("[sum]") && Catch::Contains("more than once"));
  REQUIRE_THROWS_WITH(max(x, {1, 1}), Catch::Contains("[max]"));
  REQUIRE_THROWS_WITH(mean(x, {2}), Catch::Contains("[mean]"));
  REQUIRE_THROWS_WITH(var(x, {5}), Catch::Contains("[var]"));
  REQUIRE_THROWS_WITH(ndflow::std(x, {-9}), Catch::Contains("[std]"));
  REQUIRE_THROWS_WITH(logsumexp(x, {0, 0}), Catch::Contains("[logsumexp]"));
  REQUIRE_THROWS_AS(argmax(x, 2), IndexError);
  REQUIRE_THROWS_WITH(argmax(x, 2), Catch::Contains("[argmax]"));
  REQUIRE_THROWS_WITH(call_op1(op_def("argmin"), {x}, Attrs{{"axis", std::vector<int64_t>{0, 1}}}),
                      Catch::Contains("[argmin] takes one axis"));
  REQUIRE_THROWS_AS(sum_to_like(x, zeros({4})), ShapeError);
  REQUIRE_THROWS_WITH(sum_to_like(rnd({3}, 38), zeros({2, 3})), Catch::Contains("[sum_to_like]"));
  REQUIRE_THROWS_AS(sum_to_like(tensor(std::vector<bool>{true, false}, {2}),
                                tensor(std::vector<bool>{true}, {1})),
                    TypeError);
  // A 0-d tensor accepts axis 0 / -1 (NumPy does too) and nothing else.
  CHECK(sum(scalar(2.0), {0}).item<double>() == 2.0);
  REQUIRE_THROWS_AS(sum(scalar(2.0), {1}), IndexError);
}
