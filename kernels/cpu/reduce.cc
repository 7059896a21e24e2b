// CPU kernels of the reductions (ops/reduce.cc): sum, prod, max, min,
// argmax, argmin and sum_to_like share one strided reduction engine.
//
// The input's dims are split into kept dims (one result each) and reduced
// dims, each list put in memory order and coalesced. Then:
//  - row mode, when the innermost (smallest-stride) dim is reduced: each
//    result reduces runs along that dim; a unit-stride run goes through a
//    multi-accumulator loop the compiler vectorizes;
//  - column mode, when the innermost dim is kept: for every reduced index a
//    contiguous block of results is updated at once (vectorized over results);
//  - any other layout (transposed, sliced, expanded) is the same iteration
//    with strides: correct without a copy, only slower.
// Large inputs are split over the results; inputs with few results but many
// reduced elements are split over the reduced range into fixed blocks whose
// partial results are merged in order. Block boundaries depend only on the
// shape, never on the thread count, so results are reproducible bit for bit.
//
// Accumulators: f32 sums run in f32 lanes over chunks of 4096 elements whose
// partial sums are added in f64 (column mode adds in f64 directly); integer
// sums and products wrap in u64 (defined behaviour, equal to two's-complement
// i64 wrapping); NaN propagates through max/min and wins argmax/argmin.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/op_registry.h"
#include "kernels/cpu/parallel.h"

