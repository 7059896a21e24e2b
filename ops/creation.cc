// Creation ops: tensors made from attributes alone (full, arange, linspace,
// eye, constant) and full_like, which takes only the shape, dtype and device
// of its input. They are real OpDefs with kernels, so in graph mode each call
// adds a node like any other op; none of them has a gradient.
//
// tensor(values, shape) copies the host vector directly into a new eager
// tensor (no dispatch: it is a leaf with nothing to infer). In graph mode that
// eager copy becomes the Tensor attribute of a "constant" node, so the graph
// owns the values and can be exported, folded and placed like any node.
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using Metas = std::vector<TensorMeta>;

// Non-negative dims with a product that fits in int64.
void check_shape(std::span<const int64_t> shape, std::string_view op) {
  for (int64_t d : shape)
    NDF_CHECK(d >= 0, ValueError, "[", op, "] shape ", shape_str(shape),
              " has a negative dimension");
  int64_t n = 1;
  for (int64_t d : shape)
    NDF_CHECK(!__builtin_mul_overflow(n, d, &n), ValueError, "[", op, "] shape ", shape_str(shape),
              " has more elements than fit in int64");
}

// Whether `v` converts to the integer type T without overflow (the kernels
// truncate towards zero, as a C++ cast and NumPy do).
template <typename T>
bool fits(double v) {
  if (!std::isfinite(v)) return false;
  double t = std::trunc(v);
  // min is a power of two (or 0) and max + 1 one too, so both bounds are exact.
  return t >= static_cast<double>(std::numeric_limits<T>::min()) &&
         t < static_cast<double>(std::numeric_limits<T>::max()) + 1.0;
}

// Converting a value outside an integer type's range is undefined behaviour
// in C++, so every value headed for an integer tensor is checked here first.
void check_value(double v, DType dtype, std::string_view op, std::string_view what) {
  bool ok = true;
  switch (dtype) {
    case DType::i32: ok = fits<int32_t>(v); break;
    case DType::i64: ok = fits<int64_t>(v); break;
    case DType::u8: ok = fits<uint8_t>(v); break;
    default: break;  // floats take inf/NaN; bool is v != 0
  }
  NDF_CHECK(ok, ValueError, "[", op, "] ", what, " ", v, " does not fit in dtype ", dtype_name(dtype));
}

// The element count of arange, as NumPy computes it: ceil((stop - start) / step).
int64_t arange_count(double start, double stop, double step) {
  NDF_CHECK(std::isfinite(start) && std::isfinite(stop) && std::isfinite(step), ValueError,
            "[arange] start, stop and step must be finite, got start=", start, ", stop=", stop,
            ", step=", step);
  NDF_CHECK(step != 0, ValueError, "[arange] step must be nonzero (start=", start, ", stop=", stop, ")");
  double count = std::ceil((stop - start) / step);
  NDF_CHECK(count >= 0, ValueError, "[arange] the range from start=", start, " to stop=", stop,
            " has the wrong direction for step=", step, " (negative count ", count, ")");
  NDF_CHECK(std::isfinite(count) && count < 0x1p62, ValueError, "[arange] start=", start, ", stop=",
            stop, ", step=", step, " gives ", count, " elements, too many to allocate");
  return static_cast<int64_t>(count);
}

Metas infer_full(const InferContext& c) {
  auto shape = c.attrs.get<std::vector<int64_t>>("shape");
  DType dtype = c.attrs.get<DType>("dtype", DType::f32);
  check_shape(shape, "full");
  check_value(c.attrs.get<double>("value", 0.0), dtype, "full", "value");
  return Metas{{Shape(shape), dtype, Device::cpu()}};
}

Metas infer_full_like(const InferContext& c) {
  check_value(c.attrs.get<double>("value", 0.0), c.input(0).dtype, "full_like", "value");
  return Metas{c.input(0)};
}

Metas infer_arange(const InferContext& c) {
  double start = c.attrs.get<double>("start", 0.0), stop = c.attrs.get<double>("stop"),
         step = c.attrs.get<double>("step", 1.0);
  DType dtype = c.attrs.get<DType>("dtype", DType::f32);
  NDF_CHECK(dtype != DType::boolean, TypeError, "[arange] dtype bool is not supported; use a numeric dtype");
  int64_t n = arange_count(start, stop, step);
  if (n > 0) {
    check_value(start, dtype, "arange", "start");
    check_value(start + static_cast<double>(n - 1) * step, dtype, "arange", "last value");
  }
  return Metas{{Shape{n}, dtype, Device::cpu()}};
}

