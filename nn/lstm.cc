#include "nn/lstm.h"

#include <cmath>

#include "core/error.h"
#include "nn/init.h"
#include "nn/layers.h"

namespace ndflow::nn {

LSTM::LSTM(int64_t in, int64_t hidden, const LSTMOptions& o)
    : Module("LSTM"), input_size(in), hidden_size(hidden), options(o) {
  NDF_CHECK(in >= 1 && hidden >= 1, ValueError, "[LSTM] input_size and hidden_size must be >= 1, got ", in,
            " and ", hidden);
  NDF_CHECK(o.num_layers >= 1, ValueError, "[LSTM] num_layers must be >= 1, got ", o.num_layers);
  NDF_CHECK(o.dropout >= 0 && o.dropout < 1, ValueError, "[LSTM] dropout must be in [0, 1), got ", o.dropout);
  const int64_t dirs = o.bidirectional ? 2 : 1;
  for (int64_t l = 0; l < o.num_layers; ++l)
    for (int64_t d = 0; d < dirs; ++d) {
      std::string s = suffix(l, d == 1);
      int64_t layer_in = l == 0 ? in : hidden * dirs;
      // Rows stacked as the gates i, f, g, o (PyTorch's layout).
      register_parameter("weight_ih" + s, zeros({4 * hidden, layer_in}, o.dtype));
      register_parameter("weight_hh" + s, zeros({4 * hidden, hidden}, o.dtype));
      if (o.bias) {
        register_parameter("bias_ih" + s, zeros({4 * hidden}, o.dtype));
        register_parameter("bias_hh" + s, zeros({4 * hidden}, o.dtype));
      }
    }
  reset_parameters();
}

std::string LSTM::suffix(int64_t layer, bool reverse) const {
  return "_l" + std::to_string(layer) + (reverse ? "_reverse" : "");
}

void LSTM::reset_parameters() {
  double bound = 1.0 / std::sqrt(static_cast<double>(hidden_size));
  for (Tensor& p : parameters(false)) init::uniform_(p, -bound, bound);
}

Tensor LSTM::run_direction(const Tensor& x, int64_t layer, bool reverse, Tensor& h, Tensor& c) const {
  const std::string s = suffix(layer, reverse);
  Tensor w_ih = parameter("weight_ih" + s), w_hh = parameter("weight_hh" + s);
  Tensor bias;
  if (options.bias) bias = parameter("bias_ih" + s) + parameter("bias_hh" + s);
  // The input projection of every time step in one GEMM; only h @ W_hh^T is sequential.
  Tensor xw = linear(x, w_ih, bias);  // [T, N, 4H]
  Tensor w_hh_t = transpose(w_hh, 0, 1);
  const int64_t steps = x.size(0);
  std::vector<Tensor> outs(static_cast<size_t>(steps));
  for (int64_t k = 0; k < steps; ++k) {
    int64_t t = reverse ? steps - 1 - k : k;
    Tensor gates = squeeze(slice(xw, 0, t, t + 1), {0}) + matmul(h, w_hh_t);
    std::vector<Tensor> g = split(gates, 4, 1);  // i, f, g, o
    c = sigmoid(g[1]) * c + sigmoid(g[0]) * tanh(g[2]);
    h = sigmoid(g[3]) * tanh(c);
    outs[static_cast<size_t>(t)] = h;
  }
  return stack(outs, 0);
}

LSTMResult LSTM::forward_with_state(const Tensor& x, const Tensor& h0, const Tensor& c0) {
  NDF_CHECK(x.rank() == 3 || x.rank() == 2, ShapeError, "[LSTM] input must be [T, N, ", input_size,
            "] (batch_first: [N, T, ", input_size, "]) or unbatched [T, ", input_size, "], got shape ",
            shape_str(x.shape()));
  NDF_CHECK(x.size(-1) == input_size || x.size(-1) == -1, ShapeError, "[LSTM] input has ", x.size(-1),
            " features but input_size is ", input_size, " (input shape ", shape_str(x.shape()), ")");
  const bool unbatched = x.rank() == 2;
  Tensor seq = unbatched ? unsqueeze(x, 1) : (options.batch_first ? transpose(x, 0, 1) : x);
  NDF_CHECK(seq.size(0) >= 1, ShapeError, "[LSTM] the sequence length must be known and >= 1, got shape ",
            shape_str(x.shape()));
  const int64_t dirs = options.bidirectional ? 2 : 1, layers = options.num_layers;
  const int64_t n = seq.size(1);
  const Shape state_shape{dirs * layers, n, hidden_size};
  auto initial = [&](const Tensor& given, const char* what) {
    if (!given.defined()) return zeros(state_shape, seq.dtype());
    Tensor s = unbatched && given.rank() == 2 ? unsqueeze(given, 1) : given;
    NDF_CHECK(s.rank() == 3 && s.size(0) == dirs * layers && s.size(2) == hidden_size, ShapeError, "[LSTM] ",
              what, " must have shape ", shape_str(state_shape), ", got ", shape_str(given.shape()));
    return s;
  };
  Tensor h_init = initial(h0, "h0"), c_init = initial(c0, "c0");

  std::vector<Tensor> hn, cn;
  Tensor input = seq;
  for (int64_t l = 0; l < layers; ++l) {
    std::vector<Tensor> outs;
    for (int64_t d = 0; d < dirs; ++d) {
      int64_t idx = l * dirs + d;
      Tensor h = squeeze(slice(h_init, 0, idx, idx + 1), {0});
      Tensor c = squeeze(slice(c_init, 0, idx, idx + 1), {0});
      outs.push_back(run_direction(input, l, d == 1, h, c));
      hn.push_back(h);
      cn.push_back(c);
    }
    input = dirs == 2 ? concat(outs, 2) : outs[0];
    if (options.dropout > 0 && l + 1 < layers) input = dropout(input, options.dropout, is_training());
  }
  LSTMResult r;
  r.output = unbatched ? squeeze(input, {1}) : (options.batch_first ? transpose(input, 0, 1) : input);
  r.h = stack(hn, 0);
  r.c = stack(cn, 0);
  if (unbatched) {
    r.h = squeeze(r.h, {1});
    r.c = squeeze(r.c, {1});
  }
  return r;
}

LSTMResult LSTM::operator()(const Tensor& x, const Tensor& h0, const Tensor& c0) {
  note_call();
  return forward_with_state(x, h0, c0);
}

Tensor LSTM::forward(const Tensor& x) { return forward_with_state(x).output; }

std::string LSTM::extra_repr() const {
  std::string s = str_cat(input_size, ", ", hidden_size);
  if (options.num_layers != 1) s += str_cat(", num_layers=", options.num_layers);
  if (!options.bias) s += ", bias=False";
  if (options.batch_first) s += ", batch_first=True";
  if (options.dropout > 0) s += str_cat(", dropout=", options.dropout);
  if (options.bidirectional) s += ", bidirectional=True";
  return s;
}

}  // namespace ndflow::nn
