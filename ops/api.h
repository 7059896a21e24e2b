// The C++ op API: one free function per op (primitive or composite), in
// namespace ndflow. Each call runs eagerly, or adds a node when a graph is
// being built. Axis arguments may be negative; an empty axis list means all axes.
#pragma once

#include <optional>
#include <vector>

#include "core/tensor.h"

namespace ndflow {

using Axes = std::vector<int64_t>;

// ------------------------------------------------------------------ creation
NDF_EXPORT Tensor zeros(const Shape& shape, DType dtype = DType::f32);
NDF_EXPORT Tensor ones(const Shape& shape, DType dtype = DType::f32);
NDF_EXPORT Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
NDF_EXPORT Tensor zeros_like(const Tensor& t);
NDF_EXPORT Tensor ones_like(const Tensor& t);
NDF_EXPORT Tensor full_like(const Tensor& t, double value);
// A 0-d tensor holding `value`.
NDF_EXPORT Tensor scalar(double value, DType dtype = DType::f32);
// [start, stop) with `step`; the count is ceil((stop - start) / step).
NDF_EXPORT Tensor arange(double start, double stop, double step = 1, DType dtype = DType::f32);
NDF_EXPORT Tensor arange(int64_t n, DType dtype = DType::i64);
NDF_EXPORT Tensor linspace(double start, double stop, int64_t num, DType dtype = DType::f32);
NDF_EXPORT Tensor eye(int64_t n, std::optional<int64_t> m = std::nullopt, DType dtype = DType::f32);
// A tensor copied from `values` with the given shape (row-major).
NDF_EXPORT Tensor tensor(const std::vector<float>& values, const Shape& shape);
NDF_EXPORT Tensor tensor(const std::vector<double>& values, const Shape& shape);
NDF_EXPORT Tensor tensor(const std::vector<int32_t>& values, const Shape& shape);
NDF_EXPORT Tensor tensor(const std::vector<int64_t>& values, const Shape& shape);
NDF_EXPORT Tensor tensor(const std::vector<uint8_t>& values, const Shape& shape);
NDF_EXPORT Tensor tensor(const std::vector<bool>& values, const Shape& shape);
// 1-d tensors.
NDF_EXPORT Tensor tensor(const std::vector<float>& values);
NDF_EXPORT Tensor tensor(const std::vector<double>& values);
NDF_EXPORT Tensor tensor(const std::vector<int64_t>& values);

// -------------------------------------------------------------------- random
// A seedable counter-based generator (Philox): the same seed gives the same
// numbers. Each draw advances the counter by the numbers it consumed.
//
// The state {seed, offset} lives in an i64[2] Variable. An eager draw reads
// and advances it on the host; a draw inside a graph takes it as an input that
// its kernel reads and advances, so a compiled step draws new numbers
// every run (a traced dropout gets a new mask each step) and eager and graph
// code continue one stream.
class NDF_EXPORT Generator {
 public:
  explicit Generator(uint64_t seed = 0);
  void manual_seed(uint64_t seed);
  uint64_t seed() const;
  uint64_t offset() const;
  // Reserves `n` counter values (rounded up to a Philox block) and returns the first.
  uint64_t advance(uint64_t n);
  const Tensor& state() const { return state_; }

 private:
  Tensor state_;
};
NDF_EXPORT Generator& default_generator();
NDF_EXPORT void manual_seed(uint64_t seed);  // seeds the default generator

NDF_EXPORT Tensor uniform(const Shape& shape, double low = 0, double high = 1,
                          DType dtype = DType::f32, Generator* gen = nullptr);
NDF_EXPORT Tensor normal(const Shape& shape, double mean = 0, double std = 1,
                         DType dtype = DType::f32, Generator* gen = nullptr);
NDF_EXPORT Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr);
NDF_EXPORT Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator* gen = nullptr);
// 1 with probability p, else 0.
NDF_EXPORT Tensor bernoulli(const Shape& shape, double p, DType dtype = DType::f32,
                            Generator* gen = nullptr);
// Integers uniform in [low, high).
NDF_EXPORT Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype = DType::i64,
                          Generator* gen = nullptr);

