// Tests of the convolution family beyond the generic sample tests: the f32
// oneDNN path against the f64 direct loops over many geometries (stride,
// padding, dilation, groups, bias, relu; pooling with ceil_mode and both
// average divisors), layouts, errors that name the op and shapes, graph mode
// with an unknown batch dim, a small conv net's gradients in f64, and one
// cached primitive run from several threads at once.
#include <catch2/catch.hpp>

#include <sstream>
#include <thread>

#include "op_samples.h"
#include "runtime/session.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

struct ConvCase {
  Shape x, w;
  Size2 stride, padding, dilation;
  int64_t groups;
  bool bias;
  const char* activation;
};

std::string describe(const ConvCase& c) {
  std::ostringstream os;
  os << "x " << shape_str(c.x) << " w " << shape_str(c.w) << " stride " << c.stride.h << "x"
     << c.stride.w << " padding " << c.padding.h << "x" << c.padding.w << " dilation "
     << c.dilation.h << "x" << c.dilation.w << " groups " << c.groups << " bias " << c.bias << " "
     << c.activation;
  return os.str();
}

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
      {{2, 1, 28, 28}, {8, 1, 3, 3}, 1, 0, 1, 1, true, "none"},   // first layer of a CNN
      {{2, 8, 13, 13}, {16, 8, 3, 3}, 1, 0, 1, 1, true, "relu"},  // second layer, fused relu
      {{3, 5, 11, 9}, {7, 5, 3, 2}, {2, 1}, {1, 0}, {1, 2}, 1, false, "none"},
      {{2, 6, 10, 10}, {9, 2, 3, 3}, 2, 1, 1, 3, true, "relu"},   // groups
      {{2, 8, 9, 9}, {8, 1, 3, 3}, 1, 1, 1, 8, true, "none"},     // depthwise
      {{1, 4, 12, 12}, {4, 4, 5, 5}, 3, 2, 2, 1, false, "none"},  // stride 3 skips trailing rows
      {{4, 16, 7, 7}, {32, 16, 1, 1}, 1, 0, 1, 1, true, "none"},  // 1x1
      {{1, 3, 4, 4}, {2, 3, 4, 4}, 1, 0, 1, 1, true, "relu"},     // kernel covers the input
  };
  return cases;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.contiguous().to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// f32 (oneDNN) close to f64 (direct loops), relative to the result's scale.
void require_f32_matches(const Tensor& f32, const Tensor& f64) {
  REQUIRE(f32.dtype() == DType::f32);
  REQUIRE_CLOSE(f32.to(DType::f64), f64, 1e-5 * std::max(1.0, max_abs(f64)), 1e-4);
}

const OpDef& op(const char* name) { return op_def(name); }

}  // namespace

TEST_CASE("conv2d and its backward ops: f32 (oneDNN) match the f64 loops", "[conv]") {
  for (const ConvCase& c : conv_cases()) {
    INFO(describe(c));
    Tensor x = rnd(c.x, 1), w = rnd(c.w, 2, -0.5, 0.5), b = c.bias ? rnd({c.w[0]}, 3) : Tensor();
    Tensor y64 = conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups, c.activation);
    Tensor y32 = conv2d(x.to(DType::f32), w.to(DType::f32), c.bias ? b.to(DType::f32) : Tensor(),
                        c.stride, c.padding, c.dilation, c.groups, c.activation);
    require_f32_matches(y32, y64);

    Attrs a{{"stride", std::vector<int64_t>{c.stride.h, c.stride.w}},
            {"padding", std::vector<int64_t>{c.padding.h, c.padding.w}},
            {"dilation", std::vector<int64_t>{c.dilation.h, c.dilation.w}},
            {"groups", c.groups}};
    Tensor g = rnd(y64.shape(), 4);
    Tensor dx64 = call_op1(op("conv2d_backward_data"), {g, w, x}, a);
    Tensor dx32 = call_op1(op("conv2d_backward_data"), {g.to(DType::f32), w.to(DType::f32), x}, a);
    require_f32_matches(dx32, dx64);
    a.set("kernel_size", std::vector<int64_t>{c.w[2], c.w[3]});
    Tensor dw64 = call_op1(op("conv2d_backward_weight"), {x, g}, a);
    Tensor dw32 = call_op1(op("conv2d_backward_weight"), {x.to(DType::f32), g.to(DType::f32)}, a);
    require_f32_matches(dw32, dw64);
  }
}

