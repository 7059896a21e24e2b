// nn::LSTM, as torch.nn.LSTM, composed from ops (matmul, sigmoid, tanh,
// split): the same parameter names (weight_ih_l0, weight_hh_l0, bias_ih_l0,
// bias_hh_l0, "_reverse" for the backward direction), gate order i, f, g, o
// in the stacked weights, and U(-1/sqrt(hidden), 1/sqrt(hidden)) init — so a
// PyTorch state dict loads as is.
//
//   nn::LSTM lstm(10, 20, {.num_layers = 2});
//   auto [out, h, c] = lstm(x);   // x [T, N, 10] -> out [T, N, 20], h and c [2, N, 20]
#pragma once

#include "nn/module.h"
#include "ops/api.h"

namespace ndflow::nn {

struct LSTMOptions {
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;  // x and out are [N, T, *] instead of [T, N, *]
  double dropout = 0;        // on the outputs of every layer but the last, in training mode
  bool bidirectional = false;
  DType dtype = DType::f32;
};

struct LSTMResult {
  Tensor output;  // [T, N, D*hidden] (batch_first: [N, T, D*hidden]); D = 2 if bidirectional
  Tensor h, c;    // final states [D*num_layers, N, hidden]
};

class NDF_EXPORT LSTM : public Module {
 public:
  LSTM(int64_t input_size, int64_t hidden_size, const LSTMOptions& o = {});
  // h0 and c0 ([D*num_layers, N, hidden]) default to zeros.
  LSTMResult operator()(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor());
  LSTMResult forward_with_state(const Tensor& x, const Tensor& h0 = Tensor(), const Tensor& c0 = Tensor());
  Tensor forward(const Tensor& x) override;  // the output only (for Sequential)
  void reset_parameters();
  std::string extra_repr() const override;

  int64_t input_size, hidden_size;
  LSTMOptions options;

 private:
  // One direction of one layer over the whole sequence x [T, N, in]:
  // returns the outputs [T, N, hidden] and sets h, c to the final states.
  Tensor run_direction(const Tensor& x, int64_t layer, bool reverse, Tensor& h, Tensor& c) const;
  std::string suffix(int64_t layer, bool reverse) const;
};

}  // namespace ndflow::nn
