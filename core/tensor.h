// Tensor: one cheap, reference-counted handle used by both modes (DESIGN.md §3).
// A tensor either holds data (storage, offset, shape, strides, dtype, device)
// or is symbolic: an output of a node in a Graph being built. Ops are called
// the same way on both. Views (reshape of contiguous data, transpose, slice,
// expand) share storage with their base.
//
//   Tensor x = ndflow::tensor({1.f, 2.f, 3.f, 4.f}, {2, 2});
//   Tensor y = (x * x).sum();          // eager: computed now
//   x.set_requires_grad(true); ...     // autograd: see runtime/autograd.h
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace ndflow {

struct GraphData;
struct TapeNode;
class Tensor;

// Graph-mode identity of a symbolic tensor: output `output` of node `node`.
// The graph is held weakly so that a symbolic tensor that outlives its graph
// is detected when used, instead of dangling.
struct SymbolicRef {
  std::weak_ptr<GraphData> graph;
  int64_t node = -1;
  int output = 0;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;  // null for symbolic tensors
  int64_t offset = 0;                // in elements
  Shape shape;
  Strides strides;                   // in elements
  DType dtype = DType::f32;
  Device device;

  // Autograd state (eager mode).
  bool requires_grad = false;
  std::shared_ptr<TapeNode> grad_fn;  // the op that produced this tensor, if recorded
  int output_nr = 0;                  // which output of grad_fn this is
  std::shared_ptr<TensorImpl> grad;   // accumulated gradient of a leaf

  std::unique_ptr<SymbolicRef> symbolic;  // set for graph-mode tensors

  // A Variable (parameter, buffer, optimizer slot, hyperparameter): graphs
  // capture it by reference rather than as a constant (DESIGN.md §5).
  bool is_variable = false;
  std::string variable_name;
};

class NDF_EXPORT Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A new contiguous tensor with uninitialized contents.
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // A view of `base`'s storage with the given geometry (no checks beyond bounds).
  static Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset);
  // A tensor over memory owned elsewhere (NumPy buffer, DLPack); no copy.
  static Tensor from_blob(void* data, const Shape& shape, const Strides& strides, DType dtype,
                          Device device, std::shared_ptr<void> owner);

  bool defined() const { return impl_ != nullptr; }
  bool is_symbolic() const { return impl_ && impl_->symbolic != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // --- metadata ---
  const Shape& shape() const { return checked().shape; }
  const Strides& strides() const { return checked().strides; }
  int64_t rank() const { return static_cast<int64_t>(checked().shape.size()); }
  int64_t dim() const { return rank(); }
  int64_t size(int64_t axis) const;  // negative axes allowed
  int64_t numel() const;
  DType dtype() const { return checked().dtype; }
  Device device() const { return checked().device; }
  int64_t offset() const { return checked().offset; }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }

  // --- data access (eager tensors only) ---
  void* raw_data() const;  // pointer to element 0 of this view
  template <typename T>
  T* data() const {
    NDF_CHECK(dtype() == dtype_v<T>, TypeError, "data<", dtype_name(dtype_v<T>),
              ">() called on a tensor of dtype ", dtype_name(dtype()));
    return static_cast<T*>(raw_data());
  }
  // Element at a multi-index (negative indices count from the end); for tests and debugging.
  double at(std::span<const int64_t> index) const;
  double at(std::initializer_list<int64_t> index) const { return at(std::span(index.begin(), index.size())); }
  // The value of a one-element tensor, converted to T.
  template <typename T>
  T item() const { return static_cast<T>(item_double()); }
  double item_double() const;
  // All elements in row-major order, converted to T.
  template <typename T>
  std::vector<T> to_vector() const;
  std::string str() const;  // printable form with shape and dtype

  // --- conversions and views (all are ops; see ops/) ---
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor reshape(const Shape& shape) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor permute(const std::vector<int64_t>& axes) const;
  Tensor t() const;  // transpose of the last two axes
  Tensor squeeze(const std::vector<int64_t>& axes = {}) const;
  Tensor unsqueeze(int64_t axis) const;
  Tensor expand(const Shape& shape) const;
  Tensor slice(int64_t axis, int64_t start, int64_t stop, int64_t step = 1) const;
  Tensor sum(const std::vector<int64_t>& axes = {}, bool keepdims = false) const;
  Tensor mean(const std::vector<int64_t>& axes = {}, bool keepdims = false) const;

  // --- in-place updates (bump the version counter) ---
  Tensor& copy_(const Tensor& src);  // broadcasts src to this tensor's shape
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& add_(const Tensor& other, double alpha = 1.0);  // this += alpha * other
  Tensor& sub_(const Tensor& other) { return add_(other, -1.0); }
  Tensor& mul_(const Tensor& other);
  Tensor& mul_(double s);

  // --- autograd (see runtime/autograd.h) ---
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  Tensor& set_requires_grad(bool r = true);
  bool is_leaf() const { return !impl_ || impl_->grad_fn == nullptr; }
  Tensor grad() const;  // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g);
  void zero_grad();     // drops the accumulated gradient
  Tensor detach() const;  // shares storage, no autograd history
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;

  // --- variables (see DESIGN.md §5 "Tracing and state") ---
  // Marks this eager tensor as a Variable: graphs built or traced with it read
  // and update this very buffer instead of baking in a constant copy.
  Tensor& mark_variable(const std::string& name = "");
  bool is_variable() const { return impl_ && impl_->is_variable; }

 private:
  const TensorImpl& checked() const;
  std::shared_ptr<TensorImpl> impl_;
};

NDF_EXPORT std::ostream& operator<<(std::ostream& os, const Tensor& t);

extern template std::vector<float> Tensor::to_vector<float>() const;
extern template std::vector<double> Tensor::to_vector<double>() const;
extern template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
extern template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
extern template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
extern template std::vector<bool> Tensor::to_vector<bool>() const;

}  // namespace ndflow
