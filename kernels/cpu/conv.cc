// CPU kernels of conv2d, max_pool2d, avg_pool2d and their backward ops
// (ops/conv.cc). f32 runs on oneDNN primitives over plain NCHW / OIHW
// memory; f64 (gradchecks), empty tensors and anything oneDNN declines run
// the direct loops below, which are also the tests' oracle for the f32 path.
//
// oneDNN primitive creation costs ~100 us, more than a small layer's
// compute, so primitives are cached per shape signature (a mutex-protected
// map). They run with a user-provided scratchpad, so one primitive may run
// on several executor threads at once.
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <cmath>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/parallel.h"

namespace ndflow::cpu {

namespace {

using Ints = std::vector<int64_t>;

// Attributes as given to the op call: those left out take the OpDef's defaults.
Ints pair_attr(const Attrs& a, const char* name, int64_t fallback) {
  return a.get<Ints>(name, Ints{fallback, fallback});
}

// ------------------------------------------------------------- geometry

struct ConvGeom {
  int64_t N, C, H, W;     // input
  int64_t O, KH, KW;      // weight [O, Cg, KH, KW]
  int64_t OH, OW;         // output
  int64_t G, Cg, Og;      // groups, input and output channels per group
  int64_t sh, sw, ph, pw, dh, dw;
  bool relu = false;
};

ConvGeom conv_geom(const Shape& x, const Shape& w, const Shape& y, const Attrs& a) {
  Ints s = pair_attr(a, "stride", 1), p = pair_attr(a, "padding", 0), d = pair_attr(a, "dilation", 1);
  int64_t G = a.get<int64_t>("groups", 1);
  ConvGeom g{x[0], x[1], x[2], x[3], w[0], w[2], w[3], y[2], y[3], G, w[1], w[0] / G,
             s[0], s[1], p[0], p[1], d[0], d[1]};
  g.relu = a.get<std::string>("activation", "none") == "relu";
  return g;
}

// Output positions [lo, hi) of a spatial dim whose input position
// o*stride - pad + off lies inside [0, in).
struct Range {
  int64_t lo, hi;
};
Range valid_range(int64_t out, int64_t in, int64_t stride, int64_t pad, int64_t off) {
  int64_t a = pad - off, b = in - 1 + pad - off;
  int64_t lo = a > 0 ? (a + stride - 1) / stride : 0;
  int64_t hi = b < 0 ? 0 : std::min(out, b / stride + 1);
  return {std::min(lo, hi), hi};
}

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(work_per_item, 1));
}

// ------------------------------------------------- direct conv (reference)

// y[n,o] = bias[o] + sum over c in o's group, kh, kw of w[o,c,kh,kw] * x[n,c,ih,iw];
// one task per (n, o) plane.
template <typename T>
void conv_forward_ref(const ConvGeom& g, const T* x, const T* w, const T* b, T* y, int threads) {
  int64_t plane = g.OH * g.OW;
  parallel_for(g.N * g.O, grain_for(g.Cg * g.KH * g.KW * plane), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      int64_t n = t / g.O, o = t % g.O, grp = o / g.Og;
      T* yp = y + t * plane;
      std::fill_n(yp, plane, b ? b[o] : T(0));
      for (int64_t c = 0; c < g.Cg; ++c) {
        const T* xp = x + (n * g.C + grp * g.Cg + c) * g.H * g.W;
        const T* wp = w + (o * g.Cg + c) * g.KH * g.KW;
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          Range rh = valid_range(g.OH, g.H, g.sh, g.ph, kh * g.dh);
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            Range rw = valid_range(g.OW, g.W, g.sw, g.pw, kw * g.dw);
            T wv = wp[kh * g.KW + kw];
            for (int64_t oh = rh.lo; oh < rh.hi; ++oh) {
              const T* xr = xp + (oh * g.sh - g.ph + kh * g.dh) * g.W + kw * g.dw - g.pw;
              T* yr = yp + oh * g.OW;
              for (int64_t ow = rw.lo; ow < rw.hi; ++ow) yr[ow] += wv * xr[ow * g.sw];
            }
          }
        }
      }
      if (g.relu)
        for (int64_t i = 0; i < plane; ++i) yp[i] = yp[i] > T(0) ? yp[i] : T(0);
    }
  });
}

