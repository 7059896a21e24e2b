// Shapes and strides. `Shape` keeps up to 6 dimensions inline so that the
// eager hot path (infer, allocate, view) does not touch the heap; higher
// ranks spill to the heap transparently.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"

namespace ndflow {

// A vector of int64_t with inline storage for N elements.
template <size_t N>
class DimVector {
 public:
  DimVector() = default;
  DimVector(std::initializer_list<int64_t> v) { assign(v.begin(), v.size()); }
  explicit DimVector(size_t n, int64_t fill = 0) {
    resize(n);
    std::fill(begin(), end(), fill);
  }
  DimVector(std::span<const int64_t> v) { assign(v.data(), v.size()); }  // NOLINT: implicit on purpose
  DimVector(const std::vector<int64_t>& v) { assign(v.data(), v.size()); }  // NOLINT
  DimVector(const DimVector& o) { assign(o.data(), o.size_); }
  DimVector(DimVector&& o) noexcept { steal(o); }
  DimVector& operator=(const DimVector& o) {
    if (this != &o) assign(o.data(), o.size_);
    return *this;
  }
  DimVector& operator=(DimVector&& o) noexcept {
    if (this != &o) {
      release();
      steal(o);
    }
    return *this;
  }
  ~DimVector() { release(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int64_t* data() { return heap_ ? heap_ : inline_; }
  const int64_t* data() const { return heap_ ? heap_ : inline_; }
  int64_t& operator[](size_t i) { return data()[i]; }
  int64_t operator[](size_t i) const { return data()[i]; }
  int64_t* begin() { return data(); }
  int64_t* end() { return data() + size_; }
  const int64_t* begin() const { return data(); }
  const int64_t* end() const { return data() + size_; }
  int64_t back() const { return data()[size_ - 1]; }
  operator std::span<const int64_t>() const { return {data(), size_}; }  // NOLINT
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  void resize(size_t n) {
    if (n > capacity()) grow(n);
    size_ = n;
  }
  void push_back(int64_t v) {
    if (size_ == capacity()) grow(size_ * 2);
    data()[size_++] = v;
  }
  void insert(size_t pos, int64_t v) {
    push_back(0);
    std::memmove(data() + pos + 1, data() + pos, (size_ - 1 - pos) * sizeof(int64_t));
    data()[pos] = v;
  }
  void erase(size_t pos) {
    std::memmove(data() + pos, data() + pos + 1, (size_ - 1 - pos) * sizeof(int64_t));
    --size_;
  }
  friend bool operator==(const DimVector& a, const DimVector& b) {
    return a.size_ == b.size_ && std::equal(a.begin(), a.end(), b.begin());
  }

 private:
  size_t capacity() const { return heap_ ? heap_cap_ : N; }
  void assign(const int64_t* p, size_t n) {
    resize(n);
    if (n) std::memmove(data(), p, n * sizeof(int64_t));
  }
  void grow(size_t n) {
    n = std::max<size_t>(n, N * 2);
    auto* h = new int64_t[n];
    if (size_) std::memcpy(h, data(), size_ * sizeof(int64_t));
    release();
    heap_ = h;
    heap_cap_ = n;
  }
  void release() {
    delete[] heap_;
    heap_ = nullptr;
  }
  void steal(DimVector& o) {
    size_ = o.size_;
    if (o.heap_) {
      heap_ = o.heap_;
      heap_cap_ = o.heap_cap_;
      o.heap_ = nullptr;
    } else {
      std::memcpy(inline_, o.inline_, size_ * sizeof(int64_t));
    }
    o.size_ = 0;
  }

  int64_t inline_[N];
  int64_t* heap_ = nullptr;
  size_t heap_cap_ = 0;
  size_t size_ = 0;
};

using Shape = DimVector<6>;
using Strides = DimVector<6>;

// Number of elements; throws ValueError on a negative dim or on overflow.
NDF_EXPORT int64_t shape_numel(std::span<const int64_t> shape);
// Row-major strides (in elements) of a contiguous tensor of this shape.
NDF_EXPORT Strides contiguous_strides(std::span<const int64_t> shape);
// NumPy broadcasting of two shapes; `op` names the caller in the error.
NDF_EXPORT Shape broadcast_shapes(std::span<const int64_t> a, std::span<const int64_t> b,
                                  std::string_view op);
// Maps a possibly negative axis into [0, rank); IndexError naming `op` otherwise.
NDF_EXPORT int64_t normalize_axis(int64_t axis, int64_t rank, std::string_view op);
// Normalizes a list of axes (empty list = all axes), sorted and checked for duplicates.
NDF_EXPORT std::vector<int64_t> normalize_axes(std::span<const int64_t> axes, int64_t rank,
                                               std::string_view op);
NDF_EXPORT std::string shape_str(std::span<const int64_t> shape);

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << shape_str(s); }

}  // namespace ndflow
