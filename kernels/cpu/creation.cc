// CPU kernels of the creation ops (ops/creation.cc). Each writes its output
// through an element-index function, so strided outputs (an in-place fill of
// a view) take the same path as fresh contiguous ones. Values reaching an
// integer dtype were range-checked by the op's infer.
#include <algorithm>
#include <cmath>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"

namespace ndflow::cpu {

namespace {

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return T(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bool>)
    return v != 0.0;
  else
    return static_cast<T>(v);
}

// out[i] = f(i) for the row-major element index i.
template <typename T, typename F>
void fill_indexed(const Tensor& out, int num_threads, F f) {
  auto plan = make_plan<1>({&out});
  if (plan.numel == 0) return;
  parallel_for(plan.numel, kParallelGrain, num_threads, [&](int64_t begin, int64_t end) {
    int64_t i = begin;  // run_range visits [begin, end) in row-major order
    auto inner = [&](char** p, const int64_t* s, int64_t n) {
      if (s[0] == static_cast<int64_t>(sizeof(T))) {
        T* o = reinterpret_cast<T*>(p[0]);
        for (int64_t k = 0; k < n; ++k) o[k] = f(i + k);
      } else {
        for (int64_t k = 0; k < n; ++k) *reinterpret_cast<T*>(p[0] + k * s[0]) = f(i + k);
      }
      i += n;
    };
    run_range(plan, begin, end, inner);
  });
}

// full and full_like: one value everywhere.
void full(KernelContext& c) {
  const Tensor& out = c.output(0);
  double value = c.attrs.get<double>("value", 0.0);
  dispatch_all(out.dtype(), c.op.name(), [&]<typename T>() {
    const T v = from_double<T>(value);
    if (out.is_contiguous()) {
      T* p = static_cast<T*>(out.raw_data());
      parallel_for(out.numel(), kParallelGrain, c.num_threads,
                   [&](int64_t b, int64_t e) { std::fill(p + b, p + e, v); });
    } else {
      fill_indexed<T>(out, c.num_threads, [v](int64_t) { return v; });
    }
  });
}

// start + i * step in f64, then converted, as PyTorch computes it. NumPy
// instead steps by the rounded difference of its first two values, which
// drifts by a few ulps over long ranges; integers are exact either way.
void arange(KernelContext& c) {
  double start = c.attrs.get<double>("start", 0.0), step = c.attrs.get<double>("step", 1.0);
  dispatch_all(c.output(0).dtype(), "arange", [&]<typename T>() {
    fill_indexed<T>(c.output(0), c.num_threads,
                    [=](int64_t i) { return from_double<T>(start + static_cast<double>(i) * step); });
  });
}

// NumPy's formula: start + i * step with the last element exactly stop;
// integer dtypes round towards -inf (NumPy >= 2.0).
void linspace(KernelContext& c) {
  const Tensor& out = c.output(0);
  double start = c.attrs.get<double>("start"), stop = c.attrs.get<double>("stop");
  int64_t num = out.numel();
  double step = num > 1 ? (stop - start) / static_cast<double>(num - 1) : 0.0;
  bool integral = is_integral(out.dtype());
  dispatch_all(out.dtype(), "linspace", [&]<typename T>() {
    fill_indexed<T>(out, c.num_threads, [=](int64_t i) {
      double v = i == num - 1 && num > 1 ? stop : start + static_cast<double>(i) * step;
      return from_double<T>(integral ? std::floor(v) : v);
    });
  });
}

void eye(KernelContext& c) {
  const Tensor& out = c.output(0);
  int64_t m = out.shape()[1];
  dispatch_all(out.dtype(), "eye", [&]<typename T>() {
    const T one = from_double<T>(1.0), zero = from_double<T>(0.0);
    fill_indexed<T>(out, c.num_threads, [=](int64_t i) { return i / m == i % m ? one : zero; });
  });
}

void constant(KernelContext& c) {
  Tensor value = c.attrs.get<Tensor>("value");
  dispatch_all(value.dtype(), "constant", [&]<typename T>() {
    unary_loop<T, T>(c.output(0), value, c.num_threads, [](T x) { return x; });
  });
}

}  // namespace

void register_creation_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> all = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                  DType::i32, DType::i64, DType::u8,  DType::boolean};
  const std::vector<DType> numeric = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                      DType::i32, DType::i64, DType::u8};
  r.add("full", CPU, all, full);
  r.add("full_like", CPU, all, full);
  r.add("arange", CPU, numeric, arange);
  r.add("linspace", CPU, numeric, linspace);
  r.add("eye", CPU, all, eye);
  r.add("constant", CPU, all, constant);
}

}  // namespace ndflow::cpu