// -------------------------------------------------------- elementwise unary
NDF_EXPORT Tensor neg(const Tensor& x);
NDF_EXPORT Tensor abs(const Tensor& x);
NDF_EXPORT Tensor exp(const Tensor& x);
NDF_EXPORT Tensor log(const Tensor& x);
NDF_EXPORT Tensor log1p(const Tensor& x);
NDF_EXPORT Tensor sqrt(const Tensor& x);
NDF_EXPORT Tensor rsqrt(const Tensor& x);
NDF_EXPORT Tensor square(const Tensor& x);
NDF_EXPORT Tensor sin(const Tensor& x);
NDF_EXPORT Tensor cos(const Tensor& x);
NDF_EXPORT Tensor tanh(const Tensor& x);
NDF_EXPORT Tensor sigmoid(const Tensor& x);
NDF_EXPORT Tensor relu(const Tensor& x);
NDF_EXPORT Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
NDF_EXPORT Tensor gelu(const Tensor& x);  // exact: x * Phi(x)
NDF_EXPORT Tensor silu(const Tensor& x);  // x * sigmoid(x)
NDF_EXPORT Tensor softplus(const Tensor& x);  // log(1 + exp(x)), computed stably
NDF_EXPORT Tensor sign(const Tensor& x);
NDF_EXPORT Tensor floor(const Tensor& x);
NDF_EXPORT Tensor ceil(const Tensor& x);
NDF_EXPORT Tensor round(const Tensor& x);  // half to even, like NumPy
NDF_EXPORT Tensor logical_not(const Tensor& x);

