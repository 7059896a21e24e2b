// CPU kernels of the fused optimizer updates (ops/optim.cc). Each op reads
// lr and step once, then walks param, grad and the slots in one loop: one
// pass over memory instead of the five to ten an unfused update makes. The
// loop runs over an ElementwisePlan (kernels/cpu/loops.h), so contiguous
// operands — the usual case, state is allocated contiguous — collapse into one
// flat, vectorized loop, while strided views (a transposed grad, a sliced
// parameter) take a strided path without a copy. Formulas follow torch.optim's
// single-tensor implementations line by line.
//
// NOTE: GCC wraps every std::sqrt in a branch that sets errno for negative
// arguments unless the build passes -fno-math-errno; that branch keeps the
// Adagrad, RMSprop and Adam loops scalar (4-7x slower, measured on 4M
// elements). No pragma or attribute lifts it per file; it is a build flag.
#include <cmath>
#include <utility>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"

namespace ndflow::cpu {

namespace {

// An attribute, or the default the OpDef declares: the defaults live in one
// place (ops/optim.cc) even when a caller passes a partial Attrs.
template <typename T>
T attr(const KernelContext& c, std::string_view name) {
  if (c.attrs.has(name)) return c.attrs.get<T>(name);
  for (const auto& s : c.op.attr_specs())
    if (s.name == name && s.default_value) return Attrs{{s.name, *s.default_value}}.get<T>(name);
  fail<InternalError>("[", c.op.name(), "] attribute '", name, "' has no value and no default");
}

// Byte range [first, last] a non-empty view touches.
std::pair<const char*, const char*> extent(const Tensor& t) {
  const char* lo = static_cast<const char*>(t.raw_data());
  const char* hi = lo;
  int64_t esz = static_cast<int64_t>(dtype_size(t.dtype()));
  for (size_t d = 0; d < t.shape().size(); ++d) {
    int64_t span = (t.shape()[d] - 1) * t.strides()[d] * esz;
    (span < 0 ? lo : hi) += span;
  }
  return {lo, hi + esz - 1};
}

// The operands one update reads and writes, by input index, checked for
// layouts an in-place update cannot honour.
void check_layout(const KernelContext& c, std::initializer_list<int> operands) {
  const std::string& op = c.op.name();
  const auto& names = c.op.input_names();
  for (int i : operands) {
    if (i == 1) continue;  // grad is only read
    // NOTE: a broadcast (expanded) view maps many elements onto one; writing
    // each would apply the update several times to the same memory.
    const Tensor& t = c.input(static_cast<size_t>(i));
    for (size_t d = 0; d < t.shape().size(); ++d)
      NDF_CHECK(t.shape()[d] <= 1 || t.strides()[d] != 0, ValueError, "[", op, "] ", names[i],
                " (shape ", shape_str(t.shape()), ", strides ", shape_str(t.strides()),
                ") is a broadcast view; it cannot be updated in place, pass a tensor that owns its "
                "elements (e.g. .contiguous())");
  }
  // Overlapping operands would make the result depend on loop order and
  // thread timing (e.g. m and v passed as the same tensor).
  for (auto a = operands.begin(); a != operands.end(); ++a) {
    const Tensor& ta = c.input(static_cast<size_t>(*a));
    if (ta.numel() == 0) continue;
    auto ea = extent(ta);
    for (auto b = a + 1; b != operands.end(); ++b) {
      const Tensor& tb = c.input(static_cast<size_t>(*b));
      if (tb.numel() == 0) continue;
      auto eb = extent(tb);
      NDF_CHECK(ea.second < eb.first || eb.second < ea.first, ValueError, "[", op, "] ", names[*a],
                " and ", names[*b], " share memory (shape ", shape_str(ta.shape()),
                "); each needs its own buffer");
    }
  }
}

// The learning rate, checked the way torch.optim's constructors check it.
double read_lr(const KernelContext& c, size_t i) {
  double lr = c.input(i).item_double();
  NDF_CHECK(lr >= 0.0, ValueError, "[", c.op.name(), "] lr must be >= 0, got ", lr);
  return lr;
}

// Increments the step counter and returns its new value. Called only after
// every check has passed, so a refused call leaves the counter unchanged.
double bump_step(const Tensor& step) {
  if (step.dtype() == DType::i64) return static_cast<double>(++*step.data<int64_t>());
  return ++*step.data<double>();
}

// The contiguous run: e[k] is operand k's element. NOTE: ivdep is sound
// because check_layout refused overlapping operands; without it the compiler
// needs a runtime alias check per pointer pair and gives up on the
// five-operand updates (RMSprop centered with momentum, Adam with amsgrad).
template <typename T, typename F, typename... P>
void flat_run(int64_t n, const F& f, P*... ptr) {
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    T* e[] = {ptr + i...};
    f(e);
  }
}

// Calls f(e) for every element, where e[k] points at operand k's element.
// Operand 0 (param) defines the iteration shape; the others have its shape.
// NOTE: the update functions read each element into a local and store every
// written element exactly once, unconditionally: a conditional store (`if
// (decoupled) param *= keep`) keeps the compiler from vectorizing the loop.
template <typename T, size_t N, typename F>
void fused_update(const std::array<const Tensor*, N>& ops, int num_threads, F f) {
  auto plan = make_plan<static_cast<int>(N)>(ops);
  for_each_element(plan, num_threads, [&](char** p, const int64_t* s, int64_t n) {
    bool unit = true;
    for (size_t k = 0; k < N; ++k) unit &= s[k] == static_cast<int64_t>(sizeof(T));
    [&]<size_t... K>(std::index_sequence<K...>) {
      if (unit) {  // the flat loop the compiler vectorizes
        flat_run<T>(n, f, reinterpret_cast<T*>(p[K])...);
      } else {
        for (int64_t i = 0; i < n; ++i) {
          T* e[N] = {reinterpret_cast<T*>(p[K] + i * s[K])...};
          f(e);
        }
      }
    }(std::make_index_sequence<N>{});
  });
}

// ------------------------------------------------------------------- SGD

void apply_sgd(KernelContext& c) {
  check_layout(c, {0, 1});
  const double lr = read_lr(c, 2), wd = attr<double>(c, "weight_decay");
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    const T l = static_cast<T>(lr), w = static_cast<T>(wd);
    const bool decay = wd != 0;
    fused_update<T, 2>({&c.input(0), &c.input(1)}, c.num_threads, [=](T* const* e) {
      const T p = *e[0];
      const T g = decay ? *e[1] + w * p : *e[1];
      *e[0] = p - l * g;
    });
  });
}