namespace ndflow::cpu {

namespace {

// ------------------------------------------------------------ iteration

// Visits the flat indices [b, e) of the row-major index space `size`, in runs
// along its innermost dim: f(flat index of the run, offset under strides sa,
// offset under sb, run length). An empty `size` is one element at offset 0.
template <typename F>
void for_each_run(const Shape& size, const Shape& sa, const Shape& sb, int64_t b, int64_t e,
                  F&& f) {
  if (b >= e) return;
  const size_t r = size.size();
  if (r == 0) {
    f(b, int64_t(0), int64_t(0), e - b);
    return;
  }
  Shape idx(r);
  int64_t rem = b, oa = 0, ob = 0;
  for (size_t d = r; d-- > 0;) {
    idx[d] = rem % size[d];
    rem /= size[d];
    oa += idx[d] * sa[d];
    ob += idx[d] * sb[d];
  }
  for (int64_t pos = b;;) {
    int64_t n = std::min(size[r - 1] - idx[r - 1], e - pos);
    f(pos, oa, ob, n);
    pos += n;
    if (pos >= e) return;
    oa += n * sa[r - 1];
    ob += n * sb[r - 1];
    idx[r - 1] += n;
    for (size_t d = r - 1; d > 0 && idx[d] == size[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
      oa += sa[d - 1] - size[d] * sa[d];
      ob += sb[d - 1] - size[d] * sb[d];
    }
  }
}

// The geometry of one reduction; strides in elements.
struct ReducePlan {
  Shape kept_size, kept_in, kept_out;  // outer..inner in memory order
  Shape red_size, red_in, red_zero;    // red_zero: all-zero strides for for_each_run
  int64_t out_numel = 1, red_numel = 1;
  int64_t red_stride = 1;  // innermost reduced stride (1 when nothing is reduced)
  bool column = false;
};

// Appends dim (size, in, out) to a list, merging it into the previous dim
// when together they step through memory as one dim.
void append_dim(Shape& size, Shape& in, Shape* out, int64_t s, int64_t i, int64_t o) {
  size_t n = size.size();
  if (n && in[n - 1] == i * s && (!out || (*out)[n - 1] == o * s)) {
    size[n - 1] *= s;
    in[n - 1] = i;
    if (out) (*out)[n - 1] = o;
    return;
  }
  size.push_back(s);
  in.push_back(i);
  if (out) out->push_back(o);
}

// `is_red[d]` and `out_stride[d]` describe input dim d. Arg reductions keep the
// reduced dims in logical order (`logical_order`) so that the flat reduced
// index is the index they report.
ReducePlan make_plan(const Tensor& x, const Shape& is_red, const Shape& out_stride,
                     bool logical_order) {
  const Shape& xs = x.shape();
  const Strides& st = x.strides();
  Shape kept, red;
  ReducePlan p;
  for (size_t d = 0; d < xs.size(); ++d) {
    (is_red[d] ? p.red_numel : p.out_numel) *= xs[d];
    if (xs[d] != 1) (is_red[d] ? red : kept).push_back(static_cast<int64_t>(d));
  }
  auto sort_by_stride = [&](Shape& dims) {  // insertion sort: stable, no allocation
    for (size_t i = 1; i < dims.size(); ++i)
      for (size_t j = i; j > 0 && st[dims[j - 1]] < st[dims[j]]; --j)
        std::swap(dims[j - 1], dims[j]);
  };
  sort_by_stride(kept);
  if (!logical_order) sort_by_stride(red);
  for (int64_t d : kept)
    append_dim(p.kept_size, p.kept_in, &p.kept_out, xs[d], st[d], out_stride[d]);
  for (int64_t d : red) append_dim(p.red_size, p.red_in, nullptr, xs[d], st[d], 0);
  p.red_zero = Shape(p.red_size.size(), 0);
  if (!p.red_in.empty()) p.red_stride = p.red_in.back();
  p.column = !p.kept_in.empty() && !p.red_in.empty() && p.kept_in.back() < p.red_in.back();
  return p;
}

// ----------------------------------------------------------- the ops

// Lane-parallel reduction of a contiguous run: W independent accumulators the
// compiler keeps in vector registers, per chunk of 4096 elements whose result
// is folded into the op's accumulator type (f64 for float sums).
inline constexpr int64_t kChunk = 4096;

template <typename Op>
typename Op::Acc lane_reduce(const typename Op::In* p, int64_t n) {
  using Lane = typename Op::Lane;
  constexpr int W = static_cast<int>(128 / sizeof(Lane));
  typename Op::Acc total = Op::identity();
  if (n < 2 * W) {  // short rows: the lane setup would cost more than the work
    for (int64_t i = 0; i < n; ++i) total = Op::step(total, p[i], i);
    return total;
  }
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t m = std::min(kChunk, n - c0);
    const typename Op::In* q = p + c0;
    Lane lane[W];
    for (int j = 0; j < W; ++j) lane[j] = Op::lane_identity();
    int64_t i = 0;
    for (; i + W <= m; i += W) {
#pragma omp simd
      for (int j = 0; j < W; ++j) lane[j] = Op::lane_step(lane[j], q[i + j]);
    }
    for (int j = 0; i + j < m; ++j) lane[j] = Op::lane_step(lane[j], q[i + j]);
    for (int w = W / 2; w > 0; w /= 2)
      for (int j = 0; j < w; ++j) lane[j] = Op::lane_merge(lane[j], lane[j + w]);
    total = Op::merge(total, Op::from_lane(lane[0]));
  }
  return total;
}

template <typename T>
constexpr bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return v != v;
  else
    return false;
}

// Each op: In/Acc/Out types, identity, step (fold one element, with its flat
// reduced index for the arg ops), merge (earlier, later), finalize, and
// contig (a unit-stride run). kHasIdentity: defined over an empty set.
template <typename T, typename A, typename O>
struct SumOp {
  using In = T;
  using Acc = A;
  using Out = O;
  using Lane = std::conditional_t<std::is_floating_point_v<T>, T, A>;
  static constexpr bool kHasIdentity = true;
  static Acc identity() { return Acc(0); }
  static Acc step(Acc a, T v, int64_t) { return a + static_cast<Acc>(v); }
  static Acc merge(Acc a, Acc b) { return a + b; }
  static Out finalize(Acc a) { return static_cast<Out>(a); }
  static Lane lane_identity() { return Lane(0); }
  static Lane lane_step(Lane l, T v) { return l + static_cast<Lane>(v); }
  static Lane lane_merge(Lane a, Lane b) { return a + b; }
  static Acc from_lane(Lane l) { return static_cast<Acc>(l); }
  static Acc contig(const T* p, int64_t n, int64_t) { return lane_reduce<SumOp>(p, n); }
};

template <typename T, typename A, typename O>
struct ProdOp {
  using In = T;
  using Acc = A;
  using Out = O;
  using Lane = A;
  static constexpr bool kHasIdentity = true;
  static Acc identity() { return Acc(1); }
  static Acc step(Acc a, T v, int64_t) { return a * static_cast<Acc>(v); }
  static Acc merge(Acc a, Acc b) { return a * b; }
  static Out finalize(Acc a) { return static_cast<Out>(a); }
  static Lane lane_identity() { return Lane(1); }
  static Lane lane_step(Lane l, T v) { return l * static_cast<Lane>(v); }
  static Lane lane_merge(Lane a, Lane b) { return a * b; }
  static Acc from_lane(Lane l) { return l; }
  static Acc contig(const T* p, int64_t n, int64_t) { return lane_reduce<ProdOp>(p, n); }
};

// max (kMax) or min; a NaN, once seen, stays.
template <typename T, bool kMax>
struct ExtremumOp {
  using In = T;
  using Acc = T;
  using Out = T;
  using Lane = T;
  static constexpr bool kHasIdentity = false;
  static T identity() {
    if constexpr (std::is_floating_point_v<T>)
      return kMax ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
    else
      return kMax ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
  }
  static T pick(T a, T v) { return ((kMax ? v > a : v < a) || is_nan(v)) ? v : a; }
  static T step(T a, T v, int64_t) { return pick(a, v); }
  static T merge(T a, T b) { return pick(a, b); }
  static T finalize(T a) { return a; }
  static T lane_identity() { return identity(); }
  static T lane_step(T l, T v) { return pick(l, v); }
  static T lane_merge(T a, T b) { return pick(a, b); }
  static T from_lane(T l) { return l; }
  static T contig(const T* p, int64_t n, int64_t) { return lane_reduce<ExtremumOp>(p, n); }
};

template <typename T>
struct ArgAcc {
  T v;
  int64_t i;  // -1: nothing seen yet
};

// argmax (kMax) or argmin: the first extreme element; the first NaN wins.
template <typename T, bool kMax>
struct ArgOp {
  using In = T;
  using Acc = ArgAcc<T>;
  using Out = int64_t;
  static constexpr bool kHasIdentity = false;
  static Acc identity() { return {T(), -1}; }
  // Whether `later` replaces `earlier` (strict, so ties keep the first).
  static bool wins(T later, T earlier) {
    if (is_nan(earlier)) return false;
    return is_nan(later) || (kMax ? later > earlier : later < earlier);
  }
  static Acc step(Acc a, T v, int64_t i) { return (a.i < 0 || wins(v, a.v)) ? Acc{v, i} : a; }
  static Acc merge(Acc a, Acc b) {
    if (b.i < 0) return a;
    return (a.i < 0 || wins(b.v, a.v)) ? b : a;
  }
  static int64_t finalize(Acc a) { return a.i; }
  // Two passes beat one branchy pass: the extreme value with vector lanes,
  // then the first element equal to it (or the first NaN).
  static Acc contig(const T* p, int64_t n, int64_t i0) {
    if (n <= 0) return identity();
    const T m = ExtremumOp<T, kMax>::contig(p, n, 0);
    int64_t i = 0;
    if (is_nan(m)) {
      while (!is_nan(p[i])) ++i;
    } else {
      while (p[i] != m) ++i;
    }
    return {p[i], i0 + i};
  }
};

// ------------------------------------------------------------ the engine

// Results per column block in column mode (accumulators stay in L1).
inline constexpr int64_t kColBlock = 512;
// Below this many parallel work items the reduced range is split instead.
inline constexpr int64_t kSplitItems = 32;

template <typename Op>
class Reducer {
 public:
  using T = typename Op::In;
  using Acc = typename Op::Acc;
  using Out = typename Op::Out;

