#include "nn/module.h"

#include <algorithm>
#include <functional>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "nn/trace_internal.h"
#include "runtime/eager.h"

namespace ndflow::nn {

Tensor make_parameter(const Tensor& t, bool requires_grad) {
  NDF_CHECK(t.defined(), ValueError, "make_parameter: the tensor is undefined");
  NDF_CHECK(!t.is_symbolic(), ValueError,
            "make_parameter: a parameter needs a concrete tensor, not a symbolic one (create it "
            "outside the graph scope)");
  Tensor p = t.detach();
  p.mark_variable();
  p.set_requires_grad(requires_grad);
  return p;
}

Tensor make_buffer(const Tensor& t) {
  NDF_CHECK(t.defined(), ValueError, "make_buffer: the tensor is undefined");
  NDF_CHECK(!t.is_symbolic(), ValueError, "make_buffer: a buffer needs a concrete tensor, not a symbolic one");
  if (t.is_variable()) return t;
  Tensor b = t.detach();
  b.mark_variable();
  return b;
}

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Tensor Module::forward(const Tensor&) {
  fail<ValueError>("[", type_name_, "] has no one-tensor forward(); call it with its own signature");
}

Tensor Module::operator()(const Tensor& x) {
  note_call();
  return forward(x);
}

void Module::note_call() const {
  if (detail::current_trace()) detail::note_module(training_);
}

void Module::check_name(const std::string& name, const char* what) const {
  NDF_CHECK(!name.empty() && name.find('.') == std::string::npos, ValueError, "[", type_name_, "] ",
            what, " name '", name, "' must be non-empty and contain no '.'");
  auto taken = [&](const auto& v) {
    return std::any_of(v.begin(), v.end(), [&](const auto& e) {
      if constexpr (requires { e.name; }) return e.name == name;
      else return e.first == name;
    });
  };
  NDF_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), ValueError, "[", type_name_,
            "] the name '", name, "' is already used by a parameter, buffer or submodule");
}

Tensor Module::register_parameter(const std::string& name, const Tensor& t, bool requires_grad) {
  check_name(name, "parameter");
  NDF_CHECK(is_floating(t.dtype()), TypeError, "[", type_name_, "] parameter '", name,
            "' must be floating point, got ", dtype_name(t.dtype()));
  Tensor p = make_parameter(t, requires_grad);
  params_.push_back({name, p, true});
  return p;
}

Tensor Module::register_buffer(const std::string& name, const Tensor& t, bool persistent) {
  check_name(name, "buffer");
  Tensor b = make_buffer(t);
  buffers_.push_back({name, b, persistent});
  return b;
}

void Module::add_module(const std::string& name, std::shared_ptr<Module> m) {
  NDF_CHECK(m != nullptr, ValueError, "[", type_name_, "] add_module: submodule '", name, "' is null");
  NDF_CHECK(m.get() != this, ValueError, "[", type_name_, "] add_module: a module cannot contain itself");
  check_name(name, "submodule");
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, bool params, bool recurse, bool persistent_only,
                     NamedTensors& out, std::vector<const TensorImpl*>& seen) const {
  for (const Entry& e : params ? params_ : buffers_) {
    if (persistent_only && !e.persistent) continue;
    if (std::find(seen.begin(), seen.end(), e.tensor.impl()) != seen.end()) continue;  // shared (tied) tensor
    seen.push_back(e.tensor.impl());
    out.emplace_back(prefix.empty() ? e.name : prefix + "." + e.name, e.tensor);
  }
  if (!recurse) return;
  for (const auto& [name, m] : children_)
    m->collect(prefix.empty() ? name : prefix + "." + name, params, true, persistent_only, out, seen);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", true, recurse, false, out, seen);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  std::vector<const TensorImpl*> seen;
  collect("", false, recurse, false, out, seen);
  return out;
}

std::vector<Tensor> Module::buffers(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, b] : named_buffers(recurse)) out.push_back(b);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
  for (auto& [name, m] : children_)
    for (auto& sub : m->named_modules(prefix.empty() ? name : prefix + "." + name)) out.push_back(sub);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const {
  return children_;
}

Tensor Module::parameter(const std::string& name) const {
  for (const Entry& e : params_)
    if (e.name == name) return e.tensor;
  fail<NotFoundError>("[", type_name_, "] has no parameter '", name, "'");
}

