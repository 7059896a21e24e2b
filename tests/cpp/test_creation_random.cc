// Creation and random ops: values against NumPy, graph-mode recording, the
// Philox known-answer vectors, the stream layout against an independent
// Python implementation, reproducibility, thread-count independence,
// statistics, and errors on bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "kernels/philox.h"
#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;
using Catch::Contains;

namespace {

// Records which ops a call adds in graph mode; its outputs are placeholders
// with the inferred metadata.
class RecordingBuilder final : public GraphBuilder {
 public:
  std::vector<Tensor> add_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs) override {
    ops.push_back(op.name());
    std::vector<TensorMeta> in;
    for (auto& t : inputs) in.push_back({t.shape(), t.dtype(), t.device()});
    std::vector<Tensor> out;
    for (auto& m : op.run_infer(in, attrs)) out.push_back(Tensor::empty(m.shape, m.dtype, m.device));
    return out;
  }
  std::vector<std::string> ops;
};

struct BuilderScope {
  explicit BuilderScope(GraphBuilder* b) { set_current_graph_builder(b); }
  ~BuilderScope() { set_current_graph_builder(nullptr); }
};

struct ThreadScope {
  explicit ThreadScope(int n) : prev(get_num_threads()) { set_num_threads(n); }
  ~ThreadScope() { set_num_threads(prev); }
  int prev;
};

// Raw bytes, so that "identical" means bit for bit.
bool same_bits(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape()) || a.dtype() != b.dtype()) return false;
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

struct Moments {
  double mean, std, min, max;
};
Moments moments(const Tensor& t) {
  auto v = t.to_vector<double>();
  double s = 0, s2 = 0, lo = INFINITY, hi = -INFINITY;
  for (double x : v) {
    s += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  double mean = s / static_cast<double>(v.size());
  for (double x : v) s2 += (x - mean) * (x - mean);
  return {mean, std::sqrt(s2 / static_cast<double>(v.size())), lo, hi};
}

}  // namespace

// ------------------------------------------------------------------ creation

TEST_CASE("zeros, ones, full and scalar in every dtype", "[creation]") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64, DType::u8,
                   DType::boolean}) {
    INFO("dtype " << dtype_name(dt));
    Tensor z = zeros({2, 3}, dt), o = ones({2, 3}, dt);
    REQUIRE(z.dtype() == dt);
    REQUIRE(z.shape() == Shape{2, 3});
    for (double x : z.to_vector<double>()) CHECK(x == 0.0);
    for (double x : o.to_vector<double>()) CHECK(x == 1.0);
    Tensor s = scalar(1.0, dt);
    CHECK(s.rank() == 0);
    CHECK(s.item<double>() == 1.0);
  }
  CHECK(full({3}, -2.5, DType::f64).to_vector<double>() == std::vector<double>{-2.5, -2.5, -2.5});
  CHECK(full({2}, 3.9, DType::i32).to_vector<int32_t>() == std::vector<int32_t>{3, 3});  // truncates
  CHECK(full({2}, -0.5, DType::bf16).to_vector<double>() == std::vector<double>{-0.5, -0.5});
  CHECK(zeros({0, 4}).numel() == 0);
  CHECK(scalar(2.5).dtype() == DType::f32);
  CHECK(scalar(2.5).item<double>() == 2.5);
  Tensor big = full({100003}, 7.0, DType::i64);  // several threads' worth
  for (int64_t x : big.to_vector<int64_t>()) REQUIRE(x == 7);
}

