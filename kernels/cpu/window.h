// Sliding-window geometry shared by the convolution and pooling kernels
// (kernels/cpu/conv.cc, pool.cc).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/op_registry.h"
#include "kernels/cpu/parallel.h"

namespace ndflow::cpu {

using Ints = std::vector<int64_t>;

// Attributes as given to the op call: those left out take the OpDef's defaults.
inline Ints pair_attr(const Attrs& a, const char* name, int64_t fallback) {
  return a.get<Ints>(name, Ints{fallback, fallback});
}

// Output positions [lo, hi) of a spatial dim whose input position
// o*stride - pad + off lies inside [0, in).
struct Range {
  int64_t lo, hi;
};
inline Range valid_range(int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t off) {
  int64_t a = pad - off, b = in - 1 + pad - off;
  int64_t lo = a > 0 ? (a + stride - 1) / stride : 0;
  int64_t hi = b < 0 ? 0 : std::min(out, b / stride + 1);
  return {std::min(lo, hi), hi};
}

inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(work_per_item, 1));
}

}  // namespace ndflow::cpu
