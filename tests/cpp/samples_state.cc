// Samples of identity, stop_gradient and the in-place Variable updates
// (ops/state.cc). placeholder and variable are graph-only: see test_graph.cc.
#include "op_samples.h"

namespace ndflow::testing {

SampleList state_samples() {
  SampleList s;
  Tensor x = seq({2, 3});
  s.push_back({"identity", {x}, {}, {x}});
  s.push_back({"stop_gradient", {x}, {}, {x}});
  // assign/assign_add write into input 0 and have no outputs; test_graph.cc
  // checks the values they leave behind.
  s.push_back({"assign", {seq({2, 3}), seq({3}, 5.0)}, {}, {}});
  s.push_back({"assign_add", {seq({2, 3}), tensor(std::vector<int32_t>{1}, {1})}, {}, {}});
  return s;
}

}  // namespace ndflow::testing
