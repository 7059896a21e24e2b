#include "nn/norm.h"

#include <algorithm>

#include "core/error.h"
#include "core/op_registry.h"
#include "nn/init.h"
#include "runtime/eager.h"

namespace ndflow::nn {

namespace {

std::string shape_list(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

}  // namespace

// ---------------------------------------------------------------- BatchNorm

BatchNorm::BatchNorm(const char* name, std::vector<int64_t> ranks, int64_t n, const BatchNormOptions& o)
    : Module(name), num_features(n), options(o), ranks_(std::move(ranks)) {
  NDF_CHECK(n >= 1, ValueError, "[", name, "] num_features must be >= 1, got ", n);
  NDF_CHECK(!o.momentum || (*o.momentum >= 0 && *o.momentum <= 1), ValueError, "[", name,
            "] momentum must be in [0, 1] or nullopt, got ", o.momentum.value_or(0));
  if (o.affine) {
    weight = register_parameter("weight", ones({n}, o.dtype));
    bias = register_parameter("bias", zeros({n}, o.dtype));
  }
  if (o.track_running_stats) {
    running_mean = register_buffer("running_mean", zeros({n}, o.dtype));
    running_var = register_buffer("running_var", ones({n}, o.dtype));
    num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::i64));
  }
}

void BatchNorm::reset_running_stats() {
  if (!options.track_running_stats) return;
  init::zeros_(running_mean);
  init::ones_(running_var);
  init::zeros_(num_batches_tracked);
}

void BatchNorm::reset_parameters() {
  reset_running_stats();
  if (options.affine) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  NDF_CHECK(std::find(ranks_.begin(), ranks_.end(), x.rank()) != ranks_.end(), ShapeError, "[", type_name(),
            "] expected a ", ranks_.size() == 2 ? "2-d or 3-d" : "4-d", " input, got shape ", shape_str(x.shape()));
  NDF_CHECK(x.size(1) == num_features || x.size(1) == -1, ShapeError, "[", type_name(), "] expected ",
            num_features, " channels (dim 1), got input of shape ", shape_str(x.shape()));
  // As torch: batch statistics in training, or always without running statistics.
  const bool use_batch_stats = is_training() || !options.track_running_stats;
  const bool update = is_training() && options.track_running_stats;
  if (update) {
    NoGradGuard no_grad;
    assign_add(num_batches_tracked, ones({}, DType::i64));
  }
  if (update && !options.momentum) return cumulative(x);
  return batch_norm(x, weight, bias, running_mean, running_var, use_batch_stats, options.momentum.value_or(0.0),
                    options.eps);
}

// momentum = nullopt: the running statistics average all batches so far,
// with factor 1 / num_batches_tracked read from the Variable, so a compiled
// step never bakes it in.
Tensor BatchNorm::cumulative(const Tensor& x) {
  static const OpDef& op = op_def("batch_norm");
  std::vector<Tensor> inputs{x};
  if (options.affine) {
    inputs.push_back(weight);
    inputs.push_back(bias);
  }
  std::vector<Tensor> outs = call_op(op, inputs, Attrs{{"eps", options.eps}});
  int64_t n = 1;
  for (int64_t d = 0; d < x.rank(); ++d)
    if (d != 1) n *= x.size(d);
  NDF_CHECK(n > 1, ValueError, "[", type_name(), "] needs more than one value per channel in training, got input shape ",
            shape_str(x.shape()));
  NoGradGuard no_grad;
  const Tensor& rm = running_mean;
  const Tensor& rv = running_var;
  Tensor factor = ones({}, rm.dtype()) / cast(num_batches_tracked, rm.dtype());
  Tensor unbiased = cast(outs[2], rv.dtype()) * (static_cast<double>(n) / static_cast<double>(n - 1));
  assign(rm, rm + (cast(outs[1], rm.dtype()) - rm) * factor);
  assign(rv, rv + (unbiased - rv) * factor);
  return outs[0];
}

std::string BatchNorm::extra_repr() const {
  return str_cat(num_features, ", eps=", options.eps, ", momentum=",
                 options.momentum ? str_cat(*options.momentum) : std::string("None"),
                 ", affine=", options.affine ? "True" : "False",
                 ", track_running_stats=", options.track_running_stats ? "True" : "False");
}

// ---------------------------------------------------------------- LayerNorm

LayerNorm::LayerNorm(std::vector<int64_t> shape, double eps_, bool affine, bool with_bias, DType dtype)
    : Module("LayerNorm"), normalized_shape(std::move(shape)), eps(eps_) {
  NDF_CHECK(!normalized_shape.empty(), ValueError, "[LayerNorm] normalized_shape must not be empty");
  Shape s(normalized_shape);
  if (affine) {
    weight = register_parameter("weight", ones(s, dtype));
    if (with_bias) bias = register_parameter("bias", zeros(s, dtype));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, normalized_shape, weight, bias, eps); }

std::string LayerNorm::extra_repr() const {
  return str_cat(shape_list(normalized_shape), ", eps=", eps, ", elementwise_affine=",
                 weight.defined() ? "True" : "False");
}

// ---------------------------------------------------------------- Embedding

Embedding::Embedding(int64_t n, int64_t d, std::optional<int64_t> padding, DType dtype)
    : Module("Embedding"), num_embeddings(n), embedding_dim(d) {
  NDF_CHECK(n >= 1 && d >= 1, ValueError, "[Embedding] num_embeddings and embedding_dim must be >= 1, got ", n,
            " and ", d);
  if (padding) {
    NDF_CHECK(*padding >= -n && *padding < n, ValueError, "[Embedding] padding_idx ", *padding,
              " is out of range for ", n, " embeddings");
    padding_idx = *padding < 0 ? *padding + n : *padding;
  }
  weight = register_parameter("weight", zeros({n, d}, dtype));
  reset_parameters();
}

std::shared_ptr<Embedding> Embedding::from_pretrained(const Tensor& e, bool freeze, std::optional<int64_t> padding) {
  NDF_CHECK(e.defined() && !e.is_symbolic() && e.rank() == 2, ShapeError,
            "[Embedding] from_pretrained needs a concrete 2-d tensor [V, D]");
  auto m = std::make_shared<Embedding>(e.size(0), e.size(1), padding, e.dtype());
  NoGradGuard no_grad;
  m->weight.copy_(e);  // the given rows as they are, padding row included (as torch)
  m->weight.set_requires_grad(!freeze);
  return m;
}

void Embedding::zero_padding_row() {
  if (!padding_idx) return;
  Tensor row = weight.slice(0, *padding_idx, *padding_idx + 1);
  init::zeros_(row);
}

void Embedding::reset_parameters() {
  init::normal_(weight);
  zero_padding_row();
}

Tensor Embedding::forward(const Tensor& indices) {
  return embedding(weight, indices, padding_idx);
}

std::string Embedding::extra_repr() const {
  std::string s = str_cat(num_embeddings, ", ", embedding_dim);
  if (padding_idx) s += str_cat(", padding_idx=", *padding_idx);
  return s;
}

}  // namespace ndflow::nn
