// A model shared by the C++ nn API tests (test_nn_api.cc, test_nn_optim.cc).
#pragma once

#include <memory>

#include <ndflow/ndflow.h>

namespace ndflow::testing {

// Linear(12, 16) - ReLU - Linear(16, 3).
inline std::shared_ptr<nn::Sequential> make_mlp(DType dt = DType::f32) {
  return std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(12, 16, true, dt),
                                          std::make_shared<nn::ReLU>(),
                                          std::make_shared<nn::Linear>(16, 3, true, dt));
}

}  // namespace ndflow::testing
