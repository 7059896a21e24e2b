// Eager autograd: accumulation, shared subexpressions, no_grad, detach,
// retain_graph, grad(), in-place version checks, and the errors users hit.
#include <catch2/catch.hpp>

#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

TEST_CASE("backward accumulates into .grad across calls", "[autograd]") {
  Tensor x = tensor(std::vector<double>{1, 2, 3}, {3}).set_requires_grad();
  Tensor y = sum(mul(x, x));
  y.backward(Tensor(), /*retain_graph=*/true);
  REQUIRE_CLOSE(x.grad(), tensor(std::vector<double>{2, 4, 6}, {3}));
  y.backward();
  REQUIRE_CLOSE(x.grad(), tensor(std::vector<double>{4, 8, 12}, {3}));
  x.zero_grad();
  REQUIRE_FALSE(x.grad().defined());
}

TEST_CASE("a second backward without retain_graph is a clear error", "[autograd]") {
  Tensor x = tensor(std::vector<double>{1, 2}, {2}).set_requires_grad();
  Tensor y = sum(exp(x));
  y.backward();
  REQUIRE_THROWS_AS(y.backward(), ValueError);
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("retain_graph"));
}

TEST_CASE("shared subexpressions sum their gradients", "[autograd]") {
  Tensor x = tensor(std::vector<double>{0.5, -1.5}, {2}).set_requires_grad();
  Tensor s = sin(x);          // used twice below
  Tensor y = sum(s * s + s);  // dy/dx = (2 sin x + 1) cos x
  y.backward();
  auto xv = x.to_vector<double>();
  std::vector<double> want;
  for (double v : xv) want.push_back((2 * std::sin(v) + 1) * std::cos(v));
  REQUIRE_CLOSE(x.grad(), tensor(want, {2}), 1e-12);
}

TEST_CASE("no_grad records nothing, detach cuts history", "[autograd]") {
  Tensor x = tensor(std::vector<double>{1, 2}, {2}).set_requires_grad();
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE(y.is_leaf());
  }
  Tensor d = x.detach();
  REQUIRE_FALSE(d.requires_grad());
  Tensor y = sum(x * d);  // gradient flows only through the first factor
  y.backward();
  REQUIRE_CLOSE(x.grad(), tensor(std::vector<double>{1, 2}, {2}));
  REQUIRE(d.raw_data() == x.raw_data());  // detach shares storage
}

TEST_CASE("grad() returns gradients without touching .grad", "[autograd]") {
  Tensor x = tensor(std::vector<double>{1, 2, 3}, {3}).set_requires_grad();
  Tensor w = tensor(std::vector<double>{4, 5, 6}, {3}).set_requires_grad();
  Tensor unused = tensor(std::vector<double>{1}, {1}).set_requires_grad();
  Tensor h = x * w;  // a non-leaf input to ask for
  Tensor y = sum(h * h);
  auto g = grad({y}, {x, h, unused});
  REQUIRE_CLOSE(g[0], tensor(std::vector<double>{32, 100, 216}, {3}));  // 2 h w
  REQUIRE_CLOSE(g[1], tensor(std::vector<double>{8, 20, 36}, {3}));     // 2 h
  REQUIRE_FALSE(g[2].defined());
  REQUIRE_FALSE(x.grad().defined());
  REQUIRE_FALSE(w.grad().defined());
}

TEST_CASE("backward with an explicit output gradient", "[autograd]") {
  Tensor x = tensor(std::vector<double>{1, 2, 3, 4}, {2, 2}).set_requires_grad();
  Tensor y = x * 3.0;
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("one-element"));
  y.backward(tensor(std::vector<double>{1, 0, 0, 2}, {2, 2}));
  REQUIRE_CLOSE(x.grad(), tensor(std::vector<double>{3, 0, 0, 6}, {2, 2}));
  Tensor z = x * 2.0;
  REQUIRE_THROWS_AS(z.backward(ones({3})), ShapeError);
}

TEST_CASE("broadcasting gradients are summed back to the input shape", "[autograd]") {
  Tensor a = seq({2, 3}).set_requires_grad();
  Tensor b = seq({3}, 0.5).set_requires_grad();
  Tensor c = seq({2, 1}, 2.0).set_requires_grad();
  Tensor y = sum(a * b + c);
  y.backward();
  REQUIRE(b.grad().shape() == Shape{3});
  REQUIRE(c.grad().shape() == Shape{2, 1});
  REQUIRE_CLOSE(c.grad(), full({2, 1}, 3.0, DType::f64));  // summed over the broadcast axis
  REQUIRE_CLOSE(b.grad(), sum(a, {0}));
}

