// Per-op sample inputs, listed once per op family (samples_<family>.cc) and
// run by the generic tests in test_op_samples.cc: forward against the expected
// values, the same on non-contiguous copies of the inputs, inferred metadata
// against the actual outputs, and — for differentiable ops — gradcheck in f64.
// A registry walk fails for any op without samples, or without a gradchecked
// sample while differentiable.
#pragma once

#include <string>
#include <vector>

#include <ndflow/ndflow.h>

namespace ndflow::testing {

struct OpSample {
  std::string op;                // registered op name
  std::vector<Tensor> inputs;
  Attrs attrs = {};
  std::vector<Tensor> expected = {};  // expected outputs; empty = not compared
  bool check_grad = true;        // gradcheck if the op is differentiable
  std::vector<int> grad_inputs = {};  // inputs to gradcheck; empty = all floating inputs
  double atol = 1e-5, rtol = 1e-5;    // tolerance for the forward comparison
};
using SampleList = std::vector<OpSample>;

// One function per op family; each lives in tests/cpp/samples_<family>.cc.
SampleList math_samples();
SampleList reduce_samples();
SampleList linalg_samples();
SampleList array_samples();
SampleList creation_samples();
SampleList random_samples();
SampleList nn_samples();
SampleList conv_samples();
SampleList norm_samples();
SampleList optim_samples();
SampleList state_samples();
SampleList fused_samples();

SampleList all_samples();

// Helpers for writing samples and tests.
// A tensor with values lo, lo+step, ... (row-major) — deterministic test data.
Tensor seq(const Shape& shape, double lo = -1.0, double step = 0.25, DType dtype = DType::f64);
// Deterministic pseudo-random values in [lo, hi) (a fixed LCG, independent of ndflow's RNG).
Tensor rnd(const Shape& shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
           DType dtype = DType::f64);
// |a - b| <= atol + rtol*|b| elementwise with equal shapes (NaNs equal NaNs);
// on failure returns a message naming the first mismatch, else "".
std::string compare_tensors(const Tensor& actual, const Tensor& expected, double atol = 1e-5,
                            double rtol = 1e-5);

}  // namespace ndflow::testing

// REQUIRE that two tensors are close, printing the mismatch.
#define REQUIRE_CLOSE(actual, expected, ...)                                                   \
  do {                                                                                        \
    std::string ndf_msg_ = ::ndflow::testing::compare_tensors((actual), (expected), ##__VA_ARGS__); \
    INFO(ndf_msg_);                                                                           \
    REQUIRE(ndf_msg_.empty());                                                                \
  } while (0)
