#include "core/tensor.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "ops/api.h"
#include "runtime/autograd.h"
#include "runtime/eager.h"

namespace ndflow {

const TensorImpl& Tensor::checked() const {
  NDF_CHECK(impl_, ValueError, "operation on an undefined tensor (default-constructed Tensor)");
  return *impl_;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  int64_t n = shape_numel(shape);
  auto impl = std::make_shared<TensorImpl>();
  size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
  NDF_CHECK(n == 0 || bytes / static_cast<size_t>(n) == dtype_size(dtype), ValueError,
            "tensor of shape ", shape_str(shape), " is too large");
  impl->storage = Storage::allocate(bytes, device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  impl->device = device;
  return Tensor(std::move(impl));
}

Tensor Tensor::make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  const TensorImpl& b = base.checked();
  NDF_CHECK(b.storage, ValueError, "cannot make a view of a symbolic tensor eagerly");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = b.storage;
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = b.dtype;
  impl->device = b.device;
  return Tensor(std::move(impl));
}

Tensor Tensor::from_blob(void* data, const Shape& shape, const Strides& strides, DType dtype,
                         Device device, std::shared_ptr<void> owner) {
  NDF_CHECK(strides.size() == shape.size(), ShapeError, "from_blob: ", strides.size(),
            " strides for shape ", shape_str(shape));
  int64_t lo = 0, hi = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) { lo = hi = 0; break; }
    int64_t ext = (shape[d] - 1) * strides[d];
    (ext < 0 ? lo : hi) += ext;
  }
  NDF_CHECK(lo == 0, ValueError, "from_blob: negative strides are not supported");
  int64_t n = shape_numel(shape);
  size_t bytes = n == 0 ? 0 : static_cast<size_t>(hi + 1) * dtype_size(dtype);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = Storage::wrap(data, bytes, device, std::move(owner));
  impl->shape = shape;
  impl->strides = strides;
  impl->dtype = dtype;
  impl->device = device;
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t axis) const {
  return shape()[normalize_axis(axis, rank(), "size")];
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape()) n *= d;
  return n;
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked();
  int64_t expected = 1;
  for (size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  const TensorImpl& t = checked();
  NDF_CHECK(t.storage, ValueError, "a symbolic tensor has no data until its graph runs");
  return static_cast<char*>(t.storage->data()) + t.offset * static_cast<int64_t>(dtype_size(t.dtype));
}

static double load_as_double(const void* p, DType dt) {
  return dispatch_all(dt, "at", [&]<typename T>() { return static_cast<double>(*static_cast<const T*>(p)); });
}

double Tensor::at(std::span<const int64_t> index) const {
  const TensorImpl& t = checked();
  NDF_CHECK(index.size() == t.shape.size(), IndexError, "at: ", index.size(),
            " indices for a tensor of shape ", shape_str(t.shape));
  int64_t off = 0;
  for (size_t d = 0; d < index.size(); ++d) {
    int64_t i = index[d] < 0 ? index[d] + t.shape[d] : index[d];
    NDF_CHECK(i >= 0 && i < t.shape[d], IndexError, "at: index ", index[d], " is out of range for axis ",
              d, " of size ", t.shape[d], " (shape ", shape_str(t.shape), ")");
    off += i * t.strides[d];
  }
  auto* base = static_cast<const char*>(raw_data());
  return load_as_double(base + off * static_cast<int64_t>(dtype_size(t.dtype)), t.dtype);
}