TEST_CASE("modifying a saved tensor in place makes backward fail", "[autograd]") {
  Tensor x = tensor(std::vector<double>{1, 2}, {2}).set_requires_grad();
  Tensor h = x * 1.0;
  Tensor y = sum(exp(h));  // exp saves its output
  Tensor e = exp(h);
  Tensor z = sum(e * e);   // mul saves e
  {
    NoGradGuard ng;
    e.add_(ones({2}, DType::f64));
  }
  REQUIRE_THROWS_WITH(z.backward(), Catch::Contains("modified in place"));
  REQUIRE_NOTHROW(y.backward());
}

TEST_CASE("in-place update of a tensor that requires grad is refused in grad mode", "[autograd]") {
  Tensor w = tensor(std::vector<double>{1, 2}, {2}).set_requires_grad();
  REQUIRE_THROWS_AS(w.add_(ones({2}, DType::f64)), ValueError);
  NoGradGuard ng;
  w.add_(ones({2}, DType::f64), -0.5);
  REQUIRE_CLOSE(w, tensor(std::vector<double>{0.5, 1.5}, {2}));
}

TEST_CASE("requires_grad only on floating tensors, integer outputs carry none", "[autograd]") {
  Tensor i = tensor(std::vector<int64_t>{1, 2}, {2});
  REQUIRE_THROWS_AS(i.set_requires_grad(), TypeError);
  Tensor x = tensor(std::vector<double>{1, 2}, {2}).set_requires_grad();
  Tensor c = x > 1.5;
  REQUIRE_FALSE(c.requires_grad());
}

TEST_CASE("gradcheck detects a wrong gradient", "[autograd]") {
  // A function whose tape gradient is deliberately wrong: detach hides one path.
  Tensor x = tensor(std::vector<double>{0.3, 0.7}, {2}).set_requires_grad();
  auto wrong = [](const std::vector<Tensor>& xs) { return xs[0] * xs[0].detach(); };
  REQUIRE_THROWS_WITH(gradcheck(wrong, {x}), Catch::Contains("gradient mismatch"));
  auto right = [](const std::vector<Tensor>& xs) { return xs[0] * xs[0]; };
  REQUIRE_NOTHROW(gradcheck(right, {x}));
}

TEST_CASE("composite ops gradcheck: silu", "[autograd]") {
  Tensor x = rnd({3, 4}, 7).set_requires_grad();
  REQUIRE_NOTHROW(gradcheck([](const std::vector<Tensor>& xs) { return silu(xs[0]); }, {x}));
}

TEST_CASE("elementwise bad input: clear errors", "[math][errors]") {
  Tensor a = ones({2, 3}), b = ones({4});
  REQUIRE_THROWS_AS(add(a, b), ShapeError);
  REQUIRE_THROWS_WITH(add(a, b), Catch::Contains("[add]") && Catch::Contains("[2,3]") &&
                                     Catch::Contains("[4]"));
  REQUIRE_THROWS_AS(exp(tensor(std::vector<int64_t>{1}, {1})), TypeError);
  REQUIRE_THROWS_WITH(exp(tensor(std::vector<int64_t>{1}, {1})), Catch::Contains("[exp]") && Catch::Contains("i64"));
  REQUIRE_THROWS_AS(where(ones({2}), ones({2}), ones({2})), TypeError);
  REQUIRE_THROWS_AS(clamp(ones({2}), 1.0, -1.0), ValueError);
  REQUIRE_THROWS_AS(add(Tensor(), ones({1})), ValueError);
}

TEST_CASE("scalar operands keep a floating tensor's dtype", "[math]") {
  Tensor x = ones({2}, DType::f32);
  REQUIRE((x * 2.0).dtype() == DType::f32);
  REQUIRE((x + 1).dtype() == DType::f32);
  Tensor i = tensor(std::vector<int32_t>{1, 2}, {2});
  REQUIRE((i + 1).dtype() == DType::i32);
  REQUIRE((i * 0.5).dtype() == DType::f32);
  REQUIRE((i / 2).dtype() == DType::f32);
}

TEST_CASE("large elementwise ops take the parallel path and agree with the serial one", "[math]") {
  Tensor a = rnd({512, 300}, 3, -2, 2, DType::f32);
  Tensor b = rnd({300}, 4, -2, 2, DType::f32);
  int prev = get_num_threads();
  set_num_threads(1);
  Tensor serial = tanh(a * b + a);
  Tensor serial_t = tanh(a.t().contiguous().t() * b + a);
  set_num_threads(2);
  Tensor parallel = tanh(a * b + a);
  set_num_threads(prev);
  REQUIRE_CLOSE(parallel, serial, 0, 0);
  REQUIRE_CLOSE(serial_t, serial, 0, 0);
}
