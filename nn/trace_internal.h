// What nn::Function learns while it traces a step (private to nn/): the
// modules it ran, the optimizers it stepped and the parameters whose .grad a
// symbolic backward set. Module, Optimizer and nn::backward report here.
#pragma once

#include <memory>
#include <vector>

#include "core/tensor.h"

namespace ndflow::nn::detail {

struct TraceState {
  // (training flag, its value when traced)
  std::vector<std::pair<std::shared_ptr<const bool>, bool>> module_flags;
  // (hyperparameter version, its value when traced)
  std::vector<std::pair<std::shared_ptr<const uint64_t>, uint64_t>> optimizer_versions;
  // Parameters whose .grad the trace set, with the .grad they had before.
  std::vector<std::pair<Tensor, Tensor>> saved_grads;
  // Parameters whose gradient the step itself resets (zero_grad inside it).
  std::vector<const TensorImpl*> zeroed;
};

// The innermost trace on this thread, or null.
TraceState* current_trace();
void push_trace(TraceState* s);
void pop_trace();

void note_module(const std::shared_ptr<const bool>& training);
void note_optimizer(const std::shared_ptr<const uint64_t>& version);
void note_zeroed(const Tensor& param);

}  // namespace ndflow::nn::detail
