// nn::Module: the base of layers and models, as torch.nn.Module — named
// parameters, buffers and submodules, train()/eval(), zero_grad() and state
// dicts. Parameters and buffers are Variables (DESIGN.md §5), so a compiled
// step (nn/function.h) reads and updates the very tensors a Module holds.
//
//   struct Net : nn::Module {
//     std::shared_ptr<nn::Linear> fc = register_module("fc", std::make_shared<nn::Linear>(4, 2));
//     Tensor forward(const Tensor& x) override { return (*fc)(x); }
//   };
//   Net net;
//   auto sd = net.state_dict();     // name -> the parameter itself
//   net.load_state_dict(sd);        // copies into the existing Variables
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace ndflow::nn {

// Ordered name -> tensor pairs (a state dict; PyTorch's names, e.g. "0.weight").
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StateDict = NamedTensors;

// A trainable Variable sharing `t`'s memory (nn.Parameter).
NDF_EXPORT Tensor make_parameter(const Tensor& t, bool requires_grad = true);
// A non-trainable Variable sharing `t`'s memory (batch-norm statistics, ...).
NDF_EXPORT Tensor make_buffer(const Tensor& t);

struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

class NDF_EXPORT Module {
 public:
  explicit Module(std::string type_name = "Module");
  virtual ~Module() = default;
  // Parameters are shared handles: a copy would alias them. Use clone-by-state-dict instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The computation. Modules with other signatures (nn::LSTM) add their own
  // call operator; this one-tensor form is what Sequential chains.
  virtual Tensor forward(const Tensor& x);
  // Calls forward(); inside a compiled function it also records this module's
  // training flag, so a later train()/eval() makes the function retrace.
  Tensor operator()(const Tensor& x);

  // ---- registration (returns the stored handle; keep it as a member)
  Tensor register_parameter(const std::string& name, const Tensor& t, bool requires_grad = true);
  Tensor register_buffer(const std::string& name, const Tensor& t, bool persistent = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_module(name, m);
    return m;
  }
  void add_module(const std::string& name, std::shared_ptr<Module> m);

  // ---- traversal (recursive, PyTorch's dotted names; shared tensors once)
  NamedTensors named_parameters(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  // The parameter, buffer or child with this (undotted) name; NotFoundError if absent.
  Tensor parameter(const std::string& name) const;
  Tensor buffer(const std::string& name) const;
  std::shared_ptr<Module> child(const std::string& name) const;

  // ---- modes
  void train(bool on = true);  // this module and all below it
  void eval() { train(false); }
  bool is_training() const { return *training_; }
  // Shared with compiled functions, which retrace when it changes.
  std::shared_ptr<const bool> training_flag() const { return training_; }
  void zero_grad();  // drops every parameter's gradient

  // ---- state dicts: parameters and persistent buffers, by dotted name
  StateDict state_dict() const;
  // Copies values into the existing Variables (never rebinds them). Every
  // entry is checked (shape, no symbolic tensors) before any is written;
  // with `strict`, missing or unexpected keys are an error.
  LoadResult load_state_dict(const StateDict& sd, bool strict = true);

  const std::string& type_name() const { return type_name_; }
  virtual std::string extra_repr() const { return ""; }
  std::string repr() const;  // PyTorch-style tree

 protected:
  // Records the call in an active trace (for modules with their own call operator).
  void note_call() const;

 private:
  struct Entry {
    std::string name;
    Tensor tensor;
    bool persistent = true;
  };
  void collect(const std::string& prefix, bool params, bool recurse, bool persistent_only,
               NamedTensors& out, std::vector<const TensorImpl*>& seen) const;
  void check_name(const std::string& name, const char* what) const;

  std::string type_name_;
  std::shared_ptr<bool> training_ = std::make_shared<bool>(true);
  std::vector<Entry> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace ndflow::nn