// -------------------------------------------------------------- momentum

void apply_momentum(KernelContext& c) {
  check_layout(c, {0, 1, 2});
  const double lr = read_lr(c, 4);
  const double mu = attr<double>(c, "momentum"), damp = attr<double>(c, "dampening");
  const double wd = attr<double>(c, "weight_decay");
  const bool nesterov = attr<bool>(c, "nesterov");
  // The buffer is the plain gradient on the first step and whenever momentum
  // is 0 (torch.optim.SGD then keeps no buffer and ignores dampening).
  const bool plain = bump_step(c.input(3)) == 1.0 || mu == 0;
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    const T l = static_cast<T>(lr), m = static_cast<T>(mu), w = static_cast<T>(wd);
    const T take = static_cast<T>(1 - damp);
    const bool decay = wd != 0;
    fused_update<T, 3>({&c.input(0), &c.input(1), &c.input(2)}, c.num_threads, [=](T* const* e) {
      const T p = *e[0];
      const T g = decay ? *e[1] + w * p : *e[1];
      const T buf = plain ? g : m * *e[2] + take * g;
      *e[2] = buf;
      *e[0] = p - l * (nesterov ? g + m * buf : buf);
    });
  });
}

// --------------------------------------------------------------- Adagrad

void apply_adagrad(KernelContext& c) {
  check_layout(c, {0, 1, 2});
  const double lr = read_lr(c, 4);
  const double eps = attr<double>(c, "eps"), wd = attr<double>(c, "weight_decay");
  const double lr_decay = attr<double>(c, "lr_decay");
  const double step = bump_step(c.input(3));
  const double clr = lr / (1 + (step - 1) * lr_decay);
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    const T l = static_cast<T>(clr), ep = static_cast<T>(eps), w = static_cast<T>(wd);
    const bool decay = wd != 0;
    fused_update<T, 3>({&c.input(0), &c.input(1), &c.input(2)}, c.num_threads, [=](T* const* e) {
      const T p = *e[0];
      const T g = decay ? *e[1] + w * p : *e[1];
      const T acc = *e[2] + g * g;
      *e[2] = acc;
      *e[0] = p - l * (g / (std::sqrt(acc) + ep));
    });
  });
}

// --------------------------------------------------------------- RMSprop

// Operands: param, grad, square_avg, then momentum_buffer and grad_avg when used.
template <typename T, bool kMomentum, bool kCentered>
void rmsprop_loop(KernelContext& c, double lr) {
  constexpr size_t kBuf = 3, kAvg = 3 + kMomentum, N = 3 + kMomentum + kCentered;
  std::array<const Tensor*, N> ops;
  ops[0] = &c.input(0);
  ops[1] = &c.input(1);
  ops[2] = &c.input(2);
  if constexpr (kMomentum) ops[kBuf] = &c.input(3);
  if constexpr (kCentered) ops[kAvg] = &c.input(4);
  const T l = static_cast<T>(lr), a = static_cast<T>(attr<double>(c, "alpha"));
  const T one_minus_a = static_cast<T>(1 - attr<double>(c, "alpha"));
  const T ep = static_cast<T>(attr<double>(c, "eps")), mu = static_cast<T>(attr<double>(c, "momentum"));
  const double wd = attr<double>(c, "weight_decay");
  const T w = static_cast<T>(wd);
  const bool decay = wd != 0;
  fused_update<T, N>(ops, c.num_threads, [=](T* const* e) {
    const T p = *e[0];
    const T g = decay ? *e[1] + w * p : *e[1];
    const T sq = a * *e[2] + one_minus_a * g * g;
    *e[2] = sq;
    T avg;
    if constexpr (kCentered) {
      const T ga = *e[kAvg] + one_minus_a * (g - *e[kAvg]);  // lerp(ga, g, 1 - alpha)
      *e[kAvg] = ga;
      avg = std::sqrt(sq - ga * ga) + ep;
    } else {
      avg = std::sqrt(sq) + ep;
    }
    if constexpr (kMomentum) {
      const T buf = mu * *e[kBuf] + g / avg;
      *e[kBuf] = buf;
      *e[0] = p - l * buf;
    } else {
      *e[0] = p - l * (g / avg);
    }
  });
}