// dx[n,c] = sum over o in c's group of the transposed convolution of
// grad[n,o] with w[o,c]; one task per (n, c) plane, so no two write the same.
template <typename T>
void conv_backward_data_ref(const ConvGeom& g, const T* go, const T* w, T* dx, int threads) {
  int64_t plane = g.OH * g.OW;
  parallel_for(g.N * g.C, grain_for(g.Og * g.KH * g.KW * plane), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      int64_t n = t / g.C, c = t % g.C, grp = c / g.Cg, ci = c % g.Cg;
      T* dp = dx + t * g.H * g.W;
      std::fill_n(dp, g.H * g.W, T(0));
      for (int64_t o = grp * g.Og; o < (grp + 1) * g.Og; ++o) {
        const T* gp = go + (n * g.O + o) * plane;
        const T* wp = w + (o * g.Cg + ci) * g.KH * g.KW;
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          Range rh = valid_range(g.OH, g.H, g.sh, g.ph, kh * g.dh);
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            Range rw = valid_range(g.OW, g.W, g.sw, g.pw, kw * g.dw);
            T wv = wp[kh * g.KW + kw];
            for (int64_t oh = rh.lo; oh < rh.hi; ++oh) {
              T* dr = dp + (oh * g.sh - g.ph + kh * g.dh) * g.W + kw * g.dw - g.pw;
              const T* gr = gp + oh * g.OW;
              for (int64_t ow = rw.lo; ow < rw.hi; ++ow) dr[ow * g.sw] += wv * gr[ow];
            }
          }
        }
      }
    }
  });
}

// dw[o,c,kh,kw] = sum over n, oh, ow of grad[n,o,oh,ow] * x[n,c,ih,iw];
// one task per (o, c).
template <typename T>
void conv_backward_weight_ref(const ConvGeom& g, const T* x, const T* go, T* dw, int threads) {
  int64_t plane = g.OH * g.OW;
  parallel_for(g.O * g.Cg, grain_for(g.N * g.KH * g.KW * plane), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      int64_t o = t / g.Cg, ci = t % g.Cg, c = o / g.Og * g.Cg + ci;
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        Range rh = valid_range(g.OH, g.H, g.sh, g.ph, kh * g.dh);
        for (int64_t kw = 0; kw < g.KW; ++kw) {
          Range rw = valid_range(g.OW, g.W, g.sw, g.pw, kw * g.dw);
          T acc = 0;
          for (int64_t n = 0; n < g.N; ++n) {
            const T* xp = x + (n * g.C + c) * g.H * g.W;
            const T* gp = go + (n * g.O + o) * plane;
            for (int64_t oh = rh.lo; oh < rh.hi; ++oh) {
              const T* xr = xp + (oh * g.sh - g.ph + kh * g.dh) * g.W + kw * g.dw - g.pw;
              const T* gr = gp + oh * g.OW;
              for (int64_t ow = rw.lo; ow < rw.hi; ++ow) acc += gr[ow] * xr[ow * g.sw];
            }
          }
          dw[t * g.KH * g.KW + kh * g.KW + kw] = acc;
        }
      }
    }
  });
}

// ------------------------------------------------------- direct pooling
// One plane at a time, a row of outputs at a time: for each input row of the
// windows and each kernel column, one pass along the output row with a
// constant input stride, which the compiler vectorizes. Windows are
// separable, so the average's divisor is a row factor times a column factor.

struct PoolGeom {
  int64_t NC, H, W, OH, OW, kh, kw, sh, sw, ph, pw;
  bool include_pad = true;
};

