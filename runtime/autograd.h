// Eager autograd: the tape and the backward engine. Every op call in grad
// mode with an input that requires grad records a TapeNode holding the op,
// its attributes, the tensors its gradient needs (as the OpDef declares) and
// edges to the nodes that produced its inputs. backward() walks the nodes in
// reverse dependency order, calling each op's own grad function.
//
//   Tensor w = ndflow::randn({3, 2}).set_requires_grad();
//   Tensor loss = ndflow::matmul(x, w).square().mean();
//   loss.backward();                  // w.grad() now holds d loss / d w
//   auto gs = ndflow::grad({loss}, {w});  // the same, without touching w.grad()
//
// Hooks let data-parallel training reduce gradients while backward still
// runs: a post-accumulate hook on a leaf fires as soon as that leaf's .grad()
// is final for the backward in progress.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/op_registry.h"

namespace ndflow {

struct SavedTensor {
  Tensor tensor;
  uint64_t version = 0;  // storage version at save time
};

struct TapeEdge {
  std::shared_ptr<TapeNode> fn;       // producer of the input, or
  std::shared_ptr<TensorImpl> leaf;   // the leaf to accumulate into
  int output_nr = 0;
  bool valid() const { return fn || leaf; }
};

struct TapeNode {
  const OpDef* op = nullptr;
  Attrs attrs;
  std::vector<SavedTensor> inputs;    // undefined where the OpDef does not save
  std::vector<SavedTensor> outputs;
  std::vector<TapeEdge> next;         // one per input
  std::vector<TensorMeta> output_meta;
  uint64_t seq = 0;                   // creation order
  bool released = false;              // saved tensors freed by a backward
};

// Records a call on the tape (called by the eager dispatcher).
void record_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
               std::span<Tensor> outputs);

// Backpropagates from `outputs` (gradients default to 1 for one-element
// outputs) and accumulates into the .grad() of the leaves reached.
NDF_EXPORT void backward(const std::vector<Tensor>& outputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false);

// Returns d(sum of outputs·grad_outputs)/d inputs without touching any
// .grad(). An input the outputs do not depend on gets an undefined tensor, or
// zeros when `zeros_for_unused` is set.
NDF_EXPORT std::vector<Tensor> grad(const std::vector<Tensor>& outputs,
                                    const std::vector<Tensor>& inputs,
                                    const std::vector<Tensor>& grad_outputs = {},
                                    bool retain_graph = false, bool zeros_for_unused = false);

// Called by backward() with the leaf once its .grad() holds every
// contribution of that backward (PyTorch's register_post_accumulate_grad_hook):
// once per backward that reaches the leaf, also when the leaf is used several
// times, after the last accumulation. Not called by grad(), which leaves
// .grad() alone. An exception thrown by a hook ends the backward and
// propagates to its caller (leaves reached earlier keep what they got).
using PostAccumulateGradHook = std::function<void(const Tensor& leaf)>;

// Registers `hook` on `leaf` (a tensor that requires grad and was not
// produced by a recorded op) and returns an id for remove_grad_hook. Hooks of
// one leaf run in registration order. The registry holds the leaf weakly: the
// hooks go away with it. While no hook is registered, backward() pays one
// atomic load for this feature.
NDF_EXPORT uint64_t register_post_accumulate_grad_hook(const Tensor& leaf,
                                                       PostAccumulateGradHook hook);
// Removes a hook; false when `id` is not registered (already removed). A hook
// removed during a backward is not called for the rest of it.
NDF_EXPORT bool remove_grad_hook(uint64_t id);

// Runs `fn` once when the backward() running on this thread has finished
// (after every gradient and hook), e.g. to wait for communication started by
// hooks (PyTorch's queue_callback). Throws ValueError outside a backward.
// Callbacks are dropped when the backward fails.
NDF_EXPORT void queue_backward_callback(std::function<void()> fn);
// Whether a backward() is running on this thread (a hook may be running).
NDF_EXPORT bool in_backward();

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 0;  // of the random projection of the outputs
};
// Compares the tape's gradients of f with central finite differences, in f64.
// Inputs that are not f64 are converted; those with requires_grad are checked.
// Returns normally on success; throws ValueError describing the first mismatch
// (input, element, analytic and numeric value).
NDF_EXPORT void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opt = {});

}  // namespace ndflow
