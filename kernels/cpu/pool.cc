// CPU kernels of max_pool2d, avg_pool2d and their backward ops
// (ops/conv.cc). Pooling is memory-bound and runs direct vectorized loops for
// both dtypes: on plain NCHW they beat oneDNN's pooling (its simple_nchw
// path) 2-8x.
#include <cmath>
#include <limits>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/window.h"

namespace ndflow::cpu {

namespace {

// ------------------------------------------------------- direct pooling
// One plane at a time, a row of outputs at a time: for each input row of the
// windows and each kernel column, one pass along the output row with a
// constant input stride, which the compiler vectorizes. Windows are
// separable, so the average's divisor is a row factor times a column factor.

struct PoolGeom {
  int64_t NC, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
  bool include_pad = true;
  int64_t divisor = 0;     // avg pooling's divisor_override (0: the window's count)
  int64_t dh = 1, dw = 1;  // max pooling's dilation
  bool dilated() const { return dh != 1 || dw != 1; }
};

PoolGeom pool_geom(const Shape& x, const Shape& y, const Attrs& a) {
  Ints k = a.get<Ints>("kernel_size"), s = a.get<Ints>("stride", Ints{}), p = pair_attr(a, "padding", 0);
  if (s.empty()) s = k;
  PoolGeom g{x[0] * x[1], x[2], x[3], y[2], y[3], k[0], k[1], s[0], s[1], p[0], p[1]};
  g.include_pad = a.get<bool>("count_include_pad", true);
  g.divisor = a.get<int64_t>("divisor_override", 0);
  Ints d = pair_attr(a, "dilation", 1);
  g.dh = d[0];
  g.dw = d[1];
  return g;
}

// What the windows along one spatial dim cover: per output position the
// input range [lo, hi) and the divisor factor (as PyTorch computes it: the
// window is first clipped to the padded input, which ceil_mode may overrun,
// then to the input), and per kernel offset the valid output range.
struct PoolAxis {
  std::vector<int64_t> lo, hi;
  std::vector<double> count;
  std::vector<Range> by_offset;
};
PoolAxis pool_axis(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool include_pad) {
  PoolAxis a;
  for (int64_t o = 0; o < out; ++o) {
    int64_t lo = o * s - p, hi = std::min(lo + k, in + p), padded = hi - lo;
    lo = std::max<int64_t>(lo, 0);
    hi = std::min(hi, in);
    a.lo.push_back(lo);
    a.hi.push_back(hi);
    a.count.push_back(static_cast<double>(include_pad ? padded : hi - lo));
  }
  for (int64_t off = 0; off < k; ++off) a.by_offset.push_back(valid_range(out, in, s, p, off));
  return a;
}

struct PoolPlan {
  PoolAxis h, w;
};
PoolPlan pool_plan(const PoolGeom& g) {
  PoolPlan pl{pool_axis(g.H, g.OH, g.kh, g.sh, g.ph, g.include_pad),
              pool_axis(g.W, g.OW, g.kw, g.sw, g.pw, g.include_pad)};
  if (g.divisor > 0) {  // divisor_override: one divisor for every window
    std::fill(pl.h.count.begin(), pl.h.count.end(), static_cast<double>(g.divisor));
    std::fill(pl.w.count.begin(), pl.w.count.end(), 1.0);
  }
  return pl;
}

// Calls row(plane, oh) for every output row, parallel over planes.
template <typename Row>
void for_rows(const PoolGeom& g, int threads, Row row) {
  parallel_for(g.NC, grain_for(g.OH * g.OW * g.kh * g.kw + g.H * g.W), threads,
               [&](int64_t lo, int64_t hi) {
                 for (int64_t p = lo; p < hi; ++p)
                   for (int64_t oh = 0; oh < g.OH; ++oh) row(p, oh);
               });
}

// Calls f(xr, ow_range) for each input row ih of output row oh's windows and
// each kernel column kw, with xr pointing so that xr[ow * sw] is the input
// element of output ow.
template <typename T, typename F>
void for_window_rows(const PoolGeom& g, const PoolPlan& pl, T* plane, int64_t oh, F f) {
  for (int64_t ih = pl.h.lo[oh]; ih < pl.h.hi[oh]; ++ih)
    for (int64_t kw = 0; kw < g.kw; ++kw) f(plane + ih * g.W + kw - g.pw, pl.w.by_offset[kw]);
}

// NOTE: v > m || v != v keeps a NaN (PyTorch's rule), and the first maximum
// in row-major order on ties; the backward's argmax follows the same rule.
template <typename T>
void max_pool_fwd(const PoolGeom& g, const T* x, T* y, int threads) {
  PoolPlan pl = pool_plan(g);
  for_rows(g, threads, [&](int64_t p, int64_t oh) {
    T* yr = y + (p * g.OH + oh) * g.OW;
    std::fill_n(yr, g.OW, -std::numeric_limits<T>::infinity());
    for_window_rows(g, pl, x + p * g.H * g.W, oh, [&](const T* xr, Range r) {
#pragma omp simd simdlen(8)
      for (int64_t ow = r.lo; ow < r.hi; ++ow) {
        T v = xr[ow * g.sw];
        yr[ow] = v > yr[ow] || v != v ? v : yr[ow];
      }
    });
  });
}

// The argmax of every window: calls start(plane) once per plane, then
// row(plane, oh, at) per output row with at[ow] the flat index in the plane
// of window (oh, ow)'s first maximum (-1 for an empty window). Idx: i32 when
// a plane's indices fit, which lets the loop vectorize (a float and its
// index in lanes of one width).
template <typename T, typename Idx, typename Start, typename Row>
void max_pool_argmax_rows(const PoolGeom& g, const T* x, int threads, Start start, Row row) {
  PoolPlan pl = pool_plan(g);
  parallel_for(g.NC, grain_for(g.OH * g.OW * g.kh * g.kw + g.H * g.W), threads, [&](int64_t lo, int64_t hi) {
    std::vector<T> best(static_cast<size_t>(g.OW));
    std::vector<Idx> at(static_cast<size_t>(g.OW));
    for (int64_t p = lo; p < hi; ++p) {
      const T* xp = x + p * g.H * g.W;
      start(p);
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        std::fill(best.begin(), best.end(), -std::numeric_limits<T>::infinity());
        std::fill(at.begin(), at.end(), Idx{-1});
        T* bp = best.data();
        Idx* ap = at.data();
        for_window_rows(g, pl, xp, oh, [&](const T* xr, Range r) {
          auto base = static_cast<Idx>(xr - xp);  // flat index of xr[0] in the plane
          auto step = static_cast<Idx>(g.sw);
#pragma omp simd simdlen(8)
          for (int64_t ow = r.lo; ow < r.hi; ++ow) {
            T v = xr[ow * g.sw];
            bool take = (v > bp[ow]) | (v != v) | (ap[ow] < 0);
            bp[ow] = take ? v : bp[ow];
            ap[ow] = take ? static_cast<Idx>(base + static_cast<Idx>(ow) * step) : ap[ow];
          }
        });
        row(p, oh, static_cast<const Idx*>(ap));
      }
    }
  });
}

// Dilated windows are not runs of adjacent columns: a plain loop over each
// window's taps, with the same first-maximum and NaN rules.
template <typename T, typename Idx, typename Start, typename Row>
void max_pool_argmax_dilated(const PoolGeom& g, const T* x, int threads, Start start, Row row) {
  parallel_for(g.NC, grain_for(g.OH * g.OW * g.kh * g.kw + g.H * g.W), threads, [&](int64_t lo, int64_t hi) {
    std::vector<Idx> at(static_cast<size_t>(g.OW));
    for (int64_t p = lo; p < hi; ++p) {
      const T* xp = x + p * g.H * g.W;
      start(p);
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          T best = -std::numeric_limits<T>::infinity();
          Idx arg = -1;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t ih = oh * g.sh - g.ph + i * g.dh;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t iw = ow * g.sw - g.pw + j * g.dw;
              if (iw < 0 || iw >= g.W) continue;
              const T v = xp[ih * g.W + iw];
              if (v > best || v != v || arg < 0) {
                best = v;
                arg = static_cast<Idx>(ih * g.W + iw);
              }
            }
          }
          at[static_cast<size_t>(ow)] = arg;
        }
        row(p, oh, static_cast<const Idx*>(at.data()));
      }
    }
  });
}