PoolGeom pool_geom(const Shape& x, const Shape& y, const Attrs& a) {
  Ints k = a.get<Ints>("kernel_size"), s = a.get<Ints>("stride", Ints{}), p = pair_attr(a, "padding", 0);
  if (s.empty()) s = k;
  PoolGeom g{x[0] * x[1], x[2], x[3], y[2], y[3], k[0], k[1], s[0], s[1], p[0], p[1]};
  g.include_pad = a.get<bool>("count_include_pad", true);
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
  return {pool_axis(g.H, g.OH, g.kh, g.sh, g.ph, g.include_pad),
          pool_axis(g.W, g.OW, g.kw, g.sw, g.pw, g.include_pad)};
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
      for (int64_t ow = r.lo; ow < r.hi; ++ow) {
        T v = xr[ow * g.sw];
        yr[ow] = v > yr[ow] || v != v ? v : yr[ow];
      }
    });
  });
}

// Idx: i32 when a plane's indices fit, which lets the argmax loop vectorize
// (a float and its index in lanes of one width).
template <typename T, typename Idx>
void max_pool_bwd(const PoolGeom& g, const T* x, const T* go, T* dx, int threads) {
  PoolPlan pl = pool_plan(g);
  parallel_for(g.NC, grain_for(g.OH * g.OW * g.kh * g.kw + g.H * g.W), threads, [&](int64_t lo, int64_t hi) {
    std::vector<T> best(static_cast<size_t>(g.OW));
    std::vector<Idx> at(static_cast<size_t>(g.OW));
    for (int64_t p = lo; p < hi; ++p) {
      const T* xp = x + p * g.H * g.W;
      T* dp = dx + p * g.H * g.W;
      std::fill_n(dp, g.H * g.W, T(0));
      if (g.sh == g.kh && g.sw == g.kw && g.ph == 0 && g.pw == 0) {
        // Windows that tile the input (the usual 2x2, stride 2): each window
        // lies whole inside the input; a branch-free scan per window beats
        // short vector loops over 5-13 outputs a row.
        const T* gr = go + p * g.OH * g.OW;
        for (int64_t oh = 0; oh < g.OH; ++oh)
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            int64_t at0 = oh * g.kh * g.W + ow * g.kw, at = at0;
            T m = xp[at0];
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                int64_t k = at0 + i * g.W + j;
                T v = xp[k];
                bool take = v > m || v != v;
                m = take ? v : m;
                at = take ? k : at;
              }
            dp[at] += gr[oh * g.OW + ow];
          }
        continue;
      }
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        std::fill(best.begin(), best.end(), -std::numeric_limits<T>::infinity());
        std::fill(at.begin(), at.end(), Idx{-1});
        T* bp = best.data();
        Idx* ap = at.data();
        for_window_rows(g, pl, xp, oh, [&](const T* xr, Range r) {
          auto base = static_cast<Idx>(xr - xp);  // flat index of xr[0] in the plane
          auto step = static_cast<Idx>(g.sw);
          for (int64_t ow = r.lo; ow < r.hi; ++ow) {
            T v = xr[ow * g.sw];
            bool take = v > bp[ow] || v != v || ap[ow] < 0;
            bp[ow] = take ? v : bp[ow];
            ap[ow] = take ? static_cast<Idx>(base + static_cast<Idx>(ow) * step) : ap[ow];
          }
        });
        const T* gr = go + (p * g.OH + oh) * g.OW;
        for (int64_t ow = 0; ow < g.OW; ++ow)
          if (ap[ow] >= 0) dp[ap[ow]] += gr[ow];
      }
    }
  });
}

template <typename T>
void avg_pool_fwd(const PoolGeom& g, const T* x, T* y, int threads) {
  PoolPlan pl = pool_plan(g);
  for_rows(g, threads, [&](int64_t p, int64_t oh) {
    T* yr = y + (p * g.OH + oh) * g.OW;
    std::fill_n(yr, g.OW, T(0));
    for_window_rows(g, pl, x + p * g.H * g.W, oh, [&](const T* xr, Range r) {
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
          for (int64_t ow = r.lo; ow < r.hi; ++ow) dr[ow * g.sw] += sp[ow];
        });
      }
    }
  });
}

// ------------------------------------------------------------- oneDNN (f32)

