// OpDef: the one definition of an op (DESIGN.md §4) — name, inputs, outputs,
// typed attributes, shape/dtype inference, gradient, flags — and the kernel
// table that maps (op, device type) to a kernel. Ops are registered by the
// explicit register_<family>_ops functions listed in ops/register.cc; kernels
// by kernels/<device>/register.cc. Nothing registers itself at static-init time.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/tensor.h"

namespace ndflow {

// ---------------------------------------------------------------- attributes

using AttrValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>,
                               std::vector<double>, DType, Tensor>;
enum class AttrType : uint8_t { Int, Float, Bool, String, Ints, Floats, DType, Tensor };
NDF_EXPORT std::string_view attr_type_name(AttrType t);

// A small ordered list of named attribute values.
class NDF_EXPORT Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, AttrValue>> kv) : items_(kv) {}

  Attrs& set(std::string name, AttrValue v);
  bool has(std::string_view name) const { return find(name) != nullptr; }
  const AttrValue* find(std::string_view name) const;
  const std::vector<std::pair<std::string, AttrValue>>& items() const { return items_; }
  bool empty() const { return items_.empty(); }

  // Typed access; `get<double>` also accepts an int value.
  template <typename T>
  T get(std::string_view name) const {
    const AttrValue* v = find(name);
    NDF_CHECK(v, NotFoundError, "attribute '", name, "' is missing");
    return convert<T>(*v, name);
  }
  template <typename T>
  T get(std::string_view name, T fallback) const {
    const AttrValue* v = find(name);
    return v ? convert<T>(*v, name) : fallback;
  }

 private:
  template <typename T>
  static T convert(const AttrValue& v, std::string_view name) {
    if constexpr (std::is_same_v<T, double>) {
      if (auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
    }
    if constexpr (std::is_same_v<T, int64_t>) {
      if (auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
    }
    const T* p = std::get_if<T>(&v);
    NDF_CHECK(p, TypeError, "attribute '", name, "' has another type than requested");
    return *p;
  }
  std::vector<std::pair<std::string, AttrValue>> items_;
};

// ------------------------------------------------------------- infer / grad

// What inference sees of a tensor: shape (dims may be -1 in graph mode), dtype, device.
struct TensorMeta {
  Shape shape;
  DType dtype = DType::f32;
  Device device;
};

class OpDef;

struct InferContext {
  const OpDef& op;
  std::span<const TensorMeta> inputs;
  const Attrs& attrs;
  const TensorMeta& input(size_t i) const { return inputs[i]; }
};
using InferFn = std::function<std::vector<TensorMeta>(const InferContext&)>;

// Passed to an op's gradient function. The gradient is written with ops, so
// it runs eagerly on the tape and symbolically in a graph alike.
class NDF_EXPORT GradContext {
 public:
  GradContext(const OpDef& op, std::span<const Tensor> inputs, std::span<const Tensor> outputs,
              std::span<const Tensor> grad_outputs, const Attrs& attrs,
              std::span<const bool> needs_input_grad)
      : op_(op), inputs_(inputs), outputs_(outputs), grad_outputs_(grad_outputs), attrs_(attrs),
        needs_(needs_input_grad) {}

  const Tensor& input(size_t i) const;    // only inputs the OpDef saves
  const Tensor& output(size_t i) const;   // only outputs the OpDef saves
  const Tensor& grad_output(size_t i) const { return grad_outputs_[i]; }
  size_t num_inputs() const { return inputs_.size(); }
  const Attrs& attrs() const { return attrs_; }
  bool needs_input_grad(size_t i) const { return i < needs_.size() && needs_[i]; }
  const OpDef& op() const { return op_; }

 private:
  const OpDef& op_;
  std::span<const Tensor> inputs_, outputs_, grad_outputs_;
  const Attrs& attrs_;
  std::span<const bool> needs_;
};
// Returns one gradient per input; an undefined Tensor where there is none.
using GradFn = std::function<std::vector<Tensor>(const GradContext&)>;

// ------------------------------------------------------------------ kernels

// Completion handle of an asynchronous kernel (DESIGN.md §4: Recv,
// collectives). Copyable and cheap; call it exactly once, from any thread,
// once the outputs are written — with the error (e.g.
// std::make_exception_ptr(ValueError(...))) if the kernel failed.
class NDF_EXPORT AsyncDone {
 public:
  // Implemented by the caller that runs the kernel (the graph executor).
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual void complete(std::exception_ptr error) = 0;
  };
  AsyncDone() = default;
  explicit AsyncDone(std::shared_ptr<Sink> sink) : sink_(std::move(sink)) {}
  explicit operator bool() const { return sink_ != nullptr; }
  void operator()(std::exception_ptr error = nullptr) const {
    NDF_CHECK(sink_, InternalError, "AsyncDone called on an empty handle");
    sink_->complete(std::move(error));
  }

 private:
  std::shared_ptr<Sink> sink_;
};

