// Parameter initialization (torch.nn.init), drawing from ndflow's generator
// (the default one unless `gen` is given). Each function fills the tensor in
// place, without recording it for autograd, and returns it.
//
//   Tensor w = nn::make_parameter(zeros({out, in}));
//   nn::init::kaiming_uniform_(w, std::sqrt(5.0));   // torch.nn.Linear's default
#pragma once

#include <string>
#include <utility>

#include "ops/api.h"

namespace ndflow::nn::init {

// The recommended gain for a nonlinearity ("linear", "conv2d", "sigmoid",
// "tanh", "relu", "leaky_relu" with `param` as its slope, "selu").
NDF_EXPORT double calculate_gain(const std::string& nonlinearity, double param = 0.01);
// (fan_in, fan_out) of a weight [out, in, k...]: in * prod(k), out * prod(k).
NDF_EXPORT std::pair<int64_t, int64_t> fans(const Tensor& t);

NDF_EXPORT Tensor& uniform_(Tensor& t, double low = 0, double high = 1, Generator* gen = nullptr);
NDF_EXPORT Tensor& normal_(Tensor& t, double mean = 0, double std = 1, Generator* gen = nullptr);
NDF_EXPORT Tensor& constant_(Tensor& t, double value);
NDF_EXPORT Tensor& zeros_(Tensor& t);
NDF_EXPORT Tensor& ones_(Tensor& t);
// U(-b, b) with b = gain * sqrt(3 / fan); gain from ("leaky_relu", a) by default.
NDF_EXPORT Tensor& kaiming_uniform_(Tensor& t, double a = 0, bool fan_in = true,
                                    const std::string& nonlinearity = "leaky_relu",
                                    Generator* gen = nullptr);
NDF_EXPORT Tensor& kaiming_normal_(Tensor& t, double a = 0, bool fan_in = true,
                                   const std::string& nonlinearity = "leaky_relu",
                                   Generator* gen = nullptr);
NDF_EXPORT Tensor& xavier_uniform_(Tensor& t, double gain = 1, Generator* gen = nullptr);
NDF_EXPORT Tensor& xavier_normal_(Tensor& t, double gain = 1, Generator* gen = nullptr);

}  // namespace ndflow::nn::init