using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// A ready primitive with the memory descriptors of its arguments
// (DNNL_ARG_* -> desc) and of its scratchpad.
struct Prim {
  dnnl::primitive prim;
  std::vector<std::pair<int, memory::desc>> args;
  memory::desc scratch;
};
using PrimPtr = std::shared_ptr<const Prim>;

struct KeyHash {
  size_t operator()(const Ints& k) const {
    uint64_t h = 1469598103934665603ULL;
    for (int64_t v : k) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ULL;
    return static_cast<size_t>(h);
  }
};

// Primitives by shape signature. A null entry records that oneDNN declined
// the signature (the caller then runs the direct loops), so it is asked once.
class PrimCache {
 public:
  template <typename Make>
  PrimPtr get(const Ints& key, Make make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    PrimPtr made;  // created outside the lock: creation is the slow part
    try {
      made = make();
    } catch (const dnnl::error&) {
      // NOTE: unsupported shapes fall back to the direct loops silently.
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kCapacity) map_.clear();  // bounded; shapes rarely vary this much
    return map_.emplace(key, made).first->second;
  }

 private:
  static constexpr size_t kCapacity = 512;
  std::mutex mu_;
  std::unordered_map<Ints, PrimPtr, KeyHash> map_;
};

PrimCache& prim_cache() {
  static PrimCache c;
  return c;
}

template <typename PD, typename P>
PrimPtr make_prim(const PD& pd, std::vector<std::pair<int, memory::desc>> args) {
  auto p = std::make_shared<Prim>();
  p->prim = P(pd);
  p->args = std::move(args);
  p->scratch = pd.scratchpad_desc();
  return p;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

// Runs `p` on the given buffers, in the order of p.args.
void execute(const Prim& p, std::initializer_list<const void*> ptrs, int threads) {
  // NOTE: oneDNN sizes its OpenMP team by omp_get_max_threads() of the calling
  // thread (see kernels/cpu/linalg.cc).
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
  std::unordered_map<int, memory> args;
  auto ptr = ptrs.begin();
  for (auto& [arg, md] : p.args) args.emplace(arg, memory(md, cpu_engine(), const_cast<void*>(*ptr++)));
  Tensor scratch;
  if (size_t bytes = p.scratch.get_size()) {
    scratch = Tensor::empty({static_cast<int64_t>(bytes)}, DType::u8);
    args.emplace(DNNL_ARG_SCRATCHPAD, memory(p.scratch, cpu_engine(), scratch.raw_data()));
  }
  dnnl::stream s(cpu_engine());
  p.prim.execute(s, args);
  s.wait();
}

memory::desc f32_md(const memory::dims& d, Tag tag) { return memory::desc(d, memory::data_type::f32, tag); }

struct ConvMds {
  memory::desc src, wei, bias, dst;
  memory::dims strides, dilates, pad_l, pad_r;
};
ConvMds conv_mds(const ConvGeom& g) {
  ConvMds m;
  m.src = f32_md({g.N, g.C, g.H, g.W}, Tag::nchw);
  // Grouped weights are 5-d [G, O/G, C/G, kh, kw]: the same bytes as [O, C/G, kh, kw].
  m.wei = g.G == 1 ? f32_md({g.O, g.Cg, g.KH, g.KW}, Tag::oihw)
                   : f32_md({g.G, g.Og, g.Cg, g.KH, g.KW}, Tag::goihw);
  m.bias = f32_md({g.O}, Tag::x);
  m.dst = f32_md({g.N, g.O, g.OH, g.OW}, Tag::nchw);
  m.strides = {g.sh, g.sw};
  m.dilates = {g.dh - 1, g.dw - 1};  // oneDNN counts the gaps
  m.pad_l = m.pad_r = {g.ph, g.pw};  // oneDNN's output size formula rounds down, like PyTorch's
  return m;
}

dnnl::convolution_forward::desc conv_fwd_desc(const ConvMds& m, bool bias) {
  auto pk = dnnl::prop_kind::forward_training;
  auto alg = dnnl::algorithm::convolution_direct;
  if (bias)
    return {pk, alg, m.src, m.wei, m.bias, m.dst, m.strides, m.dilates, m.pad_l, m.pad_r};
  return {pk, alg, m.src, m.wei, m.dst, m.strides, m.dilates, m.pad_l, m.pad_r};
}

Ints conv_key(int kind, const ConvGeom& g, bool bias, int threads) {
  return {kind, g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.OH, g.OW, g.G, g.sh, g.sw, g.ph, g.pw,
          g.dh, g.dw, bias, g.relu, threads};
}

PrimPtr conv_forward_prim(const ConvGeom& g, bool bias, int threads) {
  return prim_cache().get(conv_key(0, g, bias, threads), [&] {
    ConvMds m = conv_mds(g);
    dnnl::primitive_attr attr = user_scratchpad();
    if (g.relu) {
      dnnl::post_ops po;
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      attr.set_post_ops(po);
    }
    dnnl::convolution_forward::primitive_desc pd(conv_fwd_desc(m, bias), attr, cpu_engine());
    std::vector<std::pair<int, memory::desc>> args{{DNNL_ARG_SRC, m.src}, {DNNL_ARG_WEIGHTS, m.wei}};
    if (bias) args.emplace_back(DNNL_ARG_BIAS, m.bias);
    args.emplace_back(DNNL_ARG_DST, m.dst);
    return make_prim<decltype(pd), dnnl::convolution_forward>(pd, std::move(args));
  });
}

PrimPtr conv_backward_data_prim(const ConvGeom& g, int threads) {
  return prim_cache().get(conv_key(1, g, false, threads), [&] {
    ConvMds m = conv_mds(g);
    dnnl::convolution_forward::primitive_desc hint(conv_fwd_desc(m, false), cpu_engine());
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, m.src, m.wei, m.dst,
                                            m.strides, m.dilates, m.pad_l, m.pad_r);
    dnnl::convolution_backward_data::primitive_desc pd(d, user_scratchpad(), cpu_engine(), hint);
    return make_prim<decltype(pd), dnnl::convolution_backward_data>(
        pd, {{DNNL_ARG_DIFF_DST, m.dst}, {DNNL_ARG_WEIGHTS, m.wei}, {DNNL_ARG_DIFF_SRC, m.src}});
  });
}