class NDF_EXPORT KernelContext {
 public:
  KernelContext(const OpDef& op, std::span<const Tensor> inputs, std::span<Tensor> outputs,
                const Attrs& attrs, int num_threads)
      : op(op), inputs(inputs), outputs(outputs), attrs(attrs), num_threads(num_threads) {}

  const Tensor& input(size_t i) const { return inputs[i]; }
  Tensor& output(size_t i) const { return outputs[i]; }

  // Asynchronous kernels: call defer() before returning, keep the handle and
  // the Tensors you need (this context dies when the kernel returns), and
  // call the handle when done. The caller never blocks a thread waiting.
  // Only callers that set `async_host` (the graph executor) support this;
  // elsewhere defer() throws a ValueError naming the op.
  class AsyncHost {
   public:
    virtual AsyncDone begin_async() = 0;

   protected:
    ~AsyncHost() = default;
  };
  AsyncDone defer() {
    NDF_CHECK(async_host, ValueError, "[", op_name(), "] completes asynchronously; run it in a "
              "graph (Session), which can wait for it — eager dispatch cannot");
    NDF_CHECK(!deferred, InternalError, "[", op_name(), "] kernel called defer() twice");
    deferred = true;
    return async_host->begin_async();
  }

  const OpDef& op;
  std::span<const Tensor> inputs;
  std::span<Tensor> outputs;  // preallocated with the inferred metadata (views: set by the op)
  const Attrs& attrs;
  int num_threads;            // intra-op parallelism the kernel may use
  AsyncHost* async_host = nullptr;  // set by callers that support asynchronous kernels
  bool deferred = false;            // set by defer(): the kernel completes later

 private:
  const std::string& op_name() const;
};
using KernelFn = void (*)(KernelContext&);

// A view op computes its output's geometry from its input without touching
// data; it is device-independent, so it lives with the OpDef, not in kernels/.
using ViewFn = Tensor (*)(const Tensor& input, const Attrs& attrs);

// ------------------------------------------------------------------- OpDef

class NDF_EXPORT OpDef {
 public:
  explicit OpDef(std::string name) : name_(std::move(name)) {}

  // Builder methods, used only at registration.
  OpDef& input(std::string name) { inputs_.push_back(std::move(name)); return *this; }
  // The last input repeats: the op takes at least (declared inputs) - 1 + min_count tensors.
  OpDef& variadic_input(std::string name, int min_count = 1);
  OpDef& output(std::string name) { outputs_.push_back(std::move(name)); return *this; }
  OpDef& attr(std::string name, AttrType type, std::optional<AttrValue> default_value = std::nullopt);
  OpDef& doc(std::string d) { doc_ = std::move(d); return *this; }
  OpDef& infer(InferFn f) { infer_ = std::move(f); return *this; }
  OpDef& grad(GradFn f) { grad_ = std::move(f); return *this; }
  OpDef& view(ViewFn f) { view_ = f; return *this; }
  // Tensor inputs listed here are cast to their common promoted dtype before
  // the kernel runs (all inputs when the list is empty); `to_float` further
  // turns an integral/bool common type into f32 (e.g. true division).
  OpDef& promote_inputs(std::vector<int> which = {}, bool to_float = false);
  // Which inputs/outputs the gradient reads; the tape keeps only those alive.
  // By default all inputs and no outputs.
  OpDef& saves(std::vector<int> inputs, std::vector<int> outputs);
  OpDef& elementwise() { elementwise_ = true; return *this; }
  OpDef& commutative() { commutative_ = true; return *this; }
  OpDef& stateful() { stateful_ = true; return *this; }
  OpDef& side_effects() { side_effects_ = true; return *this; }
  // The kernel writes these inputs in place (optimizer updates, assign): the
  // dispatcher refuses inputs that require grad in grad mode, bumps their
  // version counters, and graph passes never fold, merge or reuse them.
  OpDef& mutates(std::vector<int> inputs) { mutated_ = std::move(inputs); side_effects_ = true; return *this; }

  // Queries.
  const std::string& name() const { return name_; }
  const std::string& doc() const { return doc_; }
  const std::vector<std::string>& input_names() const { return inputs_; }
  const std::vector<std::string>& output_names() const { return outputs_; }
  size_t num_outputs() const { return outputs_.size(); }
  bool is_variadic() const { return variadic_min_ >= 0; }
  // Throws ValueError naming the op if `n` inputs are not valid.
  void check_num_inputs(size_t n) const;
  struct AttrSpec {
    std::string name;
    AttrType type;
    std::optional<AttrValue> default_value;
  };
  const std::vector<AttrSpec>& attr_specs() const { return attrs_; }
  // Checks names and types of attrs against the schema and fills in defaults;
  // the error names the op, the attribute and the valid ones.
  Attrs complete_attrs(const Attrs& given) const;

