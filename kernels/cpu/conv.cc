// CPU kernels of conv2d and its backward ops (ops/conv.cc; pooling is in
// kernels/cpu/pool.cc). f32 convolutions run on oneDNN primitives; f64 ones
// (gradchecks), empty tensors and anything oneDNN declines run the direct
// loops below, which are also the tests' oracle for the f32 path.
//
// oneDNN primitive creation costs ~100 us, more than a small layer's
// compute, so plans (primitive + reorders) are cached per shape signature in
// a mutex-protected map. They run with a user-provided scratchpad, so one
// plan may run on several executor threads at once.
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
#include "kernels/cpu/window.h"

namespace ndflow::cpu {

namespace {

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

// ------------------------------------------------------------- oneDNN (f32)
// Tensors stay plain NCHW / OIHW. A convolution lets oneDNN pick its memory
// layouts (format_tag::any): its jit kernels want channel-blocked ones
// (nChw16c), which are 1.5-2x faster than the im2col+GEMM path that plain
// layouts get, and make the fused relu free. The plan then reorders inputs
// into those layouts and the output back, which costs a few percent.
// Measured on the 128 x 32 x 13 x 13 -> 64 layer: forward 2.7 ms vs 4.1,
// backward data 2.6 vs 5.1, backward weights 2.7 vs 4.1 (1 thread).

using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// A primitive with its reorders. Buffers are numbered: the caller's plain
// buffers first (in the order execute() takes them), then temporaries in
// the primitive's own layouts.
struct Plan {
  struct Step {
    dnnl::primitive prim;
    std::vector<std::pair<int, int>> args;  // (DNNL_ARG_*, buffer)
    memory::desc scratch;
  };
  std::vector<memory::desc> buffers;
  int num_user = 0;
  std::vector<Step> steps;
};
using PlanPtr = std::shared_ptr<const Plan>;

// Builds a plan around one main primitive: inputs are reordered before it,
// outputs after it.
class PlanBuilder {
 public:
  // A caller's buffer with plain layout `md`.
  int user(const memory::desc& md) {
    plan_->buffers.push_back(md);
    return plan_->num_user++;
  }
  // The buffer the main primitive reads for user buffer `u`, given the layout it wants.
  int input(int u, const memory::desc& want) {
    if (want == plan_->buffers[u]) return u;
    int t = temp(want);
    pre_.push_back(reorder(u, t));
    return t;
  }
  // The buffer the main primitive writes for user buffer `u`.
  int output(int u, const memory::desc& want) {
    if (want == plan_->buffers[u]) return u;
    int t = temp(want);
    post_.push_back(reorder(t, u));
    return t;
  }
  template <typename PD, typename P>
  PlanPtr finish(const PD& pd, std::vector<std::pair<int, int>> args) {
    for (auto& s : pre_) plan_->steps.push_back(std::move(s));
    plan_->steps.push_back({P(pd), std::move(args), pd.scratchpad_desc()});
    for (auto& s : post_) plan_->steps.push_back(std::move(s));
    return plan_;
  }

 private:
  int temp(const memory::desc& md) {
    plan_->buffers.push_back(md);
    return static_cast<int>(plan_->buffers.size()) - 1;
  }
  Plan::Step reorder(int from, int to) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::reorder::primitive_desc pd(cpu_engine(), plan_->buffers[from], cpu_engine(),
                                     plan_->buffers[to], attr);
    return {dnnl::reorder(pd), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}, pd.scratchpad_desc()};
  }
  std::shared_ptr<Plan> plan_ = std::make_shared<Plan>();
  std::vector<Plan::Step> pre_, post_;
};

struct KeyHash {
  size_t operator()(const Ints& k) const {
    uint64_t h = 1469598103934665603ULL;
    for (int64_t v : k) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ULL;
    return static_cast<size_t>(h);
  }
};