template <typename T, typename Idx, typename Start, typename Row>
void max_pool_argmax(const PoolGeom& g, const T* x, int threads, Start start, Row row) {
  if (g.dilated()) max_pool_argmax_dilated<T, Idx>(g, x, threads, start, row);
  else max_pool_argmax_rows<T, Idx>(g, x, threads, start, row);
}

// The forward of a dilated max pool: the values at the argmax.
template <typename T>
void max_pool_fwd_dilated(const PoolGeom& g, const T* x, T* y, int threads) {
  max_pool_argmax<T, int64_t>(g, x, threads, [](int64_t) {}, [&](int64_t p, int64_t oh, const int64_t* at) {
    T* yr = y + (p * g.OH + oh) * g.OW;
    const T* xp = x + p * g.H * g.W;
    for (int64_t ow = 0; ow < g.OW; ++ow) yr[ow] = at[ow] >= 0 ? xp[at[ow]] : -std::numeric_limits<T>::infinity();
  });
}

// 2x2 windows that tile the input (stride 2, no padding or dilation, none
// past the edge: the usual pool of a CNN) hold every input element at most
// once, so dx is written once, window by window: no zero fill of the plane,
// no scatter, and branch-free selects over a row of windows, which the
// compiler vectorizes. Same first-maximum and NaN rules as max_pool_argmax.
bool tiles_2x2(const PoolGeom& g) {
  return g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && !g.dilated() &&
         2 * g.OH <= g.H && 2 * g.OW <= g.W;
}