TEST_CASE("zeros_like, ones_like and full_like keep shape and dtype", "[creation]") {
  Tensor x = tensor(std::vector<int32_t>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor z = zeros_like(x), o = ones_like(x), f = full_like(x, -4);
  for (const Tensor* t : {&z, &o, &f}) {
    CHECK(t->shape() == x.shape());
    CHECK(t->dtype() == DType::i32);
  }
  CHECK(f.to_vector<int32_t>() == std::vector<int32_t>(6, -4));
  CHECK(o.to_vector<int32_t>() == std::vector<int32_t>(6, 1));
  // The input's autograd state does not carry over.
  Tensor w = ones({3}).set_requires_grad(true);
  CHECK_FALSE(zeros_like(w).requires_grad());
}

TEST_CASE("arange matches NumPy", "[creation]") {
  // np.arange(0.1, 0.95, 0.05): NumPy steps by its rounded first difference,
  // so compare within a few ulps.
  REQUIRE_CLOSE(arange(0.1, 0.95, 0.05, DType::f64),
                tensor(std::vector<double>{0.1, 0.15000000000000002, 0.20000000000000004, 0.25000000000000006,
                                           0.30000000000000004, 0.3500000000000001, 0.40000000000000013,
                                           0.45000000000000007, 0.5000000000000001, 0.5500000000000002,
                                           0.6000000000000002, 0.6500000000000001, 0.7000000000000002,
                                           0.7500000000000002, 0.8000000000000002, 0.8500000000000002,
                                           0.9000000000000002}),
                1e-15, 1e-14);
  // np.arange(-1, 1, 0.3, dtype=np.float32)
  Tensor a = arange(-1, 1, 0.3);
  CHECK(a.dtype() == DType::f32);
  REQUIRE_CLOSE(a, tensor(std::vector<double>{-1.0, -0.699999988079071, -0.3999999761581421, -0.09999996423721313,
                                              0.20000004768371582, 0.5, 0.8000000715255737}),
                1e-7, 1e-6);
  CHECK(arange(5, -1, -2, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 1});
  CHECK(arange(int64_t{5}).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(int64_t{5}).dtype() == DType::i64);
  CHECK(arange(int64_t{0}).numel() == 0);
  CHECK(arange(3, 3).numel() == 0);
  CHECK(arange(0, 1, 0.1).numel() == 10);     // ceil(1 / 0.1) = 10
  CHECK(arange(0, 1.05, 0.1).numel() == 11);  // ceil(10.5) = 11
  CHECK(arange(-2, 2, 1, DType::f16).to_vector<double>() == std::vector<double>{-2, -1, 0, 1});
  Tensor big = arange(int64_t{200000});
  auto v = big.to_vector<int64_t>();
  for (int64_t i = 0; i < 200000; ++i) REQUIRE(v[i] == i);
}

TEST_CASE("linspace matches NumPy", "[creation]") {
  REQUIRE_CLOSE(linspace(0.1, 0.7, 5, DType::f64),
                tensor(std::vector<double>{0.1, 0.25, 0.4, 0.5499999999999999, 0.7}), 0, 1e-15);
  REQUIRE_CLOSE(linspace(0, 1, 4), tensor(std::vector<float>{0.f, 0.33333334f, 0.6666667f, 1.f}), 0, 1e-7);
  CHECK(linspace(-2, 2, 4, DType::i32).to_vector<int32_t>() == std::vector<int32_t>{-2, -1, 0, 2});
  CHECK(linspace(0, 10, 4, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{0, 3, 6, 10});
  CHECK(linspace(3, 5, 1).to_vector<double>() == std::vector<double>{3});
  CHECK(linspace(3, 5, 0).numel() == 0);
  CHECK(linspace(0, 1, 1001, DType::f64).to_vector<double>().back() == 1.0);  // exact endpoint
}

TEST_CASE("eye matches NumPy", "[creation]") {
  CHECK(eye(3).to_vector<double>() == std::vector<double>{1, 0, 0, 0, 1, 0, 0, 0, 1});
  Tensor e = eye(2, 3, DType::boolean);
  CHECK(e.shape() == Shape{2, 3});
  CHECK(e.to_vector<bool>() == std::vector<bool>{true, false, false, false, true, false});
  CHECK(eye(3, 2, DType::i64).to_vector<int64_t>() == std::vector<int64_t>{1, 0, 0, 1, 0, 0});
  CHECK(eye(0).shape() == Shape{0, 0});
  CHECK(eye(2, 0).numel() == 0);
  Tensor big = eye(300, 400, DType::u8);
  auto v = big.to_vector<int64_t>();
  int64_t ones_seen = 0;
  for (int64_t i = 0; i < 300 * 400; ++i) ones_seen += v[i];
  CHECK(ones_seen == 300);
  CHECK(big.at({299, 299}) == 1);
  CHECK(big.at({299, 300}) == 0);
}

TEST_CASE("tensor() copies host values in every supported element type", "[creation]") {
  std::vector<float> src{1, 2, 3, 4, 5, 6};
  Tensor t = tensor(src, {2, 3});
  src[0] = 100;  // a copy, not a view
  CHECK(t.at({0, 0}) == 1);
  CHECK(t.at({1, 2}) == 6);
  CHECK(tensor(std::vector<double>{0.5}).dtype() == DType::f64);
  CHECK(tensor(std::vector<int64_t>{1, 2}).dtype() == DType::i64);
  CHECK(tensor(std::vector<int32_t>{1, 2}, {2}).dtype() == DType::i32);
  CHECK(tensor(std::vector<uint8_t>{250, 3}, {2, 1}).to_vector<int64_t>() == std::vector<int64_t>{250, 3});
  CHECK(tensor(std::vector<bool>{true, false, true}, {3}).to_vector<bool>() == std::vector<bool>{true, false, true});
  CHECK(tensor(std::vector<double>{4.0}, {}).rank() == 0);
  CHECK(tensor(std::vector<float>{}, {0, 5}).numel() == 0);
}

TEST_CASE("creation ops become graph nodes in graph mode", "[creation]") {
  RecordingBuilder b;
  {
    BuilderScope scope(&b);
    Tensor z = zeros({2, 3});
    CHECK(z.shape() == Shape{2, 3});
    scalar(1.0, DType::f64);
    arange(0, 4, 1);
    linspace(0, 1, 3);
    eye(2);
    zeros_like(z);
    Tensor c = tensor(std::vector<double>{1, 2, 3}, {3});
    CHECK(c.shape() == Shape{3});
    rand({4});
  }
  CHECK(b.ops == std::vector<std::string>{"full", "full", "arange", "linspace", "eye", "full_like", "constant",
                                          "uniform"});
}

TEST_CASE("creation ops reject bad input with errors naming the op", "[creation]") {
  REQUIRE_THROWS_WITH(arange(0, 5, 0), Contains("[arange]") && Contains("step must be nonzero"));
  REQUIRE_THROWS_AS(arange(0, 5, 0), ValueError);
  REQUIRE_THROWS_WITH(arange(5, 0, 1), Contains("[arange]") && Contains("negative count"));
  REQUIRE_THROWS_AS(arange(0, INFINITY, 1), ValueError);
  REQUIRE_THROWS_AS(arange(0, NAN, 1), ValueError);
  REQUIRE_THROWS_WITH(arange(0, 1e300, 1e-300), Contains("[arange]") && Contains("too many"));
  REQUIRE_THROWS_WITH(arange(int64_t{-3}), Contains("[arange]"));
  REQUIRE_THROWS_WITH(arange(0, 3, 1, DType::boolean), Contains("[arange]") && Contains("bool"));
  REQUIRE_THROWS_WITH(arange(0, 300, 1, DType::u8), Contains("[arange]") && Contains("u8"));
  REQUIRE_THROWS_WITH(linspace(0, 1, -1), Contains("[linspace]") && Contains("-1"));
  REQUIRE_THROWS_AS(linspace(0, INFINITY, 3), ValueError);
  REQUIRE_THROWS_WITH(eye(-1), Contains("[eye]"));
  REQUIRE_THROWS_WITH(eye(2, -4), Contains("[eye]"));
  REQUIRE_THROWS_WITH(zeros({2, -1}), Contains("[full]") && Contains("[2,-1]"));
  REQUIRE_THROWS_AS(zeros({2, -1}), ValueError);
  REQUIRE_THROWS_WITH(zeros({int64_t(1) << 40, int64_t(1) << 40}), Contains("[full]"));
  REQUIRE_THROWS_WITH(full({2}, -1, DType::u8), Contains("[full]") && Contains("u8"));
  REQUIRE_THROWS_WITH(full({2}, 1e10, DType::i32), Contains("[full]") && Contains("i32"));
  REQUIRE_THROWS_AS(full({2}, NAN, DType::i64), ValueError);
  REQUIRE_THROWS_AS(full({2}, 9.3e18, DType::i64), ValueError);
  REQUIRE_NOTHROW(full({2}, -9223372036854775808.0, DType::i64));
  REQUIRE_THROWS_WITH(full_like(tensor(std::vector<uint8_t>{1}, {1}), 256), Contains("[full_like]"));
  REQUIRE_THROWS_AS(tensor(std::vector<float>{1, 2, 3}, {2, 2}), ShapeError);
  REQUIRE_THROWS_WITH(tensor(std::vector<float>{1, 2, 3}, {2, 2}),
                      Contains("[tensor]") && Contains("[2,2]") && Contains("3 values"));
  REQUIRE_THROWS_WITH(tensor(std::vector<double>{}, {-1}), Contains("[tensor]"));
  REQUIRE_THROWS_AS(call_op(op_def("full"), {}, Attrs{{"value", 1.0}}), NotFoundError);  // no shape
}

// -------------------------------------------------------------------- random

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[random]") {
  using philox::Block;
  using philox::Key;
  auto check = [](Block ctr, Key key, Block want) {
    Block got = philox::philox4x32_10(ctr, key);
    for (int i = 0; i < 4; ++i) CHECK(got.v[i] == want.v[i]);
  };
  check({{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
  check({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, {{0xffffffff, 0xffffffff}},
        {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
  check({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0}},
        {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

// Expected values come from an independent Python implementation of Philox
// and of the layout documented in kernels/philox.h; a change here changes
// every seeded result users have.
TEST_CASE("random draws follow the documented stream layout", "[random]") {
  Generator g(42);
  CHECK(rand({6}, DType::f32, &g).to_vector<double>() ==
        std::vector<double>{0.6129598617553711, 0.4685865044593811, 0.07323169708251953, 0.3408614993095398,
                            0.9877186417579651, 0.32706332206726074});
  CHECK(g.offset() == 8);  // 6 words, rounded up to a whole Philox block
  Generator g2(42);
  g2.advance(4);
  REQUIRE_CLOSE(uniform({5}, -2, 3, DType::f64, &g2),
                tensor(std::vector<double>{2.9385932545725524, 0.5695307348555829, 2.1293341359802467,
                                           1.0137197973364782, 1.6479963241967366}),
                0, 1e-15);
  Generator g3(42);
  REQUIRE_CLOSE(normal({5}, 1, 2, DType::f64, &g3),
                tensor(std::vector<double>{2.772995011802882, 1.8787121388758532, 0.6867807541759655,
                                           0.9725626423395791, 0.011798974660507722}),
                1e-13, 1e-13);
  CHECK(g3.offset() == 12);  // 3 Box–Muller pairs of two 64-bit words
  Generator g4(42);
  CHECK(randint(-5, 5, {8}, DType::i64, &g4).to_vector<int64_t>() ==
        std::vector<int64_t>{1, -1, -5, -2, 4, -2, 0, -1});
  Generator g5(42);
  CHECK(bernoulli({12}, 0.3, DType::i32, &g5).to_vector<int32_t>() ==
        std::vector<int32_t>{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  // The high half of a 64-bit seed is the second key word.
  philox::Stream s(~uint64_t{0}, 0);
  CHECK(s.next() == 0x72a47709u);
  CHECK(s.next() == 0x15474739u);
}

TEST_CASE("same seed gives the same numbers, other seeds or offsets differ", "[random]") {
  Generator a(7), b(7), c(8);
  Tensor xa = randn({1000}, DType::f32, &a), xb = randn({1000}, DType::f32, &b);
  Tensor xc = randn({1000}, DType::f32, &c);
  CHECK(same_bits(xa, xb));
  CHECK_FALSE(same_bits(xa, xc));
  Tensor ya = randn({1000}, DType::f32, &a);  // the offset moved on
  CHECK_FALSE(same_bits(xa, ya));
  CHECK(a.offset() == 2000);

  // A graph node re-run with the same attributes draws the same numbers.
  Attrs attrs{{"shape", std::vector<int64_t>{64}}, {"seed", int64_t{5}}, {"offset", int64_t{128}}};
  CHECK(same_bits(call_op1(op_def("uniform"), {}, attrs), call_op1(op_def("uniform"), {}, attrs)));
  Attrs shifted = attrs;
  shifted.set("offset", int64_t{132});
  auto u = call_op1(op_def("uniform"), {}, attrs).to_vector<float>();
  auto v = call_op1(op_def("uniform"), {}, shifted).to_vector<float>();
  // Offsets count 32-bit words: 4 words later is the same stream, 4 elements on.
  for (size_t i = 0; i + 4 < u.size(); ++i) REQUIRE(u[i + 4] == v[i]);

  manual_seed(1234);
  Tensor d1 = rand({100});
  Tensor d2 = rand({100});
  manual_seed(1234);
  CHECK(same_bits(rand({100}), d1));
  CHECK(same_bits(rand({100}), d2));
  CHECK(default_generator().seed() == 1234);
}

TEST_CASE("random draws do not depend on the thread count", "[random]") {
  constexpr int64_t n = 1000003;  // odd: a short last Box–Muller pair
  auto draw_all = [](int threads) {
    ThreadScope ts(threads);
    Generator g(99);
    std::vector<Tensor> out;
    out.push_back(rand({n}, DType::f32, &g));
    out.push_back(rand({n}, DType::f64, &g));
    out.push_back(randn({n}, DType::f32, &g));
    out.push_back(randn({n}, DType::f64, &g));
    out.push_back(normal({n}, 0, 1, DType::bf16, &g));
    out.push_back(bernoulli({n}, 0.25, DType::u8, &g));
    out.push_back(randint(0, 1000, {n}, DType::i32, &g));
    out.push_back(randint(-(int64_t(1) << 62), int64_t(1) << 62, {n}, DType::i64, &g));
    return out;
  };
  auto one = draw_all(1), two = draw_all(2), three = draw_all(3);
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("draw " << i);
    CHECK(same_bits(one[i], two[i]));
    CHECK(same_bits(one[i], three[i]));
  }
}

TEST_CASE("random draws have the right statistics", "[random]") {
  Generator g(2024);
  constexpr int64_t n = 1 << 20;
  SECTION("normal") {
    for (DType dt : {DType::f32, DType::f64}) {
      Moments m = moments(randn({n}, dt, &g));
      CHECK(std::abs(m.mean) < 0.005);  // standard error 0.001
      CHECK(std::abs(m.std - 1) < 0.005);
      Moments s = moments(normal({n}, 2, 3, dt, &g));
      CHECK(std::abs(s.mean - 2) < 0.015);
      CHECK(std::abs(s.std - 3) < 0.015);
    }
    // Tails: about 0.27% of draws lie beyond 3 sigma.
    auto v = randn({n}, DType::f64, &g).to_vector<double>();
    int64_t tail = 0;
    for (double x : v) tail += std::abs(x) > 3;
    CHECK(std::abs(static_cast<double>(tail) / n - 0.0027) < 0.0005);
    CHECK(moments(normal({100}, 5, 0, DType::f32, &g)).std == 0);
  }
  SECTION("uniform") {
    for (DType dt : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      INFO("dtype " << dtype_name(dt));
      Moments m = moments(uniform({n}, -1, 3, dt, &g));
      CHECK(m.min >= -1);
      CHECK(m.max < 3);
      CHECK(std::abs(m.mean - 1) < 0.01);
      CHECK(std::abs(m.std - 4 / std::sqrt(12.0)) < 0.01);
    }
    // Results that would round up to `high` are kept below it.
    CHECK(moments(uniform({n}, 1, 2, DType::bf16, &g)).max < 2);
    CHECK(moments(uniform({n}, 1, 2, DType::f32, &g)).max < 2);
  }
  SECTION("bernoulli") {
    for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) {
      Moments m = moments(bernoulli({n}, p, DType::f32, &g));
      CHECK(std::abs(m.mean - p) < 0.003);
    }
    CHECK(bernoulli({5}, 0.5, DType::boolean, &g).dtype() == DType::boolean);
  }
  SECTION("randint") {
    auto v = randint(-3, 7, {n}, DType::i64, &g).to_vector<int64_t>();
    std::vector<int64_t> counts(10, 0);
    for (int64_t x : v) {
      REQUIRE(x >= -3);
      REQUIRE(x < 7);
      ++counts[x + 3];
    }
    for (int64_t c : counts) CHECK(std::abs(static_cast<double>(c) / n - 0.1) < 0.003);
    auto u = randint(0, 256, {100000}, DType::u8, &g).to_vector<int64_t>();
    CHECK(std::set<int64_t>(u.begin(), u.end()).size() == 256);
    // A range wider than 32 bits takes the 64-bit path.
    int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
    Moments w = moments(randint(lo, hi, {n}, DType::i64, &g));
    CHECK(std::abs(w.mean) / 9.2e18 < 0.005);
    auto big = randint(0, int64_t(3) << 40, {1000}, DType::i64, &g).to_vector<int64_t>();
    for (int64_t x : big) REQUIRE((x >= 0 && x < (int64_t(3) << 40)));
    // A range just above 2^31 rejects almost half of the candidates: still uniform.
    Moments r = moments(randint(0, (int64_t(1) << 31) + 1, {n}, DType::i64, &g));
    CHECK(std::abs(r.mean / 2147483648.0 - 0.5) < 0.003);
  }
}

TEST_CASE("random ops reject bad parameters without consuming numbers", "[random]") {
  Generator g(3);
  REQUIRE_THROWS_AS(uniform({4}, 1, 1, DType::f32, &g), ValueError);
  REQUIRE_THROWS_WITH(uniform({4}, 2, 1, DType::f32, &g), Contains("[uniform]") && Contains("low=2"));
  REQUIRE_THROWS_WITH(uniform({4}, 0, 1e6, DType::f16, &g), Contains("[uniform]") && Contains("f16"));
  REQUIRE_THROWS_WITH(uniform({4}, -1e308, 1e308, DType::f64, &g), Contains("[uniform]"));
  REQUIRE_THROWS_AS(uniform({4}, 0, 1, DType::i32, &g), TypeError);
  REQUIRE_THROWS_WITH(normal({4}, 0, -1, DType::f32, &g), Contains("[normal]") && Contains("std=-1"));
  REQUIRE_THROWS_AS(normal({4}, NAN, 1, DType::f32, &g), ValueError);
  REQUIRE_THROWS_AS(randn({4}, DType::i64, &g), TypeError);
  REQUIRE_THROWS_WITH(bernoulli({4}, 1.5, DType::f32, &g), Contains("[bernoulli]") && Contains("1.5"));
  REQUIRE_THROWS_AS(bernoulli({4}, NAN, DType::f32, &g), ValueError);
  REQUIRE_THROWS_WITH(randint(5, 5, {4}, DType::i64, &g), Contains("[randint]") && Contains("low < high"));
  REQUIRE_THROWS_WITH(randint(0, 300, {4}, DType::u8, &g), Contains("[randint]") && Contains("u8"));
  REQUIRE_THROWS_AS(randint(0, 2, {4}, DType::boolean, &g), TypeError);
  REQUIRE_THROWS_WITH(rand({-2}, DType::f32, &g), Contains("[uniform]") && Contains("negative"));
  CHECK(g.offset() == 0);
  // The same checks guard graph nodes built or loaded with bad attributes.
  REQUIRE_THROWS_WITH(call_op1(op_def("bernoulli"), {}, Attrs{{"shape", std::vector<int64_t>{2}}, {"p", -0.5}}),
                      Contains("[bernoulli]"));
  REQUIRE_THROWS_WITH(call_op1(op_def("randint"), {}, Attrs{{"shape", std::vector<int64_t>{2}}, {"low", int64_t{3}},
                                                           {"high", int64_t{1}}}),
                      Contains("[randint]"));
}

TEST_CASE("an in-place draw into a view gives the numbers of a fresh draw", "[random]") {
  Attrs attrs{{"shape", std::vector<int64_t>{6, 4}}, {"seed", int64_t{11}}, {"mean", 0.0}, {"std", 1.0}};
  Tensor fresh = call_op1(op_def("normal"), {}, attrs);
  Tensor base = zeros({4, 6});
  Tensor view = base.t();  // [6, 4], not contiguous
  REQUIRE_FALSE(view.is_contiguous());
  call_op_into(op_def("normal"), {}, attrs, view);
  CHECK(same_bits(view, fresh));
  Tensor target = zeros({4, 6}).t();
  call_op_into(op_def("eye"), {}, Attrs{{"n", int64_t{6}}, {"m", int64_t{4}}}, target);
  CHECK(same_bits(target, eye(6, 4)));
}

TEST_CASE("graph draws read and advance the generator: eager and graph continue one stream", "[random]") {
  manual_seed(5);
  Tensor e1 = rand({3, 4}), e2 = normal({5}, 1.0, 2.0, DType::f64), e3 = rand({3, 4}), e4 = rand({7});

  manual_seed(5);
  Tensor first = rand({3, 4});  // eager, then the graph continues from here
  Graph g;
  {
    GraphScope scope(g);
    g.mark_output("n", normal({5}, 1.0, 2.0, DType::f64));
    g.mark_output("u", rand({3, 4}));
  }
  Session session(g);
  std::vector<Tensor> run1 = session.run({}, {"n", "u"});
  CHECK(same_bits(first, e1));
  CHECK(same_bits(run1[0], e2));
  CHECK(same_bits(run1[1], e3));
  CHECK(same_bits(rand({7}), e4));  // eager draws resume after the graph's
  // Another run draws new numbers.
  std::vector<Tensor> run2 = session.run({}, {"n", "u"});
  CHECK_FALSE(same_bits(run2[1], run1[1]));
}

TEST_CASE("a traced dropout draws a new mask every run, from the generator it was given", "[random]") {
  Generator gen(11);
  TracedFunction f = trace([&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{dropout(in[0], 0.5, /*training=*/true, &gen)};
  }, {ones({64})});
  Session session(f.graph);
  Tensor x = ones({64});
  Tensor m1 = session.run({{f.input_names[0], x}}, {f.output_names[0]})[0].clone();
  Tensor m2 = session.run({{f.input_names[0], x}}, {f.output_names[0]})[0].clone();
  CHECK_FALSE(same_bits(m1, m2));
  CHECK(gen.offset() == 2 * 64);  // each run reserved its 64 words
  // The same masks as eager dropout from the same seed.
  Generator eager_gen(11);
  CHECK(same_bits(dropout(x, 0.5, true, &eager_gen), m1));
  CHECK(same_bits(dropout(x, 0.5, true, &eager_gen), m2));
}

TEST_CASE("a graph draw of a not fully known shape is a clear error", "[random]") {
  Graph g;
  GraphScope scope(g);
  Tensor x = g.placeholder("x", {-1, 4});
  REQUIRE_THROWS_WITH(dropout(x, 0.5, true), Contains("[bernoulli]") && Contains("not fully known"));
}