  Reducer(const ReducePlan& p, const T* x, Out* y) : p_(p), x_(x), y_(y) {
    if (p_.column) {
      nc_ = p_.kept_size.back();
      sc_ = p_.kept_in.back();
      oc_ = p_.kept_out.back();
      outer_size_ = p_.kept_size;
      outer_in_ = p_.kept_in;
      outer_out_ = p_.kept_out;
      outer_size_.resize(outer_size_.size() - 1);
      outer_in_.resize(outer_in_.size() - 1);
      outer_out_.resize(outer_out_.size() - 1);
      nblk_ = (nc_ + kColBlock - 1) / kColBlock;
    }
  }

  void run(int num_threads) {
    const int64_t items = p_.column ? (p_.out_numel / nc_) * nblk_ : p_.out_numel;
    if (items < kSplitItems && p_.red_numel >= 2 &&
        p_.out_numel * p_.red_numel >= 2 * kParallelGrain)
      run_split(num_threads);
    else if (p_.column)
      run_columns(items, num_threads);
    else
      run_rows(num_threads);
  }

 private:
  // Folds the reduced flat range [r0, r1) for the result whose input starts at `base`.
  Acc reduce_row(const T* base, int64_t r0, int64_t r1) const {
    const int64_t rs = p_.red_stride;
    if (p_.red_size.size() <= 1) {  // one reduced dim (the common case): no index bookkeeping
      if (rs == 1) return Op::contig(base + r0, r1 - r0, r0);
      Acc acc = Op::identity();
      for (int64_t i = r0; i < r1; ++i) acc = Op::step(acc, base[i * rs], i);
      return acc;
    }
    Acc acc = Op::identity();
    for_each_run(p_.red_size, p_.red_in, p_.red_zero, r0, r1,
                 [&](int64_t pos, int64_t off, int64_t, int64_t n) {
                   const T* q = base + off;
                   if (rs == 1) {
                     acc = Op::merge(acc, Op::contig(q, n, pos));
                   } else {
                     Acc run = Op::identity();
                     for (int64_t i = 0; i < n; ++i) run = Op::step(run, q[i * rs], pos + i);
                     acc = Op::merge(acc, run);
                   }
                 });
    return acc;
  }

