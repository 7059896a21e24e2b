// Elementwise iteration over broadcast, strided operands. An ElementwisePlan
// aligns every operand with the output's shape (broadcast dims get stride 0),
// drops size-1 dims and merges dims that are contiguous for all operands, so
// that most calls reduce to one flat loop the compiler vectorizes. The typed
// helpers below (unary_loop, binary_loop, ...) pick a unit-stride fast path
// whenever the innermost strides allow it, and split large tensors across
// threads.
#pragma once

#include <array>
#include <cstring>

#include "core/tensor.h"
#include "kernels/cpu/parallel.h"

namespace ndflow::cpu {

template <int N>
struct ElementwisePlan {
  Shape shape;                       // coalesced; innermost last; never empty
  std::array<Strides, N> strides;    // bytes, per operand per dim
  std::array<char*, N> base;
  int64_t numel = 1;
};

// Operand 0 is the output; `ops[k]` must broadcast to `ops[0]`'s shape.
template <int N>
ElementwisePlan<N> make_plan(const std::array<const Tensor*, N>& ops) {
  ElementwisePlan<N> p;
  const Shape& out = ops[0]->shape();
  size_t r = out.size();
  for (int k = 0; k < N; ++k) p.base[k] = static_cast<char*>(ops[k]->raw_data());
  // Broadcast strides (bytes) aligned to the output.
  std::array<Strides, N> full;
  for (int k = 0; k < N; ++k) {
    const Tensor& t = *ops[k];
    int64_t esz = static_cast<int64_t>(dtype_size(t.dtype()));
    full[k].resize(r);
    size_t tr = t.shape().size();
    for (size_t d = 0; d < r; ++d) {
      if (d < r - tr) {
        full[k][d] = 0;
      } else {
        size_t td = d - (r - tr);
        full[k][d] = t.shape()[td] == 1 ? 0 : t.strides()[td] * esz;
      }
    }
  }
  for (size_t d = 0; d < r; ++d) {
    int64_t size = out[d];
    p.numel *= size;
    if (size == 1) continue;
    size_t last = p.shape.size();
    bool merge = last > 0;
    for (int k = 0; k < N && merge; ++k)
      merge = p.strides[k][last - 1] == full[k][d] * size;
    if (merge) {
      p.shape[last - 1] *= size;
      for (int k = 0; k < N; ++k) p.strides[k][last - 1] = full[k][d];
    } else {
      p.shape.push_back(size);
      for (int k = 0; k < N; ++k) p.strides[k].push_back(full[k][d]);
    }
  }
  if (p.shape.empty()) {  // all dims are 1 (or a 0-d tensor)
    p.shape.push_back(1);
    for (int k = 0; k < N; ++k) p.strides[k].push_back(0);
  }
  return p;
}

// Calls inner(ptrs, inner_strides, n) over runs of the innermost dim, for the
// flat element range [begin, end).
template <int N, typename Inner>
void run_range(const ElementwisePlan<N>& p, int64_t begin, int64_t end, Inner& inner) {
  size_t r = p.shape.size();
  int64_t inner_len = p.shape[r - 1];
  std::array<int64_t, N> istr;
  for (int k = 0; k < N; ++k) istr[k] = p.strides[k][r - 1];
  // Multi-index of `begin`.
  Shape idx;
  idx.resize(r);
  int64_t rem = begin;
  for (size_t d = r; d-- > 0;) {
    idx[d] = rem % p.shape[d];
    rem /= p.shape[d];
  }
  std::array<char*, N> ptr;
  for (int k = 0; k < N; ++k) {
    ptr[k] = p.base[k];
    for (size_t d = 0; d < r; ++d) ptr[k] += idx[d] * p.strides[k][d];
  }
  int64_t pos = begin;
  while (pos < end) {
    int64_t n = std::min(inner_len - idx[r - 1], end - pos);
    inner(ptr.data(), istr.data(), n);
    pos += n;
    if (pos >= end) break;
    // Advance to the start of the next inner run.
    for (int k = 0; k < N; ++k) ptr[k] += n * istr[k];
    idx[r - 1] += n;
    for (size_t d = r - 1; d > 0 && idx[d] == p.shape[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
      for (int k = 0; k < N; ++k)
        ptr[k] += p.strides[k][d - 1] - p.shape[d] * p.strides[k][d];
    }
  }
}

// Runs `inner` over all elements of the plan, in parallel when large.
template <int N, typename Inner>
void for_each_element(const ElementwisePlan<N>& p, int num_threads, Inner inner) {
  if (p.numel == 0) return;
  parallel_for(p.numel, kParallelGrain, num_threads,
               [&](int64_t b, int64_t e) { run_range(p, b, e, inner); });
}

// out = f(a), elementwise.
template <typename Out, typename In, typename F>
void unary_loop(const Tensor& out, const Tensor& a, int num_threads, F f) {
  auto plan = make_plan<2>({&out, &a});
  for_each_element(plan, num_threads, [&](char** p, const int64_t* s, int64_t n) {
    Out* o = reinterpret_cast<Out*>(p[0]);
    const In* x = reinterpret_cast<const In*>(p[1]);
    if (s[0] == sizeof(Out) && s[1] == sizeof(In)) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<Out*>(p[0] + i * s[0]) = f(*reinterpret_cast<const In*>(p[1] + i * s[1]));
    }
  });
}

// out = f(a, b), elementwise with broadcasting.
template <typename Out, typename In, typename F>
void binary_loop(const Tensor& out, const Tensor& a, const Tensor& b, int num_threads, F f) {
  auto plan = make_plan<3>({&out, &a, &b});
  for_each_element(plan, num_threads, [&](char** p, const int64_t* s, int64_t n) {
    Out* o = reinterpret_cast<Out*>(p[0]);
    const In* x = reinterpret_cast<const In*>(p[1]);
    const In* y = reinterpret_cast<const In*>(p[2]);
    constexpr int64_t so = sizeof(Out), si = sizeof(In);
    if (s[0] == so && s[1] == si && s[2] == si) {
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
    } else if (s[0] == so && s[1] == si && s[2] == 0) {
      const In yv = *y;
      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], yv);
    } else if (s[0] == so && s[1] == 0 && s[2] == si) {
      const In xv = *x;
      for (int64_t i = 0; i < n; ++i) o[i] = f(xv, y[i]);
    } else {
      for (int64_t i = 0; i < n; ++i)
        *reinterpret_cast<Out*>(p[0] + i * s[0]) =
            f(*reinterpret_cast<const In*>(p[1] + i * s[1]),
              *reinterpret_cast<const In*>(p[2] + i * s[2]));
    }
  });
}