double Tensor::item_double() const {
  NDF_CHECK(numel() == 1, ValueError, "item: the tensor has shape ", shape_str(shape()),
            " (", numel(), " elements); item() needs exactly one");
  std::vector<int64_t> zero(shape().size(), 0);
  return at(zero);
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = ndflow::contiguous(*this);
  std::vector<T> out(static_cast<size_t>(c.numel()));
  dispatch_all(c.dtype(), "to_vector", [&]<typename S>() {
    const S* p = static_cast<const S*>(c.raw_data());
    for (size_t i = 0; i < out.size(); ++i) {
      if constexpr (std::is_same_v<S, Half> || std::is_same_v<S, BFloat16>)
        out[i] = static_cast<T>(static_cast<float>(p[i]));
      else
        out[i] = static_cast<T>(p[i]);
    }
  });
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

std::string Tensor::str() const {
  std::ostringstream os;
  os << *this;
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "Tensor(undefined)";
  if (t.is_symbolic())
    return os << "Tensor(symbolic, shape=" << shape_str(t.shape()) << ", dtype=" << t.dtype() << ")";
  std::vector<double> v = t.to_vector<double>();
  const Shape& s = t.shape();
  bool integral = !is_floating(t.dtype());
  constexpr size_t kEdge = 3;  // elements shown at each end of a long axis
  os << "Tensor(";
  std::vector<int64_t> strides(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) strides[i - 1] = strides[i] * s[i];
  // Recursive printer of nested brackets, eliding the middle of long axes.
  auto print = [&](auto& self, size_t dim, int64_t base) -> void {
    if (dim == s.size()) {
      double x = v[static_cast<size_t>(base)];
      if (t.dtype() == DType::boolean) os << (x != 0 ? "true" : "false");
      else if (integral) os << static_cast<int64_t>(x);
      else os << std::setprecision(6) << x;
      return;
    }
    os << "[";
    int64_t n = s[dim];
    for (int64_t i = 0; i < n; ++i) {
      if (n > int64_t(2 * kEdge) && i == int64_t(kEdge)) {
        os << "..., ";
        i = n - kEdge;
      }
      self(self, dim + 1, base + i * strides[dim]);
      if (i + 1 < n) os << (dim + 1 == s.size() ? ", " : ",\n       ");
    }
    os << "]";
  };
  print(print, 0, 0);
  return os << ", shape=" << shape_str(s) << ", dtype=" << t.dtype() << ")";
}

// ------------------------------------------------------------ op forwarding

Tensor Tensor::contiguous() const { return ndflow::contiguous(*this); }
Tensor Tensor::clone() const {
  // The cast op always writes a fresh buffer, also to the same dtype (cast() the
  // API function returns its input unchanged in that case).
  static const OpDef& op = op_def("cast");
  return call_op1(op, {*this}, Attrs{{"dtype", dtype()}});
}
Tensor Tensor::to(DType dt) const { return ndflow::cast(*this, dt); }
Tensor Tensor::reshape(const Shape& s) const { return ndflow::reshape(*this, s); }
Tensor Tensor::transpose(int64_t a, int64_t b) const { return ndflow::transpose(*this, a, b); }
Tensor Tensor::permute(const std::vector<int64_t>& axes) const { return ndflow::permute(*this, axes); }
Tensor Tensor::t() const { return ndflow::transpose(*this, -2, -1); }
Tensor Tensor::squeeze(const std::vector<int64_t>& axes) const { return ndflow::squeeze(*this, axes); }
Tensor Tensor::unsqueeze(int64_t axis) const { return ndflow::unsqueeze(*this, axis); }
Tensor Tensor::expand(const Shape& s) const { return ndflow::expand(*this, s); }
Tensor Tensor::slice(int64_t axis, int64_t start, int64_t stop, int64_t step) const {
  return ndflow::slice(*this, axis, start, stop, step);
}
Tensor Tensor::sum(const std::vector<int64_t>& axes, bool keepdims) const {
  return ndflow::sum(*this, axes, keepdims);
}
Tensor Tensor::mean(const std::vector<int64_t>& axes, bool keepdims) const {
  return ndflow::mean(*this, axes, keepdims);
}

// --------------------------------------------------------- in-place updates

Tensor& Tensor::copy_(const Tensor& src) {
  static const OpDef& op = op_def("broadcast_to");
  Tensor s = src;
  call_op_into(op, std::span<const Tensor>(&s, 1), Attrs{{"shape", shape().vec()}}, *this);
  return *this;
}

Tensor& Tensor::fill_(double value) { return copy_(scalar(value, dtype())); }

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  static const OpDef& add_op = op_def("add");
  Tensor o = other;
  if (alpha != 1.0) {
    NoGradGuard ng;  // the scaled operand is a temporary, not part of any graph
    o = ndflow::mul(other, scalar_like(alpha, other));
  }
  Tensor ins[2] = {*this, o};
  call_op_into(add_op, ins, {}, *this);
  return *this;
}

Tensor& Tensor::mul_(const Tensor& other) {
  static const OpDef& mul_op = op_def("mul");
  Tensor ins[2] = {*this, other};
  call_op_into(mul_op, ins, {}, *this);
  return *this;
}

Tensor& Tensor::mul_(double s) { return mul_(scalar_like(s, *this)); }

// ------------------------------------------------------------------ autograd

Tensor& Tensor::set_requires_grad(bool r) {
  TensorImpl& t = const_cast<TensorImpl&>(checked());
  NDF_CHECK(!r || is_floating(t.dtype), TypeError, "requires_grad needs a floating-point tensor; "
            "this one is ", dtype_name(t.dtype));
  NDF_CHECK(r || !t.grad_fn, ValueError, "requires_grad cannot be turned off on a non-leaf "
            "tensor; use detach() instead");
  t.requires_grad = r;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(checked().grad); }

void Tensor::set_grad(const Tensor& g) {
  NDF_CHECK(!g.defined() || g.shape() == shape(), ShapeError, "set_grad: gradient shape ",
            shape_str(g.shape()), " differs from the tensor's ", shape_str(shape()));
  const_cast<TensorImpl&>(checked()).grad = g.impl_ptr();
}

void Tensor::zero_grad() { const_cast<TensorImpl&>(checked()).grad.reset(); }

Tensor Tensor::detach() const {
  const TensorImpl& s = checked();
  NDF_CHECK(s.storage, ValueError, "detach of a symbolic tensor: use stop_gradient in graphs");
  return make_view(*this, s.shape, s.strides, s.offset);
}

Tensor& Tensor::mark_variable(const std::string& name) {
  TensorImpl& t = const_cast<TensorImpl&>(checked());
  NDF_CHECK(t.storage, ValueError, "mark_variable: a symbolic tensor cannot be a Variable; create "
            "the Variable eagerly and use it inside the graph");
  t.is_variable = true;
  t.variable_name = name;
  return *this;
}

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  ndflow::backward({*this}, {grad_output}, retain_graph);
}

}  // namespace ndflow