  // acc[j] folds in x[base + j*sc + reduced offset] for the reduced range [r0, r1).
  void reduce_columns(Acc* acc, int64_t len, const T* base, int64_t r0, int64_t r1) const {
    const int64_t rs = p_.red_stride, sc = sc_;
    for_each_run(p_.red_size, p_.red_in, p_.red_zero, r0, r1,
                 [&](int64_t pos, int64_t off, int64_t, int64_t n) {
                   int64_t i = 0;
                   if (sc == 1) {
                     // Four rows per pass over the accumulators: a quarter of
                     // the accumulator loads and stores, same order of steps.
                     for (; i + 4 <= n; i += 4) {
                       const T* q0 = base + off + i * rs;
                       const T *q1 = q0 + rs, *q2 = q1 + rs, *q3 = q2 + rs;
                       const int64_t idx = pos + i;
#pragma omp simd
                       for (int64_t j = 0; j < len; ++j) {
                         Acc a = Op::step(acc[j], q0[j], idx);
                         a = Op::step(a, q1[j], idx + 1);
                         a = Op::step(a, q2[j], idx + 2);
                         acc[j] = Op::step(a, q3[j], idx + 3);
                       }
                     }
                   }
                   for (; i < n; ++i) {
                     const T* q = base + off + i * rs;
                     const int64_t idx = pos + i;
                     if (sc == 1) {
#pragma omp simd
                       for (int64_t j = 0; j < len; ++j) acc[j] = Op::step(acc[j], q[j], idx);
                     } else {
                       for (int64_t j = 0; j < len; ++j) acc[j] = Op::step(acc[j], q[j * sc], idx);
                     }
                   }
                 });
  }

  void run_rows(int num_threads) {
    const int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(p_.red_numel, 1));
    const int64_t si = p_.kept_in.empty() ? 0 : p_.kept_in.back();
    const int64_t so = p_.kept_out.empty() ? 0 : p_.kept_out.back();
    parallel_for(p_.out_numel, grain, num_threads, [&](int64_t b, int64_t e) {
      for_each_run(p_.kept_size, p_.kept_in, p_.kept_out, b, e,
                   [&](int64_t, int64_t in, int64_t out, int64_t n) {
                     for (int64_t i = 0; i < n; ++i)
                       y_[out + i * so] =
                           Op::finalize(reduce_row(x_ + in + i * si, 0, p_.red_numel));
                   });
    });
  }