template <typename T>
void max_pool_bwd_2x2(const PoolGeom& g, const T* x, const T* go, T* dx, int threads) {
  const int64_t H = g.H, W = g.W, OW = g.OW;
  parallel_for(g.NC, grain_for(2 * H * W), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      const T* xp = x + p * H * W;
      T* dp = dx + p * H * W;
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const T *x0 = xp + 2 * oh * W, *x1 = x0 + W;
        T *d0 = dp + 2 * oh * W, *d1 = d0 + W;
        const T* gr = go + (p * g.OH + oh) * OW;
#pragma omp simd
        for (int64_t ow = 0; ow < OW; ++ow) {
          const T a = x0[2 * ow], b = x0[2 * ow + 1], c = x1[2 * ow], d = x1[2 * ow + 1];
          T best = a;
          int at = 0;
          bool take = (b > best) | (b != b);
          best = take ? b : best;
          at = take ? 1 : at;
          take = (c > best) | (c != c);
          best = take ? c : best;
          at = take ? 2 : at;
          take = (d > best) | (d != d);
          at = take ? 3 : at;
          const T v = gr[ow];
          d0[2 * ow] = at == 0 ? v : T(0);
          d0[2 * ow + 1] = at == 1 ? v : T(0);
          d1[2 * ow] = at == 2 ? v : T(0);
          d1[2 * ow + 1] = at == 3 ? v : T(0);
        }
        if (W > 2 * OW) {  // an odd last column gets nothing
          d0[W - 1] = T(0);
          d1[W - 1] = T(0);
        }
      }
      std::fill(dp + 2 * g.OH * W, dp + H * W, T(0));  // nor does an odd last row
    }
  });
}

template <typename T, typename Idx>
void max_pool_bwd(const PoolGeom& g, const T* x, const T* go, T* dx, int threads) {
  if (tiles_2x2(g)) return max_pool_bwd_2x2<T>(g, x, go, dx, threads);
  max_pool_argmax<T, Idx>(
      g, x, threads, [&](int64_t p) { std::fill_n(dx + p * g.H * g.W, g.H * g.W, T(0)); },
      [&](int64_t p, int64_t oh, const Idx* at) {
        T* dp = dx + p * g.H * g.W;
        const T* gr = go + (p * g.OH + oh) * g.OW;
        for (int64_t ow = 0; ow < g.OW; ++ow)
          if (at[ow] >= 0) dp[at[ow]] += gr[ow];
      });
}

template <typename T, typename Idx>
void max_pool_indices(const PoolGeom& g, const T* x, int64_t* out, int threads) {
  max_pool_argmax<T, Idx>(g, x, threads, [](int64_t) {}, [&](int64_t p, int64_t oh, const Idx* at) {
    int64_t* o = out + (p * g.OH + oh) * g.OW;
    for (int64_t ow = 0; ow < g.OW; ++ow) o[ow] = static_cast<int64_t>(at[ow]);
  });
}