PrimPtr conv_backward_weight_prim(const ConvGeom& g, int threads) {
  return prim_cache().get(conv_key(2, g, false, threads), [&] {
    ConvMds m = conv_mds(g);
    dnnl::convolution_forward::primitive_desc hint(conv_fwd_desc(m, false), cpu_engine());
    dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, m.src, m.wei, m.dst,
                                               m.strides, m.dilates, m.pad_l, m.pad_r);
    dnnl::convolution_backward_weights::primitive_desc pd(d, user_scratchpad(), cpu_engine(), hint);
    return make_prim<decltype(pd), dnnl::convolution_backward_weights>(
        pd, {{DNNL_ARG_SRC, m.src}, {DNNL_ARG_DIFF_DST, m.dst}, {DNNL_ARG_DIFF_WEIGHTS, m.wei}});
  });
}

// Pooling: ceil_mode may need more padding on the right than on the left to
// give OH windows.
struct PoolMds {
  memory::desc src, dst;
  memory::dims strides, kernel, pad_l, pad_r;
};
PoolMds pool_mds(const PoolGeom& g) {
  return {f32_md({g.NC, 1, g.H, g.W}, Tag::nchw), f32_md({g.NC, 1, g.OH, g.OW}, Tag::nchw),
          {g.sh, g.sw}, {g.kh, g.kw}, {g.ph, g.pw},
          {std::max(g.ph, (g.OH - 1) * g.sh + g.kh - g.H - g.ph),
           std::max(g.pw, (g.OW - 1) * g.sw + g.kw - g.W - g.pw)}};
}

// oneDNN divides an include-padding average by the full kernel area; PyTorch
// clips the window to the padded input first, which differs only when
// ceil_mode runs a window past the right padding. Those go to the direct loops.
bool onednn_pool_ok(const PoolGeom& g, bool is_max) {
  PoolMds m = pool_mds(g);
  return is_max || !g.include_pad || (m.pad_r[0] <= g.ph && m.pad_r[1] <= g.pw);
}