  void run_columns(int64_t items, int num_threads) {
    const int64_t per_item = std::min(nc_, kColBlock) * std::max<int64_t>(p_.red_numel, 1);
    const int64_t grain = std::max<int64_t>(1, kParallelGrain / per_item);
    parallel_for(items, grain, num_threads, [&](int64_t b, int64_t e) {
      Acc acc[kColBlock];
      for (int64_t item = b; item < e; ++item) {
        const int64_t o = item / nblk_, j0 = (item % nblk_) * kColBlock;
        const int64_t len = std::min(kColBlock, nc_ - j0);
        for_each_run(outer_size_, outer_in_, outer_out_, o, o + 1,
                     [&](int64_t, int64_t in, int64_t out, int64_t) {
                       std::fill(acc, acc + len, Op::identity());
                       reduce_columns(acc, len, x_ + in + j0 * sc_, 0, p_.red_numel);
                       for (int64_t j = 0; j < len; ++j)
                         y_[out + (j0 + j) * oc_] = Op::finalize(acc[j]);
                     });
      }
    });
  }

  // Few results, many reduced elements: fixed blocks of the reduced range,
  // each producing partial results for every output, merged in block order.
  void run_split(int num_threads) {
    const int64_t outs = p_.out_numel, red = p_.red_numel;
    int64_t len = std::max<int64_t>(1, kParallelGrain / outs);
    const int64_t max_blocks =
        std::max<int64_t>(2, std::min<int64_t>(1024, (int64_t(1) << 18) / outs));
    if ((red + len - 1) / len > max_blocks) len = (red + max_blocks - 1) / max_blocks;
    const int64_t nb = (red + len - 1) / len;
    // Not std::vector: Acc may be bool.
    std::unique_ptr<Acc[]> part(new Acc[static_cast<size_t>(nb * outs)]);
    std::fill(part.get(), part.get() + nb * outs, Op::identity());
    parallel_for(nb, 1, num_threads, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t r0 = blk * len, r1 = std::min(red, r0 + len);
        Acc* acc = part.get() + blk * outs;
        if (p_.column) {
          const int64_t outer = outs / nc_;
          for (int64_t o = 0; o < outer; ++o)
            for_each_run(outer_size_, outer_in_, outer_out_, o, o + 1,
                         [&](int64_t, int64_t in, int64_t, int64_t) {
                           for (int64_t j0 = 0; j0 < nc_; j0 += kColBlock)
                             reduce_columns(acc + o * nc_ + j0, std::min(kColBlock, nc_ - j0),
                                            x_ + in + j0 * sc_, r0, r1);
                         });
        } else {
          const int64_t si = p_.kept_in.empty() ? 0 : p_.kept_in.back();
          for_each_run(p_.kept_size, p_.kept_in, p_.kept_out, 0, outs,
                       [&](int64_t pos, int64_t in, int64_t, int64_t n) {
                         for (int64_t i = 0; i < n; ++i)
                           acc[pos + i] = reduce_row(x_ + in + i * si, r0, r1);
                       });
        }
      }
    });
    const int64_t so = p_.kept_out.empty() ? 0 : p_.kept_out.back();
    for_each_run(p_.kept_size, p_.kept_in, p_.kept_out, 0, outs,
                 [&](int64_t pos, int64_t, int64_t out, int64_t n) {
                   for (int64_t i = 0; i < n; ++i) {
                     Acc a = part[static_cast<size_t>(pos + i)];
                     for (int64_t blk = 1; blk < nb; ++blk)
                       a = Op::merge(a, part[static_cast<size_t>(blk * outs + pos + i)]);
                     y_[out + i * so] = Op::finalize(a);
                   }
                 });
  }

  const ReducePlan& p_;
  const T* x_;
  Out* y_;
  int64_t nc_ = 1, sc_ = 1, oc_ = 1, nblk_ = 1;  // column mode: innermost kept dim
  Shape outer_size_, outer_in_, outer_out_;      // column mode: the other kept dims
};

// Which input dims are reduced and, for kept dims, their stride in the output.
struct Geometry {
  Shape is_red, out_stride;
};

// sum/prod/max/min/argmax/argmin: `axes` normalized; output dims are the kept
// dims in order (with size-1 dims in place of reduced ones when keepdims).
Geometry axes_geometry(const Tensor& x, const Tensor& y, const std::vector<int64_t>& axes,
                       bool keepdims) {
  Geometry g{Shape(x.shape().size(), 0), Shape(x.shape().size(), 0)};
  for (int64_t a : axes) g.is_red[a] = 1;
  int64_t od = 0;
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (!g.is_red[d]) g.out_stride[d] = y.strides()[od];
    if (!g.is_red[d] || keepdims) ++od;
  }
  return g;
}

