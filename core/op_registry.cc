#include "core/op_registry.h"

#include <algorithm>
#include <mutex>

namespace ndflow {

void register_all_ops(OpRegistry& r);                 // ops/register.cc
void register_all_kernels(KernelRegistry& r);         // kernels/register.cc

std::string_view attr_type_name(AttrType t) {
  switch (t) {
    case AttrType::Int: return "int";
    case AttrType::Float: return "float";
    case AttrType::Bool: return "bool";
    case AttrType::String: return "string";
    case AttrType::Ints: return "list of int";
    case AttrType::Floats: return "list of float";
    case AttrType::DType: return "dtype";
    case AttrType::Tensor: return "tensor";
  }
  return "?";
}

Attrs& Attrs::set(std::string name, AttrValue v) {
  for (auto& [k, val] : items_)
    if (k == name) {
      val = std::move(v);
      return *this;
    }
  items_.emplace_back(std::move(name), std::move(v));
  return *this;
}

const AttrValue* Attrs::find(std::string_view name) const {
  for (auto& [k, v] : items_)
    if (k == name) return &v;
  return nullptr;
}

const Tensor& GradContext::input(size_t i) const {
  NDF_CHECK(i < inputs_.size() && inputs_[i].defined(), InternalError, "[", op_.name(),
            "] gradient reads input ", i, " which the OpDef does not save");
  return inputs_[i];
}

const Tensor& GradContext::output(size_t i) const {
  NDF_CHECK(i < outputs_.size() && outputs_[i].defined(), InternalError, "[", op_.name(),
            "] gradient reads output ", i, " which the OpDef does not save");
  return outputs_[i];
}

OpDef& OpDef::variadic_input(std::string name, int min_count) {
  inputs_.push_back(std::move(name));
  variadic_min_ = min_count;
  return *this;
}

OpDef& OpDef::attr(std::string name, AttrType type, std::optional<AttrValue> default_value) {
  attrs_.push_back({std::move(name), type, std::move(default_value)});
  return *this;
}

OpDef& OpDef::promote_inputs(std::vector<int> which, bool to_float) {
  promote_ = true;
  promote_which_ = std::move(which);
  promote_to_float_ = to_float;
  return *this;
}

OpDef& OpDef::saves(std::vector<int> inputs, std::vector<int> outputs) {
  saves_set_ = true;
  saved_inputs_ = std::move(inputs);
  saved_outputs_ = std::move(outputs);
  return *this;
}

bool OpDef::saves_input(size_t i) const {
  if (!saves_set_) return true;
  if (is_variadic() && i + 1 >= inputs_.size())  // every repeat of the variadic input
    i = std::min(i, inputs_.size() - 1);
  return std::find(saved_inputs_.begin(), saved_inputs_.end(), static_cast<int>(i)) !=
         saved_inputs_.end();
}

bool OpDef::saves_output(size_t i) const {
  return std::find(saved_outputs_.begin(), saved_outputs_.end(), static_cast<int>(i)) !=
         saved_outputs_.end();
}

void OpDef::check_num_inputs(size_t n) const {
  if (is_variadic()) {
    size_t min = inputs_.size() - 1 + static_cast<size_t>(variadic_min_);
    NDF_CHECK(n >= min, ValueError, "[", name_, "] takes at least ", min, " inputs, got ", n);
  } else {
    NDF_CHECK(n == inputs_.size(), ValueError, "[", name_, "] takes ", inputs_.size(),
              " inputs, got ", n);
  }
}

static bool attr_matches(AttrType t, const AttrValue& v) {
  switch (t) {
    case AttrType::Int: return std::holds_alternative<int64_t>(v) || std::holds_alternative<bool>(v);
    case AttrType::Float: return std::holds_alternative<double>(v) || std::holds_alternative<int64_t>(v);
    case AttrType::Bool: return std::holds_alternative<bool>(v);
    case AttrType::String: return std::holds_alternative<std::string>(v);
    case AttrType::Ints: return std::holds_alternative<std::vector<int64_t>>(v);
    case AttrType::Floats: return std::holds_alternative<std::vector<double>>(v);
    case AttrType::DType: return std::holds_alternative<DType>(v);
    case AttrType::Tensor: return std::holds_alternative<Tensor>(v);
  }
  return false;
}

Attrs OpDef::complete_attrs(const Attrs& given) const {
  for (auto& [k, v] : given.items()) {
    // NOTE: clang 14 (the fuzzing compiler) cannot capture structured bindings.
    auto it = std::find_if(attrs_.begin(), attrs_.end(), [&key = k](auto& s) { return s.name == key; });
    if (it == attrs_.end()) {
      std::string valid;
      for (auto& s : attrs_) valid += (valid.empty() ? "" : ", ") + s.name;
      fail<ValueError>("[", name_, "] unknown attribute '", k, "' (valid: ",
                       valid.empty() ? "none" : valid, ")");
    }
    NDF_CHECK(attr_matches(it->type, v), TypeError, "[", name_, "] attribute '", k,
              "' must be of type ", attr_type_name(it->type));
  }
  Attrs out = given;
  for (auto& s : attrs_) {
    if (out.has(s.name)) continue;
    NDF_CHECK(s.default_value.has_value(), ValueError, "[", name_, "] required attribute '",
              s.name, "' (", attr_type_name(s.type), ") is missing");
    out.set(s.name, *s.default_value);
  }
  return out;
}

bool OpDef::promotes_input(size_t i) const {
  return promote_ && (promote_which_.empty() ||
                      std::find(promote_which_.begin(), promote_which_.end(), static_cast<int>(i)) !=
                          promote_which_.end());
}

DType OpDef::promoted_dtype(std::span<const TensorMeta> inputs) const {
  bool first = true;
  DType common = DType::f32;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!promotes_input(i)) continue;
    common = first ? inputs[i].dtype : promote_types(common, inputs[i].dtype);
    first = false;
  }
  if (promote_to_float_ && !is_floating(common)) common = DType::f32;
  return common;
}