// ------------------------------------------------------- elementwise binary
NDF_EXPORT Tensor add(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor sub(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor mul(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor div(const Tensor& a, const Tensor& b);  // true division (ints give f32)
NDF_EXPORT Tensor pow(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor maximum(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor minimum(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor eq(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor ne(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor lt(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor le(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor gt(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor ge(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor logical_and(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor logical_or(const Tensor& a, const Tensor& b);
// cond ? a : b, broadcasting all three; cond must be bool.
NDF_EXPORT Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi);

// Operators. A scalar operand takes the tensor's dtype when that is floating
// (as in PyTorch: `x_f32 * 2.0` stays f32).
NDF_EXPORT Tensor operator+(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator-(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator*(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator/(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator-(const Tensor& a);
NDF_EXPORT Tensor operator+(const Tensor& a, double b);
NDF_EXPORT Tensor operator-(const Tensor& a, double b);
NDF_EXPORT Tensor operator*(const Tensor& a, double b);
NDF_EXPORT Tensor operator/(const Tensor& a, double b);
NDF_EXPORT Tensor operator+(double a, const Tensor& b);
NDF_EXPORT Tensor operator-(double a, const Tensor& b);
NDF_EXPORT Tensor operator*(double a, const Tensor& b);
NDF_EXPORT Tensor operator/(double a, const Tensor& b);
NDF_EXPORT Tensor operator==(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator!=(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator<(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator<=(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator>(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator>=(const Tensor& a, const Tensor& b);
NDF_EXPORT Tensor operator>(const Tensor& a, double b);
NDF_EXPORT Tensor operator<(const Tensor& a, double b);
// The scalar as a 0-d tensor of the dtype a binary op with `like` should use.
NDF_EXPORT Tensor scalar_like(double value, const Tensor& like);

// ---------------------------------------------------------------- reductions
NDF_EXPORT Tensor sum(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
NDF_EXPORT Tensor mean(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
NDF_EXPORT Tensor prod(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
NDF_EXPORT Tensor max(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
NDF_EXPORT Tensor min(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
// Index of the first maximum along `axis` (flattened when nullopt), i64.
NDF_EXPORT Tensor argmax(const Tensor& x, std::optional<int64_t> axis = std::nullopt, bool keepdims = false);
NDF_EXPORT Tensor argmin(const Tensor& x, std::optional<int64_t> axis = std::nullopt, bool keepdims = false);
// Variance with `correction` (1 = unbiased, like torch.var's default).
NDF_EXPORT Tensor var(const Tensor& x, const Axes& axes = {}, bool keepdims = false, int64_t correction = 1);
NDF_EXPORT Tensor std(const Tensor& x, const Axes& axes = {}, bool keepdims = false, int64_t correction = 1);
NDF_EXPORT Tensor logsumexp(const Tensor& x, const Axes& axes = {}, bool keepdims = false);
// Sums `x` down to the shape of `like` (undoing a broadcast); used by gradients.
NDF_EXPORT Tensor sum_to_like(const Tensor& x, const Tensor& like);

// ------------------------------------------------------------ linear algebra
// NumPy matmul: 1-d operands are promoted and the added dim removed; batch
// dims broadcast.
NDF_EXPORT Tensor matmul(const Tensor& a, const Tensor& b);

// -------------------------------------------------------------- shape/array
NDF_EXPORT Tensor reshape(const Tensor& x, const Shape& shape);  // one dim may be -1
NDF_EXPORT Tensor transpose(const Tensor& x, int64_t a, int64_t b);
NDF_EXPORT Tensor permute(const Tensor& x, const Axes& axes);
NDF_EXPORT Tensor squeeze(const Tensor& x, const Axes& axes = {});  // {} = all size-1 axes
NDF_EXPORT Tensor unsqueeze(const Tensor& x, int64_t axis);
NDF_EXPORT Tensor expand(const Tensor& x, const Shape& shape);  // -1 keeps a dim
NDF_EXPORT Tensor broadcast_to(const Tensor& x, const Shape& shape);
// Broadcasts `x` to the shape of `like`; used by gradients.
NDF_EXPORT Tensor broadcast_like(const Tensor& x, const Tensor& like);
// Python-style slice along one axis (negative start/stop count from the end,
// clamped to the bounds; step > 0).
NDF_EXPORT Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step = 1);
NDF_EXPORT Tensor concat(const std::vector<Tensor>& xs, int64_t axis = 0);
NDF_EXPORT Tensor stack(const std::vector<Tensor>& xs, int64_t axis = 0);
// Splits into pieces of the given sizes (must sum to the axis length).
NDF_EXPORT std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t axis = 0);
// Splits into `sections` equal pieces (the axis length must divide).
NDF_EXPORT std::vector<Tensor> split(const Tensor& x, int64_t sections, int64_t axis = 0);
// out[..., i, ...] = x[..., index[i], ...] along `axis`; index is 1-d i32/i64.
NDF_EXPORT Tensor index_select(const Tensor& x, int64_t axis, const Tensor& index);
// torch.gather: out has index's shape; out[i][j] = x[index[i][j]][j] for axis 0, etc.
NDF_EXPORT Tensor gather(const Tensor& x, int64_t axis, const Tensor& index);
// torch.scatter_add: a copy of x with src[i][j] added at x[index[i][j]][j] (axis 0).
NDF_EXPORT Tensor scatter_add(const Tensor& x, int64_t axis, const Tensor& index, const Tensor& src);
// Pads with (before, after) per axis, from the first axis; mode "constant"
// (with `value`), "reflect" or "replicate".
NDF_EXPORT Tensor pad(const Tensor& x, const std::vector<std::pair<int64_t, int64_t>>& widths,
                      const std::string& mode = "constant", double value = 0);
NDF_EXPORT Tensor one_hot(const Tensor& labels, int64_t num_classes, DType dtype = DType::f32);
NDF_EXPORT Tensor cast(const Tensor& x, DType dtype);
NDF_EXPORT Tensor contiguous(const Tensor& x);
NDF_EXPORT Tensor flatten(const Tensor& x, int64_t start_axis = 0, int64_t end_axis = -1);

// ------------------------------------------------------------ graph & state
// y = x, sharing storage.
NDF_EXPORT Tensor identity(const Tensor& x);
// y = x with no gradient flowing back (detach that also works in graphs).
NDF_EXPORT Tensor stop_gradient(const Tensor& x);
// In-place updates of a Variable: var <- value, var <- var + value (value
// broadcasts and is cast to var's dtype). Eager: done now; in a graph: a node.
NDF_EXPORT void assign(const Tensor& var, const Tensor& value);
NDF_EXPORT void assign_add(const Tensor& var, const Tensor& value);

// -------------------------------------------------------------------- nn
NDF_EXPORT Tensor softmax(const Tensor& x, int64_t axis = -1);
NDF_EXPORT Tensor log_softmax(const Tensor& x, int64_t axis = -1);
enum class Reduction { Mean, Sum, None };
// logits [N, C] (or [N, C, d...]) with integer labels [N] ([N, d...]).
NDF_EXPORT Tensor cross_entropy(const Tensor& logits, const Tensor& labels,
                                Reduction reduction = Reduction::Mean);
NDF_EXPORT Tensor mse_loss(const Tensor& pred, const Tensor& target,
                           Reduction reduction = Reduction::Mean);
// Zeroes elements with probability p and scales the rest by 1/(1-p) when
// `training`; the identity otherwise.
NDF_EXPORT Tensor dropout(const Tensor& x, double p, bool training, Generator* gen = nullptr);

// ------------------------------------------------- convolution and pooling
// NCHW images, PyTorch semantics (ops/conv.cc). A Size2 is (height, width);
// one number means the same for both.
struct Size2 {
  int64_t h, w;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit on purpose, conv2d(x, w, b, 2, 1)
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_) {}
};
// x [N, C, H, W] cross-correlated with weight [O, C/groups, kh, kw], plus
// bias [O] when defined, then `activation` ("none" or "relu", fused into the
// kernel). Output [N, O, (H + 2*pad - dilation*(kh-1) - 1) / stride + 1, ...].
NDF_EXPORT Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                         Size2 stride = 1, Size2 padding = 0, Size2 dilation = 1,
                         int64_t groups = 1, const std::string& activation = "none");
// Pooling over kernel_size windows of each plane; stride defaults to
// kernel_size; padding must be at most half the kernel. ceil_mode rounds the
// output size up (a window must still start inside the input or left padding).
// dilation spaces the window's taps, as torch's.
NDF_EXPORT Tensor max_pool2d(const Tensor& x, Size2 kernel_size,
                             std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                             bool ceil_mode = false, Size2 dilation = 1);
// Where max_pool2d's maxima come from (i64, max_pool2d's output shape): the
// flat index h * W + w of each window's first maximum within its plane, as
// torch's return_indices gives it.
NDF_EXPORT Tensor max_pool2d_indices(const Tensor& x, Size2 kernel_size,
                                     std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                                     bool ceil_mode = false, Size2 dilation = 1);
// count_include_pad: padded positions count in the divisor (PyTorch's default).
// divisor_override > 0: every window's sum is divided by it instead.
NDF_EXPORT Tensor avg_pool2d(const Tensor& x, Size2 kernel_size,
                             std::optional<Size2> stride = std::nullopt, Size2 padding = 0,
                             bool ceil_mode = false, bool count_include_pad = true,
                             int64_t divisor_override = 0);

// ------------------------------------------- normalization and embedding
// PyTorch semantics (ops/norm.cc). Batch norm: x [N, C, *], statistics per
// channel over N and the trailing dims. training: normalizes with the batch
// mean and biased variance and, when running_mean/running_var (Variables,
// [C]) are given, updates them in place with `momentum` and the unbiased
// variance (a node in a graph, like an optimizer update); otherwise
// normalizes with the running statistics. weight/bias [C] may be undefined
// (affine = False).
NDF_EXPORT Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias,
                             const Tensor& running_mean, const Tensor& running_var, bool training,
                             double momentum = 0.1, double eps = 1e-5);
// running_mean <- (1 - momentum) running_mean + momentum mean, running_var
// likewise with var * n / (n - 1), n = values per channel of x_like (its
// shape only); what batch_norm runs after a training-mode forward.
NDF_EXPORT void batch_norm_update_stats(const Tensor& running_mean, const Tensor& running_var,
                                        const Tensor& mean, const Tensor& var, const Tensor& x_like,
                                        double momentum = 0.1);
// Normalizes over the trailing dims `normalized_shape`, then * weight + bias
// (that shape; either may be undefined).
NDF_EXPORT Tensor layer_norm(const Tensor& x, const std::vector<int64_t>& normalized_shape,
                             const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                             double eps = 1e-5);
// Rows of weight [V, D] at i32/i64 indices of any shape: [*indices.shape, D].
// Out-of-range indices raise IndexError. The row padding_idx (negative:
// counted from V) gets no gradient.
NDF_EXPORT Tensor embedding(const Tensor& weight, const Tensor& indices,
                            std::optional<int64_t> padding_idx = std::nullopt);
// The weight gradient of embedding: zeros [num_rows, D] with grad's rows
// added at `indices` (only looked-up rows are nonzero), none at padding_idx
// (-1: none).
NDF_EXPORT Tensor embedding_backward(const Tensor& grad, const Tensor& indices, int64_t num_rows,
                                     int64_t padding_idx = -1);

// --------------------------------------------------------- optimizer updates
// Fused in-place updates with torch.optim's semantics (ops/optim.cc). Each
// call rewrites `param` and its state ("slots") in one pass and returns
// nothing. The caller owns the state: every slot starts as zeros_like(param)
// (Adagrad's accum at its initial value), `step` as a 0-d i64 zero that the op
// increments before using it; `lr` is a 0-d f32/f64 tensor, so a scheduler
// changes it in place (lr.fill_(x)) without rebuilding a graph. param, grad
// and the slots share one dtype (f32 or f64) and shape — there is no type
// promotion; grad may be any view. Run updates under NoGradGuard when param
// requires grad (the call is refused otherwise):
//
//   Tensor m = zeros_like(w), v = zeros_like(w), step = zeros({}, DType::i64);
//   Tensor lr = scalar(1e-3);
//   { NoGradGuard no_grad; apply_adam(w, w.grad(), m, v, step, lr); }
struct SGDOptions {
  double weight_decay = 0;  // L2 penalty added to the gradient
};
// param -= lr * (grad + weight_decay * param).
NDF_EXPORT void apply_sgd(const Tensor& param, const Tensor& grad, const Tensor& lr,
                          const SGDOptions& o = {});

struct MomentumOptions {
  double momentum = 0.9;
  double dampening = 0;
  bool nesterov = false;  // needs momentum > 0 and dampening == 0
  double weight_decay = 0;
};
// torch.optim.SGD with momentum. `velocity` (the momentum buffer) is set to
// the gradient on the first step (step == 0), as PyTorch does, and is
// momentum * velocity + (1 - dampening) * grad afterwards.
NDF_EXPORT void apply_momentum(const Tensor& param, const Tensor& grad, const Tensor& velocity,
                               const Tensor& step, const Tensor& lr, const MomentumOptions& o = {});

struct AdagradOptions {
  double eps = 1e-10;
  double weight_decay = 0;
  double lr_decay = 0;  // lr / (1 + (step - 1) * lr_decay)
};
// torch.optim.Adagrad; `accum` starts at initial_accumulator_value (0 there by default).
NDF_EXPORT void apply_adagrad(const Tensor& param, const Tensor& grad, const Tensor& accum,
                              const Tensor& step, const Tensor& lr, const AdagradOptions& o = {});

struct RMSPropOptions {
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;    // > 0 needs momentum_buffer
  bool centered = false;  // true needs grad_avg
};
// torch.optim.RMSprop. The slots a setting does not use may be left undefined.
NDF_EXPORT void apply_rmsprop(const Tensor& param, const Tensor& grad, const Tensor& square_avg,
                              const Tensor& lr, const RMSPropOptions& o = {},
                              const Tensor& momentum_buffer = Tensor(),
                              const Tensor& grad_avg = Tensor());

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  bool decoupled_weight_decay = false;  // true: AdamW (param *= 1 - lr * weight_decay)
  bool amsgrad = false;                 // true needs max_v
};
// torch.optim.Adam / AdamW: m and v are the first and second moments, max_v
// their running maximum for amsgrad (may be left undefined otherwise); step
// is incremented before the bias correction 1 - beta^step.
NDF_EXPORT void apply_adam(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                           const Tensor& step, const Tensor& lr, const AdamOptions& o = {},
                           const Tensor& max_v = Tensor());

}  // namespace ndflow