// Plans by shape signature. A null entry records that oneDNN declined the
// signature (the caller then runs the direct loops), so it is asked once.
class PlanCache {
 public:
  template <typename Make>
  PlanPtr get(const Ints& key, Make make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(key);
      if (it != map_.end()) return it->second;
    }
    PlanPtr made;  // created outside the lock: creation is the slow part
    try {
      made = make();
    } catch (const dnnl::error&) {
      // NOTE: a signature oneDNN has no implementation for runs the direct loops.
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (map_.size() >= kCapacity) map_.clear();  // bounded; shapes rarely vary this much
    return map_.emplace(key, made).first->second;
  }

 private:
  static constexpr size_t kCapacity = 512;
  std::mutex mu_;
  std::unordered_map<Ints, PlanPtr, KeyHash> map_;
};

PlanCache& plan_cache() {
  static PlanCache c;
  return c;
}

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

size_t align64(size_t n) { return (n + 63) / 64 * 64; }

// Runs the plan on the caller's buffers, given in the order of Plan::user calls.
void execute(const Plan& p, std::initializer_list<const void*> user, int threads) {
  // NOTE: oneDNN sizes its OpenMP team by omp_get_max_threads() of the calling
  // thread (see kernels/cpu/linalg.cc).
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
  // One allocation holds the temporaries, then the largest scratchpad.
  size_t temp_bytes = 0, scratch_bytes = 0;
  for (size_t i = static_cast<size_t>(p.num_user); i < p.buffers.size(); ++i)
    temp_bytes += align64(p.buffers[i].get_size());
  for (auto& s : p.steps) scratch_bytes = std::max(scratch_bytes, s.scratch.get_size());
  Tensor work;
  char* base = nullptr;
  if (temp_bytes + scratch_bytes > 0) {
    work = Tensor::empty({static_cast<int64_t>(temp_bytes + scratch_bytes)}, DType::u8);
    base = static_cast<char*>(work.raw_data());
  }
  std::vector<memory> mems;
  mems.reserve(p.buffers.size());
  auto u = user.begin();
  size_t off = 0;
  for (size_t i = 0; i < p.buffers.size(); ++i) {
    void* ptr = static_cast<int>(i) < p.num_user ? const_cast<void*>(*u++) : base + off;
    if (static_cast<int>(i) >= p.num_user) off += align64(p.buffers[i].get_size());
    mems.emplace_back(p.buffers[i], cpu_engine(), ptr);
  }
  dnnl::stream s(cpu_engine());
  for (auto& step : p.steps) {
    std::unordered_map<int, memory> args;
    for (auto [arg, buf] : step.args) args.emplace(arg, mems[static_cast<size_t>(buf)]);
    if (step.scratch.get_size() > 0)
      args.emplace(DNNL_ARG_SCRATCHPAD, memory(step.scratch, cpu_engine(), base + temp_bytes));
    step.prim.execute(s, args);
  }
  s.wait();
}

memory::desc f32_md(const memory::dims& d, Tag tag) { return memory::desc(d, memory::data_type::f32, tag); }