Tensor Module::buffer(const std::string& name) const {
  for (const Entry& e : buffers_)
    if (e.name == name) return e.tensor;
  fail<NotFoundError>("[", type_name_, "] has no buffer '", name, "'");
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  for (const auto& [n, m] : children_)
    if (n == name) return m;
  fail<NotFoundError>("[", type_name_, "] has no submodule '", name, "'");
}

void Module::train(bool on) {
  *training_ = on;
  for (auto& [n, m] : children_) m->train(on);
}

void Module::zero_grad() {
  bool tracing = detail::current_trace() != nullptr;
  for (Tensor& p : parameters()) {
    if (tracing) detail::note_zeroed(p);  // the compiled step starts this gradient from zero
    p.zero_grad();
  }
}

StateDict Module::state_dict() const {
  // PyTorch's order: module by module, each one's parameters then its buffers.
  StateDict ordered;
  std::vector<const TensorImpl*> seen2;
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& pre) {
    NamedTensors local;
    m.collect(pre, true, false, false, local, seen2);
    m.collect(pre, false, false, true, local, seen2);
    for (auto& e : local) ordered.push_back(e);
    for (const auto& [name, c] : m.children_) walk(*c, pre.empty() ? name : pre + "." + name);
  };
  walk(*this, "");
  for (auto& [name, t] : ordered) t = t.detach();
  return ordered;
}

LoadResult Module::load_state_dict(const StateDict& sd, bool strict) {
  NDF_CHECK(current_graph_builder() == nullptr, ValueError,
            "load_state_dict: called inside a graph scope or trace; load outside it (the copy must run now)");
  StateDict own = state_dict();
  std::unordered_map<std::string, const Tensor*> given;
  for (const auto& [k, v] : sd) given[k] = &v;
  LoadResult r;
  std::unordered_map<std::string, bool> own_names;
  for (const auto& [k, v] : own) {
    own_names[k] = true;
    if (!given.count(k)) r.missing_keys.push_back(k);
  }
  for (const auto& [k, v] : sd)
    if (!own_names.count(k)) r.unexpected_keys.push_back(k);
  if (strict && (!r.missing_keys.empty() || !r.unexpected_keys.empty())) {
    std::ostringstream os;
    os << "load_state_dict: missing keys [";
    for (size_t i = 0; i < r.missing_keys.size(); ++i) os << (i ? ", " : "") << r.missing_keys[i];
    os << "], unexpected keys [";
    for (size_t i = 0; i < r.unexpected_keys.size(); ++i) os << (i ? ", " : "") << r.unexpected_keys[i];
    os << "]";
    throw NotFoundError(os.str());
  }
  std::vector<std::pair<Tensor, Tensor>> copies;
  for (const auto& [k, dst] : own) {
    auto it = given.find(k);
    if (it == given.end()) continue;
    const Tensor& src = *it->second;
    NDF_CHECK(src.defined(), ValueError, "load_state_dict: '", k, "' is undefined");
    NDF_CHECK(!src.is_symbolic(), ValueError, "load_state_dict: '", k,
              "' is a symbolic tensor; load concrete values outside graph scopes");
    NDF_CHECK(src.shape() == dst.shape(), ShapeError, "load_state_dict: '", k, "' has shape ",
              shape_str(src.shape()), " in the state dict but ", shape_str(dst.shape()), " in the model");
    copies.emplace_back(dst, src);
  }
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies)
    if (dst.impl()->storage != src.impl()->storage || dst.offset() != src.offset() ||
        dst.strides() != src.strides())  // not the Variable itself (a state_dict of this model)
      dst.copy_(src);                    // casts to dst's dtype
  return r;
}

std::string Module::repr() const {
  std::ostringstream os;
  os << type_name_ << "(" << extra_repr();
  if (children_.empty()) {
    os << ")";
    return os.str();
  }
  os << "\n";
  for (const auto& [name, m] : children_) {
    std::string body = m->repr();
    std::string indented;
    for (char c : body) {
      indented += c;
      if (c == '\n') indented += "  ";
    }
    os << "  (" << name << "): " << indented << "\n";
  }
  os << ")";
  return os.str();
}

}  // namespace ndflow::nn
