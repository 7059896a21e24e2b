// Samples of the shape/array ops (ops/array.cc) for the generic op tests.
#include "op_samples.h"

namespace ndflow::testing {

SampleList array_samples() {
  SampleList s;
  s.push_back({"reshape", {seq({2, 3})}, Attrs{{"shape", std::vector<int64_t>{3, -1}}},
               {seq({3, 2})}});
  return s;
}

}  // namespace ndflow::testing