std::vector<TensorMeta> OpDef::run_infer(std::span<const TensorMeta> inputs,
                                         const Attrs& attrs) const {
  NDF_CHECK(static_cast<bool>(infer_), InternalError, "[", name_, "] has no infer function");
  if (promote_) {  // infer sees the inputs as the kernel will: already promoted
    DType common = promoted_dtype(inputs);
    bool differs = false;
    for (size_t i = 0; i < inputs.size(); ++i)
      differs |= promotes_input(i) && inputs[i].dtype != common;
    if (differs) {
      std::vector<TensorMeta> promoted(inputs.begin(), inputs.end());
      for (size_t i = 0; i < promoted.size(); ++i)
        if (promotes_input(i)) promoted[i].dtype = common;
      return infer_(InferContext{*this, promoted, attrs});
    }
  }
  return infer_(InferContext{*this, inputs, attrs});
}

// ------------------------------------------------------------------ registry

OpRegistry& OpRegistry::global() {
  static OpRegistry* r = [] {
    auto* reg = new OpRegistry();  // leaked: used until the process exits
    register_all_ops(*reg);
    KernelRegistry kernels(*reg);
    register_all_kernels(kernels);
    return reg;
  }();
  return *r;
}

OpDef& OpRegistry::add(OpDef def) {
  NDF_CHECK(!by_name_.count(def.name()), InternalError, "op '", def.name(),
            "' is registered twice");
  ops_.push_back(std::make_unique<OpDef>(std::move(def)));
  OpDef* p = ops_.back().get();
  by_name_[p->name()] = p;
  return *p;
}

const OpDef* OpRegistry::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

OpDef* OpRegistry::find_mutable(std::string_view name) {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

const OpDef& OpRegistry::get(std::string_view name) const {
  if (const OpDef* d = find(name)) return *d;
  std::string close;
  for (auto& op : ops_)
    if (op->name().find(name) != std::string::npos || name.find(op->name()) != std::string::npos)
      close += (close.empty() ? "" : ", ") + op->name();
  fail<NotFoundError>("unknown op '", name, "'", close.empty() ? "" : "; did you mean: ", close);
}

std::vector<const OpDef*> OpRegistry::all() const {
  std::vector<const OpDef*> v;
  for (auto& op : ops_) v.push_back(op.get());
  return v;
}

void KernelRegistry::add(std::string_view op, DeviceType device, std::vector<DType> dtypes,
                         KernelFn fn) {
  OpDef* d = ops_.find_mutable(op);
  NDF_CHECK(d, InternalError, "kernel registered for unknown op '", op, "'");
  auto i = static_cast<int>(device);
  NDF_CHECK(!d->kernels_[i], InternalError, "two kernels for op '", op, "' on one device type");
  d->kernels_[i] = fn;
  d->kernel_dtypes_[i] = std::move(dtypes);
}

// ----------------------------------------------------------- infer helpers

InferFn same_as_input(size_t i) {
  return [i](const InferContext& c) { return std::vector<TensorMeta>{c.input(i)}; };
}

InferFn same_shape_with_dtype(size_t i, DType dtype) {
  return [i, dtype](const InferContext& c) {
    TensorMeta m = c.input(i);
    m.dtype = dtype;
    return std::vector<TensorMeta>{m};
  };
}

InferFn broadcast_inputs(std::optional<DType> out_dtype) {
  return [out_dtype](const InferContext& c) {
    TensorMeta m = c.input(0);
    for (size_t i = 1; i < c.inputs.size(); ++i)
      m.shape = broadcast_shapes(m.shape, c.input(i).shape, c.op.name());
    if (out_dtype) m.dtype = *out_dtype;
    return std::vector<TensorMeta>{m};
  };
}

}  // namespace ndflow