void apply_rmsprop(KernelContext& c) {
  const bool momentum = attr<double>(c, "momentum") > 0, centered = attr<bool>(c, "centered");
  if (momentum && centered) check_layout(c, {0, 1, 2, 3, 4});
  else if (momentum) check_layout(c, {0, 1, 2, 3});
  else if (centered) check_layout(c, {0, 1, 2, 4});
  else check_layout(c, {0, 1, 2});
  const double lr = read_lr(c, 5);
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    if (momentum && centered) rmsprop_loop<T, true, true>(c, lr);
    else if (momentum) rmsprop_loop<T, true, false>(c, lr);
    else if (centered) rmsprop_loop<T, false, true>(c, lr);
    else rmsprop_loop<T, false, false>(c, lr);
  });
}

// ------------------------------------------------------------------ Adam

// Operands: param, grad, m, v, then max_v with amsgrad.
template <typename T, bool kAmsgrad>
void adam_loop(KernelContext& c, double lr, double step) {
  constexpr size_t N = 4 + kAmsgrad;
  std::array<const Tensor*, N> ops;
  for (size_t k = 0; k < 4; ++k) ops[k] = &c.input(k);
  if constexpr (kAmsgrad) ops[4] = &c.input(4);
  const double b1 = attr<double>(c, "beta1"), b2 = attr<double>(c, "beta2");
  const double wd = attr<double>(c, "weight_decay");
  const bool decoupled = attr<bool>(c, "decoupled_weight_decay");
  // Scalars in double, as torch.optim computes them in Python floats.
  const double bias1 = 1 - std::pow(b1, step), bias2 = 1 - std::pow(b2, step);
  const T step_size = static_cast<T>(lr / bias1), bias2_sqrt = static_cast<T>(std::sqrt(bias2));
  const T one_minus_b1 = static_cast<T>(1 - b1), beta2 = static_cast<T>(b2);
  const T one_minus_b2 = static_cast<T>(1 - b2), ep = static_cast<T>(attr<double>(c, "eps"));
  const bool l2 = wd != 0 && !decoupled, shrink = wd != 0 && decoupled;
  const T w = static_cast<T>(wd), keep = static_cast<T>(1 - lr * wd);
  fused_update<T, N>(ops, c.num_threads, [=](T* const* e) {
    const T p = shrink ? *e[0] * keep : *e[0];  // AdamW: decay the weights, not the gradient
    const T g = l2 ? *e[1] + w * p : *e[1];
    const T m = *e[2] + one_minus_b1 * (g - *e[2]);  // lerp(m, g, 1 - beta1)
    const T v = beta2 * *e[3] + one_minus_b2 * g * g;
    *e[2] = m;
    *e[3] = v;
    T second = v;
    if constexpr (kAmsgrad) {
      second = !(v <= *e[4]) ? v : *e[4];  // torch.maximum: a NaN in v propagates
      *e[4] = second;
    }
    *e[0] = p - step_size * (m / (std::sqrt(second) / bias2_sqrt + ep));
  });
}

void apply_adam(KernelContext& c) {
  const bool amsgrad = attr<bool>(c, "amsgrad");
  if (amsgrad) check_layout(c, {0, 1, 2, 3, 4});
  else check_layout(c, {0, 1, 2, 3});
  const double lr = read_lr(c, 6);
  const double step = bump_step(c.input(5));
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    if (amsgrad) adam_loop<T, true>(c, lr, step);
    else adam_loop<T, false>(c, lr, step);
  });
}

}  // namespace

void register_optim_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> floats = {DType::f32, DType::f64};
  r.add("apply_sgd", CPU, floats, apply_sgd);
  r.add("apply_momentum", CPU, floats, apply_momentum);
  r.add("apply_adagrad", CPU, floats, apply_adagrad);
  r.add("apply_rmsprop", CPU, floats, apply_rmsprop);
  r.add("apply_adam", CPU, floats, apply_adam);
}

}  // namespace ndflow::cpu