TEST_CASE("pooling and its backward ops: f32 (oneDNN) match the f64 loops", "[conv]") {
  struct PoolCase {
    Shape x;
    Size2 kernel;
    std::optional<Size2> stride;
    Size2 padding;
    bool ceil_mode;
  };
  std::vector<PoolCase> cases = {
      {{2, 3, 28, 28}, 2, std::nullopt, 0, false}, {{2, 3, 13, 13}, 2, std::nullopt, 0, false},
      {{2, 3, 13, 13}, 2, std::nullopt, 0, true},  {{1, 4, 10, 9}, 3, 2, 1, true},
      {{1, 4, 10, 9}, {3, 2}, Size2{1, 2}, {1, 1}, false}, {{1, 2, 7, 7}, 5, 3, 2, true},
  };
  for (const PoolCase& c : cases) {
    for (bool include_pad : {true, false}) {
      INFO("x " << shape_str(c.x) << " kernel " << c.kernel.h << "x" << c.kernel.w << " padding "
                << c.padding.h << " ceil_mode " << c.ceil_mode << " count_include_pad " << include_pad);
      Tensor x = rnd(c.x, 7);
      Tensor x32 = x.to(DType::f32);
      require_f32_matches(max_pool2d(x32, c.kernel, c.stride, c.padding, c.ceil_mode),
                          max_pool2d(x, c.kernel, c.stride, c.padding, c.ceil_mode));
      Tensor y = avg_pool2d(x, c.kernel, c.stride, c.padding, c.ceil_mode, include_pad);
      require_f32_matches(avg_pool2d(x32, c.kernel, c.stride, c.padding, c.ceil_mode, include_pad), y);

      Size2 s = c.stride.value_or(c.kernel);
      Attrs a{{"kernel_size", std::vector<int64_t>{c.kernel.h, c.kernel.w}},
              {"stride", std::vector<int64_t>{s.h, s.w}},
              {"padding", std::vector<int64_t>{c.padding.h, c.padding.w}},
              {"ceil_mode", c.ceil_mode}};
      Tensor g = rnd(y.shape(), 8);
      require_f32_matches(call_op1(op("max_pool2d_backward"), {x32, g.to(DType::f32)}, a),
                          call_op1(op("max_pool2d_backward"), {x, g}, a));
      a.set("count_include_pad", include_pad);
      require_f32_matches(call_op1(op("avg_pool2d_backward"), {x32, g.to(DType::f32)}, a),
                          call_op1(op("avg_pool2d_backward"), {x, g}, a));
    }
  }
}

TEST_CASE("conv2d and pooling read any layout", "[conv]") {
  // NHWC data seen as NCHW (a permuted view), and a weight sliced from a larger one.
  Tensor x = permute(rnd({2, 9, 9, 4}, 1, -1, 1, DType::f32), {0, 3, 1, 2});
  Tensor w = slice(rnd({8, 4, 3, 3}, 2, -0.5, 0.5, DType::f32), 0, 0, 8, 2);
  REQUIRE_FALSE(x.is_contiguous());
  REQUIRE_FALSE(w.is_contiguous());
  require_f32_matches(conv2d(x, w, Tensor(), 1, 1), conv2d(x.contiguous().to(DType::f64),
                                                           w.contiguous().to(DType::f64), Tensor(), 1, 1));
  REQUIRE_CLOSE(max_pool2d(x, 2), max_pool2d(x.contiguous(), 2), 0, 0);
  REQUIRE_CLOSE(avg_pool2d(x, 3, 2, 1), avg_pool2d(x.contiguous(), 3, 2, 1), 1e-6, 1e-6);
}

