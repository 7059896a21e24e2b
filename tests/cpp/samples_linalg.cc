#include "op_samples.h"
namespace ndflow::testing {
SampleList linalg_samples() {
  return {OpSample{.op = "matmul", .inputs = {seq({2, 3}), seq({3, 2})}}};
}
}  // namespace ndflow::testing
