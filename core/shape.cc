#include "core/shape.h"

#include <limits>

namespace ndflow {

int64_t shape_numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    NDF_CHECK(d >= 0, ValueError, "negative dimension in shape ", shape_str(shape));
    NDF_CHECK(!__builtin_mul_overflow(n, d, &n), ValueError, "shape ", shape_str(shape),
              " has more elements than fit in int64");
  }
  return n;
}

Strides contiguous_strides(std::span<const int64_t> shape) {
  Strides s;
  s.resize(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return s;
}

Shape broadcast_shapes(std::span<const int64_t> a, std::span<const int64_t> b,
                       std::string_view op) {
  size_t n = std::max(a.size(), b.size());
  Shape out;
  out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else if (da == -1 || db == -1) {  // unknown dims (graph mode): trust the known one
      out[i] = da == -1 ? db : da;
    } else {
      fail<ShapeError>("[", op, "] shapes ", shape_str(a), " and ", shape_str(b),
                       " cannot be broadcast: dimension ", i, " is ", da, " vs ", db,
                       " (each must be equal or 1)");
    }
  }
  return out;
}

int64_t normalize_axis(int64_t axis, int64_t rank, std::string_view op) {
  int64_t lo = rank == 0 ? -1 : -rank, hi = rank == 0 ? 0 : rank - 1;
  NDF_CHECK(axis >= lo && axis <= hi, IndexError, "[", op, "] axis ", axis,
            " is out of range for a tensor of rank ", rank, " (valid: ", lo, "..", hi, ")");
  if (rank == 0) return 0;
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> normalize_axes(std::span<const int64_t> axes, int64_t rank,
                                    std::string_view op) {
  std::vector<int64_t> out;
  if (axes.empty()) {
    for (int64_t i = 0; i < rank; ++i) out.push_back(i);
    return out;
  }
  for (int64_t a : axes) out.push_back(rank == 0 ? (normalize_axis(a, rank, op), 0) : normalize_axis(a, rank, op));
  std::sort(out.begin(), out.end());
  for (size_t i = 1; i < out.size(); ++i)
    NDF_CHECK(out[i] != out[i - 1], ValueError, "[", op, "] axis ", out[i],
              " appears more than once in the axis list");
  if (rank == 0) out.clear();
  return out;
}

std::string shape_str(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace ndflow