template <typename T>
void avg_pool_fwd(const PoolGeom& g, const T* x, T* y, int threads) {
  PoolPlan pl = pool_plan(g);
  for_rows(g, threads, [&](int64_t p, int64_t oh) {
    T* yr = y + (p * g.OH + oh) * g.OW;
    std::fill_n(yr, g.OW, T(0));
    for_window_rows(g, pl, x + p * g.H * g.W, oh, [&](const T* xr, Range r) {
#pragma omp simd simdlen(8)
      for (int64_t ow = r.lo; ow < r.hi; ++ow) yr[ow] += xr[ow * g.sw];
    });
    // 0/0 = NaN for an empty window, as in PyTorch.
    for (int64_t ow = 0; ow < g.OW; ++ow) yr[ow] /= static_cast<T>(pl.h.count[oh] * pl.w.count[ow]);
  });
}

template <typename T>
void avg_pool_bwd(const PoolGeom& g, const T* go, T* dx, int threads) {
  PoolPlan pl = pool_plan(g);
  parallel_for(g.NC, grain_for(g.OH * g.OW * g.kh * g.kw + g.H * g.W), threads, [&](int64_t lo, int64_t hi) {
    std::vector<T> share(static_cast<size_t>(g.OW));
    for (int64_t p = lo; p < hi; ++p) {
      T* dp = dx + p * g.H * g.W;
      std::fill_n(dp, g.H * g.W, T(0));
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const T* gr = go + (p * g.OH + oh) * g.OW;
        T* sp = share.data();
        for (int64_t ow = 0; ow < g.OW; ++ow)
          sp[ow] = gr[ow] / static_cast<T>(pl.h.count[oh] * pl.w.count[ow]);
        for_window_rows(g, pl, dp, oh, [&](T* dr, Range r) {
#pragma omp simd simdlen(8)
          for (int64_t ow = r.lo; ow < r.hi; ++ow) dr[ow * g.sw] += sp[ow];
        });
      }
    }
  });
}

template <bool IsMax>
void pool2d(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  PoolGeom g = pool_geom(c.input(0).shape(), out.shape(), c.attrs);
  dispatch_float(c.input(0).dtype(), c.op.name(), [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads);
    into<T>(out, c.num_threads, [&](T* y) {
      if constexpr (IsMax) {
        if (g.dilated()) max_pool_fwd_dilated<T>(g, x.template data<T>(), y, c.num_threads);
        else max_pool_fwd<T>(g, x.template data<T>(), y, c.num_threads);
      }
      else avg_pool_fwd<T>(g, x.template data<T>(), y, c.num_threads);
    });
  });
}

void max_pool2d_backward(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  PoolGeom g = pool_geom(out.shape(), c.input(1).shape(), c.attrs);
  dispatch_float(c.input(1).dtype(), "max_pool2d_backward", [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads), go = dense<T>(c.input(1), c.num_threads);
    into<T>(out, c.num_threads, [&](T* dx) {
      if (g.H * g.W < (int64_t{1} << 31))
        max_pool_bwd<T, int32_t>(g, x.template data<T>(), go.template data<T>(), dx, c.num_threads);
      else
        max_pool_bwd<T, int64_t>(g, x.template data<T>(), go.template data<T>(), dx, c.num_threads);
    });
  });
}

void max_pool2d_indices(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  PoolGeom g = pool_geom(c.input(0).shape(), out.shape(), c.attrs);
  dispatch_float(c.input(0).dtype(), "max_pool2d_indices", [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads);
    into<int64_t>(out, c.num_threads, [&](int64_t* y) {
      if (g.H * g.W < (int64_t{1} << 31)) max_pool_indices<T, int32_t>(g, x.template data<T>(), y, c.num_threads);
      else max_pool_indices<T, int64_t>(g, x.template data<T>(), y, c.num_threads);
    });
  });
}

void avg_pool2d_backward(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  PoolGeom g = pool_geom(out.shape(), c.input(1).shape(), c.attrs);
  dispatch_float(c.input(1).dtype(), "avg_pool2d_backward", [&]<typename T>() {
    Tensor go = dense<T>(c.input(1), c.num_threads);
    into<T>(out, c.num_threads, [&](T* dx) {
      avg_pool_bwd<T>(g, go.template data<T>(), dx, c.num_threads);
    });
  });
}

}  // namespace

void register_pool_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> floats = {DType::f32, DType::f64};
  r.add("max_pool2d", CPU, floats, pool2d<true>);
  r.add("avg_pool2d", CPU, floats, pool2d<false>);
  r.add("max_pool2d_backward", CPU, floats, max_pool2d_backward);
  r.add("max_pool2d_indices", CPU, floats, max_pool2d_indices);
  r.add("avg_pool2d_backward", CPU, floats, avg_pool2d_backward);
}

}  // namespace ndflow::cpu