Metas infer_linspace(const InferContext& c) {
  double start = c.attrs.get<double>("start"), stop = c.attrs.get<double>("stop");
  int64_t num = c.attrs.get<int64_t>("num");
  DType dtype = c.attrs.get<DType>("dtype", DType::f32);
  NDF_CHECK(dtype != DType::boolean, TypeError, "[linspace] dtype bool is not supported; use a numeric dtype");
  NDF_CHECK(num >= 0, ValueError, "[linspace] num must be non-negative, got ", num);
  NDF_CHECK(std::isfinite(start) && std::isfinite(stop), ValueError,
            "[linspace] start and stop must be finite, got start=", start, ", stop=", stop);
  if (num > 0) {
    check_value(std::floor(start), dtype, "linspace", "start");
    check_value(std::floor(stop), dtype, "linspace", "stop");
  }
  return Metas{{Shape{num}, dtype, Device::cpu()}};
}

Metas infer_eye(const InferContext& c) {
  int64_t n = c.attrs.get<int64_t>("n"), m = c.attrs.get<int64_t>("m", -1);
  if (m == -1) m = n;
  NDF_CHECK(n >= 0 && m >= 0, ValueError, "[eye] n and m must be non-negative, got n=", n, ", m=", m);
  Shape shape{n, m};
  check_shape(shape, "eye");
  return Metas{{shape, c.attrs.get<DType>("dtype", DType::f32), Device::cpu()}};
}

Metas infer_constant(const InferContext& c) {
  Tensor v = c.attrs.get<Tensor>("value");
  NDF_CHECK(v.defined() && !v.is_symbolic(), ValueError,
            "[constant] the value attribute must be a tensor with data, not ",
            v.defined() ? "a symbolic tensor" : "an undefined tensor");
  return Metas{{v.shape(), v.dtype(), v.device()}};
}

const OpDef& full_op() {
  static const OpDef& op = op_def("full");
  return op;
}

Tensor full_like_impl(const Tensor& t, double value) {
  static const OpDef& op = op_def("full_like");
  return call_op1(op, {t}, Attrs{{"value", value}});
}

// The eager copy of a host vector, or a constant node wrapping it in a graph.
template <typename T>
Tensor from_host(const std::vector<T>& values, const Shape& shape) {
  check_shape(shape, "tensor");
  int64_t n = shape_numel(shape);
  NDF_CHECK(static_cast<uint64_t>(n) == values.size(), ShapeError, "[tensor] ", values.size(),
            " values do not fill shape ", shape_str(shape), ", which has ", n, " elements");
  Tensor t = Tensor::empty(shape, dtype_v<T>);
  T* p = static_cast<T*>(t.raw_data());
  if constexpr (std::is_same_v<T, bool>) {
    for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];  // vector<bool> is packed
  } else if (n > 0) {
    std::memcpy(p, values.data(), values.size() * sizeof(T));
  }
  if (current_graph_builder()) {
    static const OpDef& op = op_def("constant");
    return call_op1(op, std::span<const Tensor>{}, Attrs{{"value", t}});
  }
  return t;
}

}  // namespace

void register_creation_ops(OpRegistry& r) {
  r.add(OpDef("full").output("y")
            .doc("a tensor of `shape` and `dtype` filled with `value` (zeros, ones, scalar)")
            .attr("shape", AttrType::Ints)
            .attr("value", AttrType::Float, 0.0)
            .attr("dtype", AttrType::DType, DType::f32)
            .infer(infer_full));
  // NOTE: full_like reads only its input's metadata, yet takes it as an input:
  // in a graph the shape may be unknown (-1) until run time.
  r.add(OpDef("full_like").input("x").output("y")
            .doc("a tensor with x's shape, dtype and device, filled with `value`")
            .attr("value", AttrType::Float, 0.0)
            .infer(infer_full_like));
  r.add(OpDef("arange").output("y")
            .doc("start, start + step, ... up to (not including) stop; ceil((stop - start) / step) values")
            .attr("start", AttrType::Float, 0.0)
            .attr("stop", AttrType::Float)
            .attr("step", AttrType::Float, 1.0)
            .attr("dtype", AttrType::DType, DType::f32)
            .infer(infer_arange));
  r.add(OpDef("linspace").output("y")
            .doc("num evenly spaced values from start to stop inclusive (integers round towards -inf, as NumPy)")
            .attr("start", AttrType::Float)
            .attr("stop", AttrType::Float)
            .attr("num", AttrType::Int)
            .attr("dtype", AttrType::DType, DType::f32)
            .infer(infer_linspace));
  r.add(OpDef("eye").output("y")
            .doc("an n x m matrix with ones on the diagonal (m = -1 means m = n)")
            .attr("n", AttrType::Int)
            .attr("m", AttrType::Int, int64_t{-1})
            .attr("dtype", AttrType::DType, DType::f32)
            .infer(infer_eye));
  r.add(OpDef("constant").output("y")
            .doc("a copy of the tensor held in the `value` attribute")
            .attr("value", AttrType::Tensor)
            .infer(infer_constant));
}