TEST_CASE("conv2d and pooling errors name the op, the shapes and what is valid", "[conv]") {
  Tensor x = zeros({8, 3, 28, 28});
  REQUIRE_THROWS_AS(conv2d(x, zeros({32, 1, 3, 3})), ShapeError);
  REQUIRE_THROWS_WITH(conv2d(x, zeros({32, 1, 3, 3})),
                      Catch::Contains("[conv2d] input has 3 channels but weight expects 1") &&
                          Catch::Contains("[8,3,28,28]") && Catch::Contains("[32,1,3,3]"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 4, 8, 8}), zeros({6, 1, 3, 3}), Tensor(), 1, 0, 1, 2),
                      Catch::Contains("[conv2d]") && Catch::Contains("weight expects 1 per group x 2 groups"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 3, 8, 8}), zeros({6, 1, 3, 3}), Tensor(), 1, 0, 1, 2),
                      Catch::Contains("[conv2d] groups = 2 does not divide the 3 input channels"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 4, 8, 8}), zeros({5, 2, 3, 3}), Tensor(), 1, 0, 1, 2),
                      Catch::Contains("[conv2d] groups = 2 does not divide the 5 output channels"));
  REQUIRE_THROWS_AS(conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 5, 5})), ShapeError);
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 5, 5})),
                      Catch::Contains("[conv2d] kernel 5x5") && Catch::Contains("padded input has only 4"));
  REQUIRE_THROWS_WITH(conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), Tensor(), 1, 0, 2),
                      Catch::Contains("spans 5 rows"));
  REQUIRE_NOTHROW(conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 5, 5}), Tensor(), 1, 1));
  REQUIRE_THROWS_WITH(conv2d(x, zeros({4, 3, 3, 3}), zeros({3})),
                      Catch::Contains("[conv2d] bias must have shape [4]"));
  REQUIRE_THROWS_WITH(conv2d(zeros({3, 28, 28}), zeros({4, 3, 3, 3})),
                      Catch::Contains("[conv2d] input must be 4-d") && Catch::Contains("unsqueeze"));
  REQUIRE_THROWS_AS(conv2d(x, zeros({4, 3, 3, 3}), Tensor(), 0), ValueError);
  REQUIRE_THROWS_WITH(conv2d(x, zeros({4, 3, 3, 3}), Tensor(), 1, -1), Catch::Contains("padding must be >= 0"));
  REQUIRE_THROWS_WITH(conv2d(x, zeros({4, 3, 3, 3}), Tensor(), 1, 0, 1, 1, "tanh"),
                      Catch::Contains("activation must be 'none' or 'relu'"));
  REQUIRE_THROWS_AS(conv2d(zeros({1, 3, 8, 8}, DType::i64), zeros({4, 3, 3, 3}, DType::i64)), TypeError);

  REQUIRE_THROWS_WITH(max_pool2d(x, 2, 2, 2), Catch::Contains("[max_pool2d] padding [2,2] must be at most "
                                                              "half the kernel size [2,2]"));
  REQUIRE_THROWS_WITH(avg_pool2d(zeros({1, 1, 2, 2}), 3),
                      Catch::Contains("[avg_pool2d] kernel [3,3] is larger than the padded input 2x2"));
  REQUIRE_THROWS_AS(max_pool2d(zeros({1, 1, 4, 4}), 0), ValueError);
  REQUIRE_THROWS_WITH(max_pool2d(zeros({4, 4}), 2), Catch::Contains("[max_pool2d] input must be 4-d"));
}

TEST_CASE("conv2d and pooling in a graph with an unknown batch dim", "[conv][graph]") {
  Tensor w = rnd({4, 3, 3, 3}, 2, -0.5, 0.5, DType::f32), b = rnd({4}, 3, -1, 1, DType::f32);
  auto net = [&](const Tensor& x) {
    Tensor h = conv2d(x, w, b, 1, 1, 1, 1, "relu");
    return avg_pool2d(max_pool2d(h, 2, std::nullopt, 0, true), 2, 1);
  };
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 3, 9, 9});
    Tensor y = net(x);
    CHECK(y.shape() == Shape{-1, 4, 4, 4});
    g.mark_output("y", y);
    g.mark_output("dx", gradients({sum(y)}, {x})[0]);
  }
  Session sess(g);
  for (int64_t n : {1, 3}) {
    Tensor x = rnd({n, 3, 9, 9}, 5, -1, 1, DType::f32).set_requires_grad(true);
    auto out = sess.run({{"x", x}}, {"y", "dx"});
    Tensor y = net(x);
    REQUIRE_CLOSE(out[0], y, 1e-6, 1e-6);
    sum(y).backward();
    REQUIRE_CLOSE(out[1], x.grad(), 1e-6, 1e-6);
  }
}

TEST_CASE("a small conv net's gradients pass gradcheck in f64", "[conv][grad]") {
  // conv (bias, relu) -> max_pool -> conv (groups, stride) -> avg_pool -> sum
  Tensor x = rnd({2, 2, 8, 8}, 1), w1 = rnd({4, 2, 3, 3}, 2, -0.5, 0.5), b1 = rnd({4}, 3, -0.1, 0.1);
  Tensor w2 = rnd({4, 2, 2, 2}, 4, -0.5, 0.5);
  for (Tensor* t : {&x, &w1, &b1, &w2}) t->set_requires_grad(true);
  gradcheck(
      [](const std::vector<Tensor>& in) {
        Tensor h = max_pool2d(conv2d(in[0], in[1], in[2], 1, 1, 1, 1, "relu"), 2);
        h = conv2d(h, in[3], Tensor(), 2, 1, 1, 2);
        return avg_pool2d(h, 2, 1, 1, true, false);
      },
      {x, w1, b1, w2});
}

TEST_CASE("one cached conv2d primitive runs on several threads at once", "[conv]") {
  Tensor x = rnd({4, 8, 16, 16}, 1, -1, 1, DType::f32), w = rnd({16, 8, 3, 3}, 2, -0.5, 0.5, DType::f32);
  Tensor expected = conv2d(x, w, Tensor(), 1, 1);
  std::vector<Tensor> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i)
    threads.emplace_back([&, i] {
      for (int k = 0; k < 20; ++k) got[i] = conv2d(x, w, Tensor(), 1, 1);
    });
  for (auto& t : threads) t.join();
  for (auto& t : got) REQUIRE_CLOSE(t, expected, 0, 0);
}