template <typename Op>
void reduce(KernelContext& c, const Geometry& g, bool logical_order) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  ReducePlan p = make_plan(x, g.is_red, g.out_stride, logical_order);
  if (p.out_numel == 0) return;
  if constexpr (!Op::kHasIdentity) {
    // Inference rejects this; a graph whose dims were unknown reaches it here.
    NDF_CHECK(p.red_numel > 0, ValueError, "[", c.op.name(), "] cannot reduce over an empty "
              "set (input shape ", shape_str(x.shape()), "): ", c.op.name(), " has no identity");
  }
  Reducer<Op>(p, static_cast<const typename Op::In*>(x.raw_data()),
              static_cast<typename Op::Out*>(y.raw_data()))
      .run(c.num_threads);
}

std::vector<int64_t> kernel_axes(const KernelContext& c) {
  return normalize_axes(c.attrs.get<std::vector<int64_t>>("axes", {}), c.input(0).rank(),
                        c.op.name());
}

void sum_kernel(KernelContext& c) {
  Geometry g =
      axes_geometry(c.input(0), c.output(0), kernel_axes(c), c.attrs.get<bool>("keepdims", false));
  dispatch_numeric_bool(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<T>)
      reduce<SumOp<T, double, T>>(c, g, false);
    else
      reduce<SumOp<T, uint64_t, int64_t>>(c, g, false);
  });
}

void prod_kernel(KernelContext& c) {
  Geometry g =
      axes_geometry(c.input(0), c.output(0), kernel_axes(c), c.attrs.get<bool>("keepdims", false));
  dispatch_numeric_bool(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<T>)
      reduce<ProdOp<T, double, T>>(c, g, false);
    else
      reduce<ProdOp<T, uint64_t, int64_t>>(c, g, false);
  });
}

template <bool kMax>
void extremum_kernel(KernelContext& c) {
  Geometry g =
      axes_geometry(c.input(0), c.output(0), kernel_axes(c), c.attrs.get<bool>("keepdims", false));
  dispatch_numeric_bool(c.input(0).dtype(), c.op.name(),
                        [&]<typename T>() { reduce<ExtremumOp<T, kMax>>(c, g, false); });
}

template <bool kMax>
void arg_kernel(KernelContext& c) {
  auto axes =
      normalize_axes(c.attrs.get<std::vector<int64_t>>("axis", {}), c.input(0).rank(), c.op.name());
  Geometry g = axes_geometry(c.input(0), c.output(0), axes, c.attrs.get<bool>("keepdims", false));
  dispatch_numeric_bool(c.input(0).dtype(), c.op.name(),
                        [&]<typename T>() { reduce<ArgOp<T, kMax>>(c, g, true); });
}

// Leading dims of x that `like` lacks are summed away; dims where like has 1
// and x has more are summed keeping their place.
void sum_to_like_kernel(KernelContext& c) {
  const Tensor &x = c.input(0), &y = c.output(0);
  const size_t rx = x.shape().size(), lead = rx - y.shape().size();
  Geometry g{Shape(rx, 0), Shape(rx, 0)};
  for (size_t d = 0; d < rx; ++d) {
    if (d < lead || (y.shape()[d - lead] == 1 && x.shape()[d] != 1))
      g.is_red[d] = 1;
    else
      g.out_stride[d] = y.strides()[d - lead];
  }
  dispatch_numeric(x.dtype(), c.op.name(), [&]<typename T>() {
    if constexpr (std::is_floating_point_v<T>)
      reduce<SumOp<T, double, T>>(c, g, false);
    else
      reduce<SumOp<T, uint64_t, T>>(c, g, false);
  });
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> numeric = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8};
  std::vector<DType> all = numeric;
  all.push_back(DType::boolean);

  r.add("sum", CPU, all, sum_kernel);
  r.add("prod", CPU, all, prod_kernel);
  r.add("max", CPU, all, extremum_kernel<true>);
  r.add("min", CPU, all, extremum_kernel<false>);
  r.add("argmax", CPU, all, arg_kernel<true>);
  r.add("argmin", CPU, all, arg_kernel<false>);
  r.add("sum_to_like", CPU, numeric, sum_to_like_kernel);
}

}  // namespace ndflow::cpu
