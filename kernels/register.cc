// The one table of kernel families per device. Adding a CPU family: write
// kernels/cpu/<family>.cc with a register_<family>_kernels function and add it here.
#include "core/op_registry.h"

namespace ndflow {
namespace cpu {
void register_math_kernels(KernelRegistry& r);
void register_reduce_kernels(KernelRegistry& r);
void register_linalg_kernels(KernelRegistry& r);
void register_array_kernels(KernelRegistry& r);
void register_creation_kernels(KernelRegistry& r);
void register_random_kernels(KernelRegistry& r);
void register_nn_kernels(KernelRegistry& r);
void register_conv_kernels(KernelRegistry& r);
void register_pool_kernels(KernelRegistry& r);
void register_norm_kernels(KernelRegistry& r);
void register_state_kernels(KernelRegistry& r);
void register_optim_kernels(KernelRegistry& r);
void register_fused_kernels(KernelRegistry& r);
void register_transfer_kernels(KernelRegistry& r);
void register_collective_kernels(KernelRegistry& r);
}  // namespace cpu

void register_all_kernels(KernelRegistry& r) {
  cpu::register_math_kernels(r);
  cpu::register_reduce_kernels(r);
  cpu::register_linalg_kernels(r);
  cpu::register_array_kernels(r);
  cpu::register_creation_kernels(r);
  cpu::register_random_kernels(r);
  cpu::register_nn_kernels(r);
  cpu::register_conv_kernels(r);
  cpu::register_pool_kernels(r);
  cpu::register_norm_kernels(r);
  cpu::register_state_kernels(r);
  cpu::register_optim_kernels(r);
  cpu::register_fused_kernels(r);
  cpu::register_transfer_kernels(r);
  cpu::register_collective_kernels(r);
}

}  // namespace ndflow