dnnl::algorithm pool_alg(const PoolGeom& g, bool is_max) {
  if (is_max) return dnnl::algorithm::pooling_max;
  return g.include_pad ? dnnl::algorithm::pooling_avg_include_padding
                       : dnnl::algorithm::pooling_avg_exclude_padding;
}

Ints pool_key(int kind, const PoolGeom& g, bool is_max, int threads) {
  return {kind, g.NC, g.H, g.W, g.OH, g.OW, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.include_pad,
          is_max, threads};
}

PrimPtr pool_forward_prim(const PoolGeom& g, bool is_max, int threads) {
  return prim_cache().get(pool_key(3, g, is_max, threads), [&] {
    PoolMds m = pool_mds(g);
    // forward_inference: max pooling then keeps no workspace (the backward
    // recomputes the argmax from x).
    dnnl::pooling_forward::desc d(dnnl::prop_kind::forward_inference, pool_alg(g, is_max), m.src,
                                  m.dst, m.strides, m.kernel, m.pad_l, m.pad_r);
    dnnl::pooling_forward::primitive_desc pd(d, user_scratchpad(), cpu_engine());
    return make_prim<decltype(pd), dnnl::pooling_forward>(pd, {{DNNL_ARG_SRC, m.src}, {DNNL_ARG_DST, m.dst}});
  });
}

PrimPtr avg_pool_backward_prim(const PoolGeom& g, int threads) {
  return prim_cache().get(pool_key(4, g, false, threads), [&] {
    PoolMds m = pool_mds(g);
    auto alg = pool_alg(g, false);
    dnnl::pooling_forward::desc fd(dnnl::prop_kind::forward_training, alg, m.src, m.dst, m.strides,
                                   m.kernel, m.pad_l, m.pad_r);
    dnnl::pooling_forward::primitive_desc hint(fd, cpu_engine());
    dnnl::pooling_backward::desc d(alg, m.src, m.dst, m.strides, m.kernel, m.pad_l, m.pad_r);
    dnnl::pooling_backward::primitive_desc pd(d, user_scratchpad(), cpu_engine(), hint);
    return make_prim<decltype(pd), dnnl::pooling_backward>(
        pd, {{DNNL_ARG_DIFF_DST, m.dst}, {DNNL_ARG_DIFF_SRC, m.src}});
  });
}

// --------------------------------------------------------------- kernels

// The loops and oneDNN read dense row-major buffers: other layouts are copied in.
template <typename T>
Tensor dense(const Tensor& t, int threads) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  unary_loop<T, T>(out, t, threads, [](T v) { return v; });
  return out;
}

// Runs body(T* dst) on a dense buffer for `out` and copies it out if `out` is not dense.
template <typename T, typename Body>
void into(Tensor& out, int threads, Body body) {
  Tensor dst = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
  body(dst.template data<T>());
  if (!dst.same(out)) unary_loop<T, T>(out, dst, threads, [](T v) { return v; });
}

bool any_empty(const ConvGeom& g) {
  return g.N * g.C * g.H * g.W * g.O * g.KH * g.KW * g.OH * g.OW == 0;
}

void conv2d(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  bool has_bias = c.inputs.size() == 3;
  ConvGeom g = conv_geom(c.input(0).shape(), c.input(1).shape(), out.shape(), c.attrs);
  dispatch_float(c.input(0).dtype(), "conv2d", [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads), w = dense<T>(c.input(1), c.num_threads);
    Tensor b = has_bias ? dense<T>(c.input(2), c.num_threads) : Tensor();
    const T* bp = has_bias ? b.template data<T>() : nullptr;
    into<T>(out, c.num_threads, [&](T* y) {
      if constexpr (std::is_same_v<T, float>) {
        if (!any_empty(g))
          if (PrimPtr p = conv_forward_prim(g, has_bias, c.num_threads)) {
            if (has_bias) execute(*p, {x.data<T>(), w.data<T>(), bp, y}, c.num_threads);
            else execute(*p, {x.data<T>(), w.data<T>(), y}, c.num_threads);
            return;
          }
      }
      conv_forward_ref<T>(g, x.template data<T>(), w.template data<T>(), bp, y, c.num_threads);
    });
  });
}

