#include "nn/init.h"

#include <cmath>

#include "core/error.h"
#include "runtime/eager.h"

namespace ndflow::nn::init {

namespace {

Tensor& fill_from(Tensor& t, const Tensor& value) {
  NDF_CHECK(!t.is_symbolic(), ValueError, "nn::init: cannot initialize a symbolic tensor");
  NoGradGuard no_grad;
  EagerScope eager;  // initialization runs now, even while a graph is being built
  t.copy_(value);
  return t;
}

}  // namespace

double calculate_gain(const std::string& nl, double param) {
  if (nl == "linear" || nl == "conv1d" || nl == "conv2d" || nl == "conv3d" || nl == "sigmoid") return 1.0;
  if (nl == "tanh") return 5.0 / 3;
  if (nl == "relu") return std::sqrt(2.0);
  if (nl == "leaky_relu") return std::sqrt(2.0 / (1 + param * param));
  if (nl == "selu") return 3.0 / 4;
  fail<ValueError>("nn::init::calculate_gain: unsupported nonlinearity '", nl, "'");
}

std::pair<int64_t, int64_t> fans(const Tensor& t) {
  NDF_CHECK(t.rank() >= 2, ShapeError, "nn::init: fan in/out need a tensor with at least 2 dims, got shape ",
            shape_str(t.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.rank(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

Tensor& uniform_(Tensor& t, double low, double high, Generator* gen) {
  EagerScope eager;
  return fill_from(t, uniform(t.shape(), low, high, t.dtype(), gen));
}

Tensor& normal_(Tensor& t, double mean, double std, Generator* gen) {
  EagerScope eager;
  return fill_from(t, normal(t.shape(), mean, std, t.dtype(), gen));
}

Tensor& constant_(Tensor& t, double value) {
  EagerScope eager;
  return fill_from(t, scalar(value, t.dtype()));
}

Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

Tensor& kaiming_uniform_(Tensor& t, double a, bool fan_in, const std::string& nl, Generator* gen) {
  auto [in, out] = fans(t);
  int64_t fan = fan_in ? in : out;
  if (fan == 0) return zeros_(t);
  double bound = calculate_gain(nl, a) * std::sqrt(3.0 / static_cast<double>(fan));
  return uniform_(t, -bound, bound, gen);
}

Tensor& kaiming_normal_(Tensor& t, double a, bool fan_in, const std::string& nl, Generator* gen) {
  auto [in, out] = fans(t);
  int64_t fan = fan_in ? in : out;
  if (fan == 0) return zeros_(t);
  return normal_(t, 0.0, calculate_gain(nl, a) / std::sqrt(static_cast<double>(fan)), gen);
}

Tensor& xavier_uniform_(Tensor& t, double gain, Generator* gen) {
  auto [in, out] = fans(t);
  double bound = gain * std::sqrt(6.0 / static_cast<double>(in + out));
  return uniform_(t, -bound, bound, gen);
}

Tensor& xavier_normal_(Tensor& t, double gain, Generator* gen) {
  auto [in, out] = fans(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(in + out)), gen);
}

}  // namespace ndflow::nn::init
