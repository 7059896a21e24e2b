#include "op_samples.h"
namespace ndflow::testing {
SampleList nn_samples() {
  return {OpSample{.op = "softmax", .inputs = {seq({2, 3})}}};
}
}  // namespace ndflow::testing