void conv2d_backward_data(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  ConvGeom g = conv_geom(out.shape(), c.input(1).shape(), c.input(0).shape(), c.attrs);
  dispatch_float(c.input(0).dtype(), "conv2d_backward_data", [&]<typename T>() {
    Tensor go = dense<T>(c.input(0), c.num_threads), w = dense<T>(c.input(1), c.num_threads);
    into<T>(out, c.num_threads, [&](T* dx) {
      if constexpr (std::is_same_v<T, float>) {
        if (!any_empty(g))
          if (PrimPtr p = conv_backward_data_prim(g, c.num_threads)) {
            execute(*p, {go.data<T>(), w.data<T>(), dx}, c.num_threads);
            return;
          }
      }
      conv_backward_data_ref<T>(g, go.template data<T>(), w.template data<T>(), dx, c.num_threads);
    });
  });
}

void conv2d_backward_weight(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  ConvGeom g = conv_geom(c.input(0).shape(), out.shape(), c.input(1).shape(), c.attrs);
  dispatch_float(c.input(0).dtype(), "conv2d_backward_weight", [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads), go = dense<T>(c.input(1), c.num_threads);
    into<T>(out, c.num_threads, [&](T* dw) {
      if constexpr (std::is_same_v<T, float>) {
        if (!any_empty(g))
          if (PrimPtr p = conv_backward_weight_prim(g, c.num_threads)) {
            execute(*p, {x.data<T>(), go.data<T>(), dw}, c.num_threads);
            return;
          }
      }
      conv_backward_weight_ref<T>(g, x.template data<T>(), go.template data<T>(), dw, c.num_threads);
    });
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
      if constexpr (std::is_same_v<T, float>) {
        if (x.numel() > 0 && onednn_pool_ok(g, IsMax) && !getenv("NDF_NO_DNNL_POOL"))
          if (PrimPtr p = pool_forward_prim(g, IsMax, c.num_threads)) {
            execute(*p, {x.data<T>(), y}, c.num_threads);
            return;
          }
      }
      if constexpr (IsMax) max_pool_fwd<T>(g, x.template data<T>(), y, c.num_threads);
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

void avg_pool2d_backward(KernelContext& c) {
  Tensor& out = c.output(0);
  if (out.numel() == 0) return;
  PoolGeom g = pool_geom(out.shape(), c.input(1).shape(), c.attrs);
  dispatch_float(c.input(1).dtype(), "avg_pool2d_backward", [&]<typename T>() {
    Tensor go = dense<T>(c.input(1), c.num_threads);
    into<T>(out, c.num_threads, [&](T* dx) {
      if constexpr (std::is_same_v<T, float>) {
        if (go.numel() > 0 && onednn_pool_ok(g, false) && !getenv("NDF_NO_DNNL_POOL"))
          if (PrimPtr p = avg_pool_backward_prim(g, c.num_threads)) {
            execute(*p, {go.data<T>(), dx}, c.num_threads);
            return;
          }
      }
      avg_pool_bwd<T>(g, go.template data<T>(), dx, c.num_threads);
    });
  });
}

}  // namespace

void register_conv_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> floats = {DType::f32, DType::f64};
  r.add("conv2d", CPU, floats, conv2d);
  r.add("conv2d_backward_data", CPU, floats, conv2d_backward_data);
  r.add("conv2d_backward_weight", CPU, floats, conv2d_backward_weight);
  r.add("max_pool2d", CPU, floats, pool2d<true>);
  r.add("avg_pool2d", CPU, floats, pool2d<false>);
  r.add("max_pool2d_backward", CPU, floats, max_pool2d_backward);
  r.add("avg_pool2d_backward", CPU, floats, avg_pool2d_backward);
}

}  // namespace ndflow::cpu