// out = f(a, b, c), elementwise with broadcasting; operand types given separately.
template <typename Out, typename A, typename B, typename C, typename F>
void ternary_loop(const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& c,
                  int num_threads, F f) {
  auto plan = make_plan<4>({&out, &a, &b, &c});
  for_each_element(plan, num_threads, [&](char** p, const int64_t* s, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<Out*>(p[0] + i * s[0]) = f(*reinterpret_cast<const A*>(p[1] + i * s[1]),
                                                   *reinterpret_cast<const B*>(p[2] + i * s[2]),
                                                   *reinterpret_cast<const C*>(p[3] + i * s[3]));
  });
}

// Kernels that read dense row-major buffers: t itself when it is one, else a
// dense copy (one pass, against the kernel's several).
template <typename T>
Tensor dense(const Tensor& t, int num_threads) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  unary_loop<T, T>(out, t, num_threads, [](T v) { return v; });
  return out;
}

// Runs body(T* dst) on a dense buffer for `out` and copies it into `out` when
// `out` is not dense itself.
template <typename T, typename Body>
void into(const Tensor& out, int num_threads, Body body) {
  Tensor dst = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
  body(dst.template data<T>());
  if (!dst.same(out)) unary_loop<T, T>(out, dst, num_threads, [](T v) { return v; });
}

}  // namespace ndflow::cpu
