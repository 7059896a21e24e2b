// The one list of op families. Adding a family: write ops/<family>.cc with a
// register_<family>_ops function and add it here.
#include "core/op_registry.h"

namespace ndflow {

void register_math_ops(OpRegistry& r);
void register_reduce_ops(OpRegistry& r);
void register_linalg_ops(OpRegistry& r);
void register_array_ops(OpRegistry& r);
void register_creation_ops(OpRegistry& r);
void register_random_ops(OpRegistry& r);
void register_nn_ops(OpRegistry& r);
void register_conv_ops(OpRegistry& r);
void register_norm_ops(OpRegistry& r);
void register_state_ops(OpRegistry& r);
void register_optim_ops(OpRegistry& r);
void register_fused_ops(OpRegistry& r);
void register_transfer_ops(OpRegistry& r);
void register_collective_ops(OpRegistry& r);

void register_all_ops(OpRegistry& r) {
  register_math_ops(r);
  register_reduce_ops(r);
  register_linalg_ops(r);
  register_array_ops(r);
  register_creation_ops(r);
  register_random_ops(r);
  register_nn_ops(r);
  register_conv_ops(r);
  register_norm_ops(r);
  register_state_ops(r);
  register_optim_ops(r);
  register_fused_ops(r);
  register_transfer_ops(r);
  register_collective_ops(r);
}

}  // namespace ndflow
