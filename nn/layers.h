// Layers with PyTorch's names, shapes, parameter names and default
// initialization: Linear, Conv2d, pooling, activations, Flatten, Dropout,
// Sequential. Each is a Module whose forward is written with the ops of
// ops/api.h, so it runs eagerly and traces into graphs alike.
//
//   auto model = std::make_shared<nn::Sequential>(
//       std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(784, 128),
//       std::make_shared<nn::ReLU>(), std::make_shared<nn::Linear>(128, 10));
//   Tensor logits = (*model)(images);          // images [N, 1, 28, 28]
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"
#include "ops/api.h"

namespace ndflow::nn {

// x @ weight^T + bias (bias may be undefined).
NDF_EXPORT Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// y = x W^T + b over the last axis. weight [out, in] is Kaiming-uniform with
// a = sqrt(5), bias U(-1/sqrt(in), 1/sqrt(in)), as torch.nn.Linear.
class NDF_EXPORT Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, DType dtype = DType::f32);
  Tensor forward(const Tensor& x) override;
  void reset_parameters();
  std::string extra_repr() const override;

  int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when disabled
};

struct Conv2dOptions {
  Size2 stride = 1;
  Size2 padding = 0;
  Size2 dilation = 1;
  int64_t groups = 1;
  bool bias = true;
  DType dtype = DType::f32;
};

// 2-d convolution of NCHW images: weight [out, in/groups, kh, kw], bias
// [out], initialized as torch.nn.Conv2d (Kaiming-uniform a = sqrt(5); bias
// U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
class NDF_EXPORT Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, Size2 kernel_size, const Conv2dOptions& o = {});
  Tensor forward(const Tensor& x) override;
  void reset_parameters();
  std::string extra_repr() const override;

  int64_t in_channels, out_channels;
  Size2 kernel_size;
  Conv2dOptions options;
  Tensor weight, bias;
};

class NDF_EXPORT MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                     bool ceil_mode = false, Size2 dilation = 1);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  Size2 kernel_size;
  std::optional<Size2> stride;
  Size2 padding;
  bool ceil_mode;
  Size2 dilation;
};

class NDF_EXPORT AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                     bool ceil_mode = false, bool count_include_pad = true);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  Size2 kernel_size;
  std::optional<Size2> stride;
  Size2 padding;
  bool ceil_mode, count_include_pad;
};

// Elementwise activations without parameters.
class NDF_EXPORT ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override { return relu(x); }
};
class NDF_EXPORT Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};
class NDF_EXPORT Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override { return tanh(x); }
};
class NDF_EXPORT GELU : public Module {
 public:
  GELU() : Module("GELU") {}
  Tensor forward(const Tensor& x) override { return gelu(x); }
};
class NDF_EXPORT Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

// Flattens axes start_dim..end_dim (default: all but the batch axis).
class NDF_EXPORT Flatten : public Module {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  int64_t start_dim, end_dim;
};

// Zeroes elements with probability p in training mode (scaling the rest by
// 1/(1-p)); the identity in eval mode. Draws from `gen` (default: the
// default generator), so eager and compiled steps continue one stream.
class NDF_EXPORT Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) override;
  std::string extra_repr() const override;

  double p;
  Generator* generator;
};

// Runs its modules in order; children are named "0", "1", ...
class NDF_EXPORT Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  template <typename... M>
  explicit Sequential(std::shared_ptr<M>... modules)
      : Sequential(std::vector<std::shared_ptr<Module>>{std::move(modules)...}) {}

  Tensor forward(const Tensor& x) override;
  Sequential& push_back(std::shared_ptr<Module> m);
  size_t size() const { return modules_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const { return modules_.at(i); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace ndflow::nn
