// Helpers shared by the two halves of the array family (ops/array.cc and
// ops/array_index.cc); not part of the public API.
#pragma once

#include <algorithm>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "core/op_registry.h"

namespace ndflow::array_detail {

using G = const GradContext&;
using Grads = std::vector<Tensor>;
using Metas = std::vector<TensorMeta>;
using Ints = std::vector<int64_t>;
constexpr int64_t kEnd = std::numeric_limits<int64_t>::max();

template <typename T>
T req(const Attrs& a, std::string_view op, std::string_view name) {
  NDF_CHECK(a.has(name), ValueError, "[", op, "] required attribute '", name, "' is missing");
  return a.get<T>(name);
}

inline bool all_known(std::span<const int64_t> s) {
  return std::all_of(s.begin(), s.end(), [](int64_t d) { return d >= 0; });
}

}  // namespace ndflow::array_detail
