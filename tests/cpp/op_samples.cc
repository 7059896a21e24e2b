#include "op_samples.h"

#include <cmath>
#include <sstream>

namespace ndflow::testing {

SampleList all_samples() {
  SampleList all;
  for (auto fn : {math_samples, reduce_samples, linalg_samples, array_samples, creation_samples,
                  random_samples, nn_samples, conv_samples, norm_samples, optim_samples, state_samples,
                  fused_samples}) {
    SampleList s = fn();
    all.insert(all.end(), s.begin(), s.end());
  }
  return all;
}

Tensor seq(const Shape& shape, double lo, double step, DType dtype) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = lo + step * static_cast<double>(i);
  return tensor(v, shape).to(dtype);
}

Tensor rnd(const Shape& shape, uint64_t seed, double lo, double hi, DType dtype) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = lo + (hi - lo) * static_cast<double>(s >> 11) / 9007199254740992.0;
  }
  return tensor(v, shape).to(dtype);
}

std::string compare_tensors(const Tensor& actual, const Tensor& expected, double atol, double rtol) {
  std::ostringstream os;
  if (!actual.defined() || !expected.defined()) return "undefined tensor in comparison";
  if (!(actual.shape() == expected.shape())) {
    os << "shape " << shape_str(actual.shape()) << " != expected " << shape_str(expected.shape());
    return os.str();
  }
  auto a = actual.to_vector<double>();
  auto e = expected.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(e[i])) continue;
    if (std::isinf(e[i]) && a[i] == e[i]) continue;
    if (!(std::abs(a[i] - e[i]) <= atol + rtol * std::abs(e[i]))) {
      os << "element " << i << ": got " << a[i] << ", expected " << e[i] << "\nactual: " << actual
         << "\nexpected: " << expected;
      return os.str();
    }
  }
  return "";
}

}  // namespace ndflow::testing
