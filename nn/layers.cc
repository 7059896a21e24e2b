#include "nn/layers.h"

#include <cmath>
#include <sstream>

#include "core/error.h"
#include "nn/init.h"

namespace ndflow::nn {

namespace {

std::string size2_str(Size2 s) {
  return s.h == s.w ? std::to_string(s.h) : str_cat("(", s.h, ", ", s.w, ")");
}

// torch's default for Linear and Conv*: weight Kaiming-uniform with a = sqrt(5)
// (bound 1/sqrt(fan_in)), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void default_init(Tensor& weight, Tensor& bias) {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    int64_t fan_in = init::fans(weight).first;
    double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    init::uniform_(bias, -bound, bound);
  }
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  // The transposed weight is a view that GEMM reads as 'T' (no copy).
  Tensor y = matmul(x, transpose(weight, 0, 1));
  return bias.defined() ? y + bias : y;
}

// ------------------------------------------------------------------- Linear

Linear::Linear(int64_t in, int64_t out, bool with_bias, DType dtype)
    : Module("Linear"), in_features(in), out_features(out) {
  NDF_CHECK(in >= 0 && out >= 0, ValueError, "[Linear] features must be >= 0, got in_features=", in,
            ", out_features=", out);
  weight = register_parameter("weight", zeros({out, in}, dtype));
  if (with_bias) bias = register_parameter("bias", zeros({out}, dtype));
  reset_parameters();
}

void Linear::reset_parameters() { default_init(weight, bias); }

Tensor Linear::forward(const Tensor& x) {
  NDF_CHECK(x.rank() >= 1 && (x.size(-1) == in_features || x.size(-1) == -1), ShapeError, "[Linear] input has shape ",
            shape_str(x.shape()), " but the layer expects ", in_features, " features in the last axis");
  return linear(x, weight, bias);
}

std::string Linear::extra_repr() const {
  return str_cat("in_features=", in_features, ", out_features=", out_features,
                 ", bias=", bias.defined() ? "True" : "False");
}

// ------------------------------------------------------------------- Conv2d

Conv2d::Conv2d(int64_t in, int64_t out, Size2 k, const Conv2dOptions& o)
    : Module("Conv2d"), in_channels(in), out_channels(out), kernel_size(k), options(o) {
  NDF_CHECK(o.groups >= 1 && in % o.groups == 0 && out % o.groups == 0, ValueError,
            "[Conv2d] in_channels (", in, ") and out_channels (", out, ") must divide by groups (",
            o.groups, ")");
  NDF_CHECK(k.h >= 1 && k.w >= 1, ValueError, "[Conv2d] kernel_size must be >= 1, got ", size2_str(k));
  weight = register_parameter("weight", zeros({out, in / o.groups, k.h, k.w}, o.dtype));
  if (o.bias) bias = register_parameter("bias", zeros({out}, o.dtype));
  reset_parameters();
}

void Conv2d::reset_parameters() { default_init(weight, bias); }

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight, bias, options.stride, options.padding, options.dilation, options.groups);
}

std::string Conv2d::extra_repr() const {
  std::string s = str_cat(in_channels, ", ", out_channels, ", kernel_size=", size2_str(kernel_size),
                          ", stride=", size2_str(options.stride));
  if (options.padding.h || options.padding.w) s += ", padding=" + size2_str(options.padding);
  if (options.dilation.h != 1 || options.dilation.w != 1) s += ", dilation=" + size2_str(options.dilation);
  if (options.groups != 1) s += str_cat(", groups=", options.groups);
  if (!options.bias) s += ", bias=False";
  return s;
}

// ------------------------------------------------------------------ pooling

MaxPool2d::MaxPool2d(Size2 k, std::optional<Size2> s, Size2 p, bool ceil, Size2 d)
    : Module("MaxPool2d"), kernel_size(k), stride(s), padding(p), ceil_mode(ceil), dilation(d) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  return max_pool2d(x, kernel_size, stride, padding, ceil_mode, dilation);
}

std::string MaxPool2d::extra_repr() const {
  const bool dilated = dilation.h != 1 || dilation.w != 1;
  return str_cat("kernel_size=", size2_str(kernel_size), ", stride=", size2_str(stride.value_or(kernel_size)),
                 ", padding=", size2_str(padding), dilated ? ", dilation=" + size2_str(dilation) : "",
                 ceil_mode ? ", ceil_mode=True" : "");
}

AvgPool2d::AvgPool2d(Size2 k, std::optional<Size2> s, Size2 p, bool ceil, bool include_pad)
    : Module("AvgPool2d"), kernel_size(k), stride(s), padding(p), ceil_mode(ceil),
      count_include_pad(include_pad) {}

Tensor AvgPool2d::forward(const Tensor& x) {
  return avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad);
}

std::string AvgPool2d::extra_repr() const {
  return str_cat("kernel_size=", size2_str(kernel_size), ", stride=", size2_str(stride.value_or(kernel_size)),
                 ", padding=", size2_str(padding));
}

// ---------------------------------------------------------- Flatten, Dropout

Flatten::Flatten(int64_t s, int64_t e) : Module("Flatten"), start_dim(s), end_dim(e) {}

Tensor Flatten::forward(const Tensor& x) { return flatten(x, start_dim, end_dim); }

std::string Flatten::extra_repr() const { return str_cat("start_dim=", start_dim, ", end_dim=", end_dim); }

Dropout::Dropout(double p_, Generator* gen) : Module("Dropout"), p(p_), generator(gen) {
  NDF_CHECK(p >= 0 && p < 1, ValueError, "[Dropout] p must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), generator); }

std::string Dropout::extra_repr() const { return str_cat("p=", p); }

// --------------------------------------------------------------- Sequential

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) : Module("Sequential") {
  for (auto& m : modules) push_back(std::move(m));
}

Sequential& Sequential::push_back(std::shared_ptr<Module> m) {
  add_module(std::to_string(modules_.size()), m);
  modules_.push_back(std::move(m));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (auto& m : modules_) y = (*m)(y);
  return y;
}

}  // namespace ndflow::nn
