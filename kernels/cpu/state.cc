// CPU kernels of the in-place Variable updates (ops/state.cc).
#include "core/op_registry.h"
#include "kernels/cpu/loops.h"

namespace ndflow::cpu {

namespace {

// var = f(var, value) elementwise, value broadcast and cast to var's dtype.
template <typename F>
void update(KernelContext& c, F f) {
  const Tensor& var = c.input(0);
  Tensor value = c.input(1);
  if (value.dtype() != var.dtype()) {
    static const OpDef& cast = op_def("cast");
    Tensor tmp = Tensor::empty(value.shape(), var.dtype(), var.device());
    Attrs a{{"dtype", var.dtype()}};
    KernelContext cc(cast, std::span<const Tensor>(&value, 1), std::span<Tensor>(&tmp, 1), a, c.num_threads);
    cast.kernel(DeviceType::CPU)(cc);
    value = tmp;
  }
  dispatch_numeric_bool(var.dtype(), c.op.name(), [&]<typename T>() {
    binary_loop<T, T>(var, var, value, c.num_threads, [&](T a, T b) { return f(a, b); });
  });
}

void assign(KernelContext& c) {
  update(c, [](auto, auto b) { return b; });
}

void assign_add(KernelContext& c) {
  update(c, [](auto a, auto b) -> decltype(a) {
    if constexpr (std::is_same_v<decltype(a), bool>) return a || b;
    else return static_cast<decltype(a)>(a + b);
  });
}

}  // namespace

void register_state_kernels(KernelRegistry& r) {
  const std::vector<DType> all = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8, DType::boolean};
  r.add("assign", DeviceType::CPU, all, assign);
  r.add("assign_add", DeviceType::CPU, all, assign_add);
}

}  // namespace ndflow::cpu