struct ConvMds {
  memory::desc src, wei, bias, dst;  // plain
  memory::dims strides, dilates, pad_l, pad_r;
  memory::desc any(const memory::desc& plain) const {
    return memory::desc(plain.dims(), memory::data_type::f32, Tag::any);
  }
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

// The forward descriptor (also the hint of the backward ones), in layouts of
// oneDNN's choice.
dnnl::convolution_forward::desc conv_fwd_desc(const ConvMds& m, bool bias) {
  auto pk = dnnl::prop_kind::forward_training;
  auto alg = dnnl::algorithm::convolution_direct;
  if (bias)
    return {pk, alg, m.any(m.src), m.any(m.wei), m.bias, m.any(m.dst), m.strides, m.dilates, m.pad_l, m.pad_r};
  return {pk, alg, m.any(m.src), m.any(m.wei), m.any(m.dst), m.strides, m.dilates, m.pad_l, m.pad_r};
}

Ints conv_key(int kind, const ConvGeom& g, bool bias, int threads) {
  return {kind, g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.OH, g.OW, g.G, g.sh, g.sw, g.ph, g.pw,
          g.dh, g.dw, bias, g.relu, threads};
}

// execute() takes x, w, [bias,] y.
PlanPtr conv_forward_plan(const ConvGeom& g, bool bias, int threads) {
  return plan_cache().get(conv_key(0, g, bias, threads), [&] {
    ConvMds m = conv_mds(g);
    dnnl::primitive_attr attr = user_scratchpad();
    if (g.relu) {
      dnnl::post_ops po;
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
      attr.set_post_ops(po);
    }
    dnnl::convolution_forward::primitive_desc pd(conv_fwd_desc(m, bias), attr, cpu_engine());
    PlanBuilder b;
    int x = b.user(m.src), w = b.user(m.wei), bi = bias ? b.user(m.bias) : -1, y = b.user(m.dst);
    std::vector<std::pair<int, int>> args{{DNNL_ARG_SRC, b.input(x, pd.src_desc())},
                                          {DNNL_ARG_WEIGHTS, b.input(w, pd.weights_desc())}};
    if (bias) args.emplace_back(DNNL_ARG_BIAS, bi);
    args.emplace_back(DNNL_ARG_DST, b.output(y, pd.dst_desc()));
    return b.finish<decltype(pd), dnnl::convolution_forward>(pd, std::move(args));
  });
}

// execute() takes grad, w, dx.
PlanPtr conv_backward_data_plan(const ConvGeom& g, int threads) {
  return plan_cache().get(conv_key(1, g, false, threads), [&] {
    ConvMds m = conv_mds(g);
    dnnl::convolution_forward::primitive_desc hint(conv_fwd_desc(m, false), cpu_engine());
    // NOTE: a blocked dx pads C up to the block (16): with few input channels
    // (a first layer) that is mostly padding and 5x slower than plain im2col.
    memory::desc dx_md = g.C < 16 ? m.src : m.any(m.src);
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, dx_md, m.any(m.wei),
                                            m.any(m.dst), m.strides, m.dilates, m.pad_l, m.pad_r);
    dnnl::convolution_backward_data::primitive_desc pd(d, user_scratchpad(), cpu_engine(), hint);
    PlanBuilder b;
    int go = b.user(m.dst), w = b.user(m.wei), dx = b.user(m.src);
    return b.finish<decltype(pd), dnnl::convolution_backward_data>(
        pd, {{DNNL_ARG_DIFF_DST, b.input(go, pd.diff_dst_desc())},
             {DNNL_ARG_WEIGHTS, b.input(w, pd.weights_desc())},
             {DNNL_ARG_DIFF_SRC, b.output(dx, pd.diff_src_desc())}});
  });
}

// execute() takes x, grad, dw.
PlanPtr conv_backward_weight_plan(const ConvGeom& g, int threads) {
  return plan_cache().get(conv_key(2, g, false, threads), [&] {
    ConvMds m = conv_mds(g);
    dnnl::convolution_forward::primitive_desc hint(conv_fwd_desc(m, false), cpu_engine());
    dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, m.any(m.src),
                                               m.any(m.wei), m.any(m.dst), m.strides, m.dilates,
                                               m.pad_l, m.pad_r);
    dnnl::convolution_backward_weights::primitive_desc pd(d, user_scratchpad(), cpu_engine(), hint);
    PlanBuilder b;
    int x = b.user(m.src), go = b.user(m.dst), dw = b.user(m.wei);
    return b.finish<decltype(pd), dnnl::convolution_backward_weights>(
        pd, {{DNNL_ARG_SRC, b.input(x, pd.src_desc())},
             {DNNL_ARG_DIFF_DST, b.input(go, pd.diff_dst_desc())},
             {DNNL_ARG_DIFF_WEIGHTS, b.output(dw, pd.diff_weights_desc())}});
  });
}

// --------------------------------------------------------------- kernels

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
          if (PlanPtr p = conv_forward_plan(g, has_bias, c.num_threads)) {
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
          if (PlanPtr p = conv_backward_data_plan(g, c.num_threads)) {
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
          if (PlanPtr p = conv_backward_weight_plan(g, c.num_threads)) {
            execute(*p, {x.data<T>(), go.data<T>(), dw}, c.num_threads);
            return;
          }
      }
      conv_backward_weight_ref<T>(g, x.template data<T>(), go.template data<T>(), dw, c.num_threads);
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
}

}  // namespace ndflow::cpu