  std::vector<TensorMeta> run_infer(std::span<const TensorMeta> inputs, const Attrs& attrs) const;
  bool differentiable() const { return static_cast<bool>(grad_); }
  const GradFn& grad_fn() const { return grad_; }
  ViewFn view_fn() const { return view_; }
  bool is_view() const { return view_ != nullptr; }
  bool promotes() const { return promote_; }
  bool promotes_input(size_t i) const;
  // The dtype promoted inputs are cast to, given all input dtypes (only
  // meaningful when promotes()).
  DType promoted_dtype(std::span<const TensorMeta> inputs) const;
  bool saves_input(size_t i) const;
  bool saves_output(size_t i) const;
  bool is_elementwise() const { return elementwise_; }
  bool is_commutative() const { return commutative_; }
  bool is_stateful() const { return stateful_; }
  bool has_side_effects() const { return side_effects_; }
  const std::vector<int>& mutated_inputs() const { return mutated_; }
  // Structural graph ops (placeholder, constant, variable): the executor
  // produces their outputs itself; they have no kernel and never run eagerly.
  OpDef& graph_only() { graph_only_ = true; return *this; }
  bool is_graph_only() const { return graph_only_; }
  // The kernel waits for a peer (send/recv, collectives): it completes
  // asynchronously, so it runs only in graphs, and its tests are graph tests
  // (multi-device and tests/dist) rather than per-op samples.
  OpDef& asynchronous() { asynchronous_ = true; return *this; }
  bool is_asynchronous() const { return asynchronous_; }

  // Kernel table, filled by KernelRegistry::add.
  KernelFn kernel(DeviceType d) const { return kernels_[static_cast<int>(d)]; }
  const std::vector<DType>& kernel_dtypes(DeviceType d) const { return kernel_dtypes_[static_cast<int>(d)]; }

 private:
  friend class KernelRegistry;
  std::string name_, doc_;
  std::vector<std::string> inputs_, outputs_;
  int variadic_min_ = -1;
  std::vector<AttrSpec> attrs_;
  InferFn infer_;
  GradFn grad_;
  ViewFn view_ = nullptr;
  bool promote_ = false, promote_to_float_ = false;
  std::vector<int> promote_which_;
  bool saves_set_ = false;
  std::vector<int> saved_inputs_, saved_outputs_;
  bool elementwise_ = false, commutative_ = false, stateful_ = false, side_effects_ = false;
  std::vector<int> mutated_;
  bool graph_only_ = false;
  bool asynchronous_ = false;
  KernelFn kernels_[kNumDeviceTypes] = {};
  std::vector<DType> kernel_dtypes_[kNumDeviceTypes];
};

inline const std::string& KernelContext::op_name() const { return op.name(); }

class NDF_EXPORT OpRegistry {
 public:
  // The registry with every op and kernel of this build; populated on first use.
  static OpRegistry& global();

  OpDef& add(OpDef def);  // InternalError on a duplicate name
  const OpDef& get(std::string_view name) const;  // NotFoundError naming close matches
  const OpDef* find(std::string_view name) const;
  OpDef* find_mutable(std::string_view name);
  std::vector<const OpDef*> all() const;

 private:
  std::vector<std::unique_ptr<OpDef>> ops_;
  std::unordered_map<std::string, OpDef*> by_name_;
};

// Registers kernels into the OpDefs of a registry.
class NDF_EXPORT KernelRegistry {
 public:
  explicit KernelRegistry(OpRegistry& ops) : ops_(ops) {}
  // `dtypes`: what the kernel accepts (checked by the dispatcher for a clear error).
  void add(std::string_view op, DeviceType device, std::vector<DType> dtypes, KernelFn fn);

 private:
  OpRegistry& ops_;
};

// Shorthand for the registry lookup.
inline const OpDef& op_def(std::string_view name) { return OpRegistry::global().get(name); }

// Common inference rules.
NDF_EXPORT InferFn same_as_input(size_t i);
NDF_EXPORT InferFn same_shape_with_dtype(size_t i, DType dtype);
// NumPy broadcasting of all inputs; dtype is that of input 0 (already promoted),
// or `out_dtype` when given.
NDF_EXPORT InferFn broadcast_inputs(std::optional<DType> out_dtype = std::nullopt);

}  // namespace ndflow