// ------------------------------------------------------------------ the API

Tensor full(const Shape& shape, double value, DType dtype) {
  if (current_graph_builder())
    return call_op1(full_op(), std::span<const Tensor>{},
                    Attrs{{"shape", shape.vec()}, {"value", value}, {"dtype", dtype}});
  // scalar() and zeros() sit on autograd's hot path, so eagerly they skip the
  // generic dispatcher — there is nothing to promote, record or look up — and
  // run infer's checks and the registered kernel directly.
  check_shape(shape, "full");
  check_value(value, dtype, "full", "value");
  Tensor out = Tensor::empty(shape, dtype);
  thread_local Attrs attrs{{"value", 0.0}};
  attrs.set("value", value);  // reuses the entry: no allocation
  KernelFn kernel = full_op().kernel(DeviceType::CPU);
  NDF_CHECK(kernel, InternalError, "[full] has no CPU kernel");
  KernelContext ctx(full_op(), std::span<const Tensor>{}, std::span<Tensor>(&out, 1), attrs, get_num_threads());
  kernel(ctx);
  return out;
}
Tensor zeros(const Shape& shape, DType dtype) { return full(shape, 0.0, dtype); }
Tensor ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }
Tensor scalar(double value, DType dtype) { return full(Shape{}, value, dtype); }

Tensor full_like(const Tensor& t, double value) { return full_like_impl(t, value); }
Tensor zeros_like(const Tensor& t) { return full_like_impl(t, 0.0); }
Tensor ones_like(const Tensor& t) { return full_like_impl(t, 1.0); }

Tensor arange(double start, double stop, double step, DType dtype) {
  static const OpDef& op = op_def("arange");
  return call_op1(op, std::span<const Tensor>{},
                  Attrs{{"start", start}, {"stop", stop}, {"step", step}, {"dtype", dtype}});
}

Tensor arange(int64_t n, DType dtype) {
  NDF_CHECK(n >= 0, ValueError, "[arange] n must be non-negative, got ", n);
  NDF_CHECK(n <= (int64_t(1) << 53), ValueError, "[arange] n=", n,
            " is beyond 2^53, where the double-valued attributes lose integers");
  return arange(0.0, static_cast<double>(n), 1.0, dtype);
}

Tensor linspace(double start, double stop, int64_t num, DType dtype) {
  static const OpDef& op = op_def("linspace");
  return call_op1(op, std::span<const Tensor>{},
                  Attrs{{"start", start}, {"stop", stop}, {"num", num}, {"dtype", dtype}});
}

Tensor eye(int64_t n, std::optional<int64_t> m, DType dtype) {
  static const OpDef& op = op_def("eye");
  NDF_CHECK(!m || *m >= 0, ValueError, "[eye] m must be non-negative, got ", m.value_or(0));
  return call_op1(op, std::span<const Tensor>{},
                  Attrs{{"n", n}, {"m", m.value_or(n)}, {"dtype", dtype}});
}

Tensor tensor(const std::vector<float>& v, const Shape& s) { return from_host(v, s); }
Tensor tensor(const std::vector<double>& v, const Shape& s) { return from_host(v, s); }
Tensor tensor(const std::vector<int32_t>& v, const Shape& s) { return from_host(v, s); }
Tensor tensor(const std::vector<int64_t>& v, const Shape& s) { return from_host(v, s); }
Tensor tensor(const std::vector<uint8_t>& v, const Shape& s) { return from_host(v, s); }
Tensor tensor(const std::vector<bool>& v, const Shape& s) { return from_host(v, s); }
Tensor tensor(const std::vector<float>& v) { return from_host(v, Shape{static_cast<int64_t>(v.size())}); }
Tensor tensor(const std::vector<double>& v) { return from_host(v, Shape{static_cast<int64_t>(v.size())}); }
Tensor tensor(const std::vector<int64_t>& v) { return from_host(v, Shape{static_cast<int64_t>(v.size())}); }

}  // namespace ndflow
