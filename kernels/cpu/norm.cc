// CPU kernels of batch norm, layer norm and embedding (ops/norm.cc).
//
// Batch norm views x as [N, C, S]. With S > 1 each channel is N contiguous
// runs of S values and the per-channel work is parallel over channels; with
// S = 1 ([N, C] input) a channel is a strided column, so the reductions run
// over blocks of neighbouring channels, row by row, vectorized along the
// channels. Statistics are two-pass (mean, then the squared deviations) and
// accumulate in double whatever the dtype. Normalizing is one fused
// x * scale[c] + shift[c] pass. The backward needs two per-channel sums,
// sum(g) and sum(g * (x - mean)) (one pass), then one pass dx = g*k1 + x*k2 + k3.
//
// Layer norm works on dense rows; its backward recomputes each row's
// statistics, and the weight/bias gradients (sums over rows) are taken over
// column blocks, so no two threads write one value and the result does not
// depend on the thread count. embedding_backward likewise splits the columns.
#include <cmath>
#include <cstring>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/parallel.h"

namespace ndflow::cpu {

namespace {

using Ints = std::vector<int64_t>;
using Vec = std::vector<double>;

// A 1-d float tensor (any stride, f32 or f64) as doubles.
Vec read_vec(const Tensor& t) {
  Vec v(static_cast<size_t>(t.numel()));
  dispatch_float(t.dtype(), "read_vec", [&]<typename T>() {
    const T* p = t.data<T>();
    int64_t s = t.strides()[0];
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(p[static_cast<int64_t>(i) * s]);
  });
  return v;
}

// Writes doubles into a 1-d float tensor of any stride.
void write_vec(const Tensor& t, const Vec& v) {
  dispatch_float(t.dtype(), "write_vec", [&]<typename T>() {
    T* p = t.data<T>();
    int64_t s = t.strides()[0];
    for (size_t i = 0; i < v.size(); ++i) p[static_cast<int64_t>(i) * s] = static_cast<T>(v[i]);
  });
}

int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(work_per_item, 1));
}

// ---------------------------------------------------------------- batch norm

struct BnGeom {
  int64_t N, C, S;
  int64_t count() const { return N * S; }
};

BnGeom bn_geom(const Shape& x) {
  BnGeom g{x[0], x[1], 1};
  for (size_t d = 2; d < x.size(); ++d) g.S *= x[d];
  return g;
}

// Per-channel sums of f(a, b, c) over the N*S positions of channel c, where
// a and b are the values of two [N, C, S] arrays there (b may alias a).
template <typename T, typename F>
Vec channel_sums(const BnGeom& g, const T* a, const T* b, int threads, F f) {
  Vec out(static_cast<size_t>(g.C), 0.0);
  if (g.S == 1) {
    // Columns of an [N, C] matrix: blocks of channels, row by row.
    parallel_for(g.C, grain_for(g.N), threads, [&](int64_t lo, int64_t hi) {
      Vec acc(static_cast<size_t>(hi - lo), 0.0);
      for (int64_t n = 0; n < g.N; ++n) {
        const T* ar = a + n * g.C;
        const T* br = b + n * g.C;
        for (int64_t c = lo; c < hi; ++c) acc[static_cast<size_t>(c - lo)] += f(ar[c], br[c], c);
      }
      std::copy(acc.begin(), acc.end(), out.begin() + lo);
    });
    return out;
  }
  parallel_for(g.C, grain_for(g.N * g.S), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      double acc = 0;
      for (int64_t n = 0; n < g.N; ++n) {
        const T* ap = a + (n * g.C + c) * g.S;
        const T* bp = b + (n * g.C + c) * g.S;
        double part = 0;
#pragma omp simd reduction(+ : part)
        for (int64_t s = 0; s < g.S; ++s) part += f(ap[s], bp[s], c);
        acc += part;
      }
      out[static_cast<size_t>(c)] = acc;
    }
  });
  return out;
}

// sum(g) and sum(g * (x - mean[c])) per channel, in one pass.
template <typename T>
void grad_sums(const BnGeom& g, const T* gp, const T* xp, const Vec& mean, int threads, Vec& sum_g,
               Vec& sum_gxm) {
  sum_g.assign(static_cast<size_t>(g.C), 0.0);
  sum_gxm.assign(static_cast<size_t>(g.C), 0.0);
  if (g.S == 1) {
    parallel_for(g.C, grain_for(g.N), threads, [&](int64_t lo, int64_t hi) {
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t c = lo; c < hi; ++c) {
          double gv = static_cast<double>(gp[n * g.C + c]);
          sum_g[static_cast<size_t>(c)] += gv;
          double xm = static_cast<double>(xp[n * g.C + c]) - mean[static_cast<size_t>(c)];
          sum_gxm[static_cast<size_t>(c)] += gv * xm;
        }
    });
    return;
  }
  parallel_for(g.C, grain_for(g.N * g.S), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      double a = 0, b = 0, m = mean[static_cast<size_t>(c)];
      for (int64_t n = 0; n < g.N; ++n) {
        const T* gr = gp + (n * g.C + c) * g.S;
        const T* xr = xp + (n * g.C + c) * g.S;
        double pa = 0, pb = 0;
#pragma omp simd reduction(+ : pa, pb)
        for (int64_t s = 0; s < g.S; ++s) {
          double gv = static_cast<double>(gr[s]);
          pa += gv;
          pb += gv * (static_cast<double>(xr[s]) - m);
        }
        a += pa;
        b += pb;
      }
      sum_g[static_cast<size_t>(c)] = a;
      sum_gxm[static_cast<size_t>(c)] = b;
    }
  });
}

// Batch mean and biased variance per channel, two-pass.
template <typename T>
void batch_stats(const BnGeom& g, const T* x, int threads, Vec& mean, Vec& var) {
  double inv_n = 1.0 / static_cast<double>(g.count());
  mean = channel_sums<T>(g, x, x, threads, [](T v, T, int64_t) { return static_cast<double>(v); });
  for (double& m : mean) m *= inv_n;
  var = channel_sums<T>(g, x, x, threads, [&](T v, T, int64_t c) {
    double d = static_cast<double>(v) - mean[static_cast<size_t>(c)];
    return d * d;
  });
  for (double& v : var) v *= inv_n;
}

// out[n, c, s] = f(a[n, c, s], b[n, c, s], c) over [N, C, S].
template <typename T, typename F>
void channel_map(const BnGeom& g, const T* a, const T* b, T* out, int threads, F f) {
  if (g.S == 1) {
    parallel_for(g.N, grain_for(g.C), threads, [&](int64_t lo, int64_t hi) {
      for (int64_t n = lo; n < hi; ++n)
        for (int64_t c = 0; c < g.C; ++c) out[n * g.C + c] = f(a[n * g.C + c], b[n * g.C + c], c);
    });
    return;
  }
  parallel_for(g.N * g.C, grain_for(g.S), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      int64_t c = p % g.C;
      const T* ap = a + p * g.S;
      const T* bp = b + p * g.S;
      T* op = out + p * g.S;
      for (int64_t s = 0; s < g.S; ++s) op[s] = f(ap[s], bp[s], c);
    }
  });
}

// y = x * scale[c] + shift[c], scale = weight * invstd, shift = bias - mean * scale.
template <typename T>
void bn_normalize(const BnGeom& g, const T* x, T* y, const Vec& mean, const Vec& var, const Vec* w,
                  const Vec* b, double eps, int threads) {
  size_t C = static_cast<size_t>(g.C);
  std::vector<T> scale(C), shift(C);
  for (size_t c = 0; c < C; ++c) {
    double sc = 1.0 / std::sqrt(var[c] + eps) * (w ? (*w)[c] : 1.0);
    scale[c] = static_cast<T>(sc);
    shift[c] = static_cast<T>((b ? (*b)[c] : 0.0) - mean[c] * sc);
  }
  const T* sp = scale.data();
  const T* hp = shift.data();
  channel_map<T>(g, x, x, y, threads, [=](T v, T, int64_t c) { return v * sp[c] + hp[c]; });
}

void batch_norm(KernelContext& c) {
  Tensor& y = c.output(0);
  BnGeom g = bn_geom(c.input(0).shape());
  bool affine = c.inputs.size() == 3;
  double eps = c.attrs.get<double>("eps", 1e-5);
  Vec mean(static_cast<size_t>(g.C), 0.0), var(static_cast<size_t>(g.C), 0.0);
  dispatch_float(c.input(0).dtype(), "batch_norm", [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads);
    if (g.count() > 0) batch_stats<T>(g, x.template data<T>(), c.num_threads, mean, var);
    Vec w = affine ? read_vec(c.input(1)) : Vec(), b = affine ? read_vec(c.input(2)) : Vec();
    into<T>(y, c.num_threads, [&](T* yp) {
      bn_normalize<T>(g, x.template data<T>(), yp, mean, var, affine ? &w : nullptr, affine ? &b : nullptr, eps,
                      c.num_threads);
    });
  });
  if (g.count() == 0) {  // no values: NaN statistics, as the mean of nothing
    std::fill(mean.begin(), mean.end(), std::nan(""));
    std::fill(var.begin(), var.end(), std::nan(""));
  }
  write_vec(c.output(1), mean);
  write_vec(c.output(2), var);
}

void batch_norm_inference(KernelContext& c) {
  Tensor& y = c.output(0);
  BnGeom g = bn_geom(c.input(0).shape());
  bool affine = c.inputs.size() == 5;
  double eps = c.attrs.get<double>("eps", 1e-5);
  Vec mean = read_vec(c.input(1)), var = read_vec(c.input(2));
  Vec w = affine ? read_vec(c.input(3)) : Vec(), b = affine ? read_vec(c.input(4)) : Vec();
  if (y.numel() == 0) return;
  dispatch_float(c.input(0).dtype(), "batch_norm_inference", [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads);
    into<T>(y, c.num_threads, [&](T* yp) {
      bn_normalize<T>(g, x.template data<T>(), yp, mean, var, affine ? &w : nullptr, affine ? &b : nullptr, eps,
                      c.num_threads);
    });
  });
}

// (grad, x, mean, var, weight, [g_mean, g_var]) -> dx, dweight, dbias.
//   dx = w*invstd * (g - sum_g/n - xhat * sum_g_xhat/n) + g_mean/n + g_var * 2(x - mean)/n
// in training, dx = w*invstd * g otherwise; dweight = sum(g * xhat), dbias = sum(g).
void batch_norm_backward(KernelContext& c) {
  BnGeom g = bn_geom(c.input(1).shape());
  bool training = c.attrs.get<bool>("training", true);
  bool stat_grads = c.inputs.size() == 7;
  double eps = c.attrs.get<double>("eps", 1e-5);
  size_t C = static_cast<size_t>(g.C);
  Vec mean = read_vec(c.input(2)), var = read_vec(c.input(3)), w = read_vec(c.input(4));
  Vec sum_g(C, 0.0), sum_gxm(C, 0.0);
  dispatch_float(c.input(1).dtype(), "batch_norm_backward", [&]<typename T>() {
    Tensor go = dense<T>(c.input(0), c.num_threads), x = dense<T>(c.input(1), c.num_threads);
    const T *gp = go.template data<T>(), *xp = x.template data<T>();
    if (g.count() > 0) grad_sums<T>(g, gp, xp, mean, c.num_threads, sum_g, sum_gxm);
    std::vector<T> k1(C), k2(C), k3(C);
    double inv_n = g.count() > 0 ? 1.0 / static_cast<double>(g.count()) : 0.0;
    Vec gm = stat_grads ? read_vec(c.input(5)) : Vec(C, 0.0), gv = stat_grads ? read_vec(c.input(6)) : Vec(C, 0.0);
    for (size_t ch = 0; ch < C; ++ch) {
      double invstd = 1.0 / std::sqrt(var[ch] + eps), a1 = w[ch] * invstd, a2 = 0, a3 = 0;
      if (training) {
        a2 = -a1 * invstd * invstd * sum_gxm[ch] * inv_n + 2 * gv[ch] * inv_n;
        a3 = -a1 * sum_g[ch] * inv_n + gm[ch] * inv_n - mean[ch] * a2;
      }
      k1[ch] = static_cast<T>(a1);
      k2[ch] = static_cast<T>(a2);
      k3[ch] = static_cast<T>(a3);
    }
    if (c.output(0).numel() > 0)
      into<T>(c.output(0), c.num_threads, [&](T* dx) {
        const T *p1 = k1.data(), *p2 = k2.data(), *p3 = k3.data();
        channel_map<T>(g, gp, xp, dx, c.num_threads,
                       [=](T a, T v, int64_t ch) { return a * p1[ch] + v * p2[ch] + p3[ch]; });
      });
  });
  Vec dw(C);
  for (size_t ch = 0; ch < C; ++ch) dw[ch] = sum_gxm[ch] / std::sqrt(var[ch] + eps);
  write_vec(c.output(1), dw);
  write_vec(c.output(2), sum_g);
}

void batch_norm_update_stats(KernelContext& c) {
  BnGeom g = bn_geom(c.input(4).shape());
  double m = c.attrs.get<double>("momentum", 0.1);
  double n = static_cast<double>(g.count());
  NDF_CHECK(g.count() > 1, ValueError, "[batch_norm_update_stats] the unbiased variance needs more than one "
            "value per channel, got input shape ", shape_str(c.input(4).shape()));
  Vec rm = read_vec(c.input(0)), rv = read_vec(c.input(1)), mean = read_vec(c.input(2)), var = read_vec(c.input(3));
  for (size_t ch = 0; ch < rm.size(); ++ch) {
    rm[ch] = (1 - m) * rm[ch] + m * mean[ch];
    rv[ch] = (1 - m) * rv[ch] + m * var[ch] * n / (n - 1);
  }
  write_vec(c.input(0), rm);
  write_vec(c.input(1), rv);
}

// ---------------------------------------------------------------- layer norm

struct LnGeom {
  int64_t R, D;  // rows, values per row
};

LnGeom ln_geom(const Shape& x, const Attrs& a) {
  Ints ns = a.get<Ints>("normalized_shape");
  LnGeom g{1, 1};
  for (size_t d = 0; d < x.size(); ++d) (d + ns.size() < x.size() ? g.R : g.D) *= x[d];
  return g;
}

// Mean and 1/sqrt(var + eps) of one row, two-pass.
template <typename T>
std::pair<double, double> row_stats(const T* x, int64_t D, double eps) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < D; ++j) s += static_cast<double>(x[j]);
  double mean = s / static_cast<double>(D), q = 0;
#pragma omp simd reduction(+ : q)
  for (int64_t j = 0; j < D; ++j) {
    double d = static_cast<double>(x[j]) - mean;
    q += d * d;
  }
  return {mean, 1.0 / std::sqrt(q / static_cast<double>(D) + eps)};
}

// A [D] parameter as a dense T vector (ones when undefined).
template <typename T>
std::vector<T> param_vec(const KernelContext& c, size_t i, int64_t D, double fallback) {
  std::vector<T> v(static_cast<size_t>(D), static_cast<T>(fallback));
  if (i < c.inputs.size()) {
    Tensor p = dense<T>(c.input(i), 1);
    std::memcpy(v.data(), p.template data<T>(), v.size() * sizeof(T));
  }
  return v;
}

void layer_norm(KernelContext& c) {
  Tensor& y = c.output(0);
  if (y.numel() == 0) return;
  LnGeom g = ln_geom(c.input(0).shape(), c.attrs);
  double eps = c.attrs.get<double>("eps", 1e-5);
  bool affine = c.inputs.size() == 3;
  dispatch_float(c.input(0).dtype(), "layer_norm", [&]<typename T>() {
    Tensor x = dense<T>(c.input(0), c.num_threads);
    std::vector<T> w = param_vec<T>(c, 1, g.D, 1.0), b = param_vec<T>(c, 2, g.D, 0.0);
    const T* xp = x.template data<T>();
    into<T>(y, c.num_threads, [&](T* yp) {
      parallel_for(g.R, grain_for(g.D), c.num_threads, [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
          const T* xr = xp + r * g.D;
          T* yr = yp + r * g.D;
          auto [mean, rstd] = row_stats(xr, g.D, eps);
          T m = static_cast<T>(mean), s = static_cast<T>(rstd);
          if (affine)
            for (int64_t j = 0; j < g.D; ++j) yr[j] = (xr[j] - m) * s * w[j] + b[j];
          else
            for (int64_t j = 0; j < g.D; ++j) yr[j] = (xr[j] - m) * s;
        }
      });
    });
  });
}

// (grad, x, [weight]) -> dx, dweight, dbias:
//   dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * weight;
//   dweight = sum over rows of g * xhat, dbias = sum over rows of g.
void layer_norm_backward(KernelContext& c) {
  LnGeom g = ln_geom(c.input(1).shape(), c.attrs);
  double eps = c.attrs.get<double>("eps", 1e-5);
  dispatch_float(c.input(1).dtype(), "layer_norm_backward", [&]<typename T>() {
    Tensor go = dense<T>(c.input(0), c.num_threads), x = dense<T>(c.input(1), c.num_threads);
    const T *gp = go.template data<T>(), *xp = x.template data<T>();
    std::vector<T> w = param_vec<T>(c, 2, g.D, 1.0);
    std::vector<T> means(static_cast<size_t>(g.R)), rstds(static_cast<size_t>(g.R));
    into<T>(c.output(0), c.num_threads, [&](T* dx) {
      if (g.R * g.D == 0) return;
      double inv_d = 1.0 / static_cast<double>(g.D);
      parallel_for(g.R, grain_for(g.D), c.num_threads, [&](int64_t lo, int64_t hi) {
        for (int64_t r = lo; r < hi; ++r) {
          const T *xr = xp + r * g.D, *gr = gp + r * g.D;
          T* dr = dx + r * g.D;
          auto [mean, rstd] = row_stats(xr, g.D, eps);
          T m = static_cast<T>(mean), s = static_cast<T>(rstd);
          means[static_cast<size_t>(r)] = m;
          rstds[static_cast<size_t>(r)] = s;
          double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
          for (int64_t j = 0; j < g.D; ++j) {
            T gw = gr[j] * w[j];
            a += static_cast<double>(gw);
            b += static_cast<double>(gw * ((xr[j] - m) * s));
          }
          T ma = static_cast<T>(a * inv_d), mb = static_cast<T>(b * inv_d);
          for (int64_t j = 0; j < g.D; ++j) dr[j] = s * (gr[j] * w[j] - ma - (xr[j] - m) * s * mb);
        }
      });
    });
    Tensor& dw = c.output(1);
    Tensor& db = c.output(2);
    into<T>(dw, c.num_threads, [&](T* dwp) {
      into<T>(db, c.num_threads, [&](T* dbp) {
        parallel_for(g.D, grain_for(g.R), c.num_threads, [&](int64_t lo, int64_t hi) {
          Vec aw(static_cast<size_t>(hi - lo), 0.0), ab(static_cast<size_t>(hi - lo), 0.0);
          for (int64_t r = 0; r < g.R; ++r) {
            const T *xr = xp + r * g.D, *gr = gp + r * g.D;
            T m = means[static_cast<size_t>(r)], s = rstds[static_cast<size_t>(r)];
            for (int64_t j = lo; j < hi; ++j) {
              aw[static_cast<size_t>(j - lo)] += static_cast<double>(gr[j] * ((xr[j] - m) * s));
              ab[static_cast<size_t>(j - lo)] += static_cast<double>(gr[j]);
            }
          }
          for (int64_t j = lo; j < hi; ++j) {
            dwp[j] = static_cast<T>(aw[static_cast<size_t>(j - lo)]);
            dbp[j] = static_cast<T>(ab[static_cast<size_t>(j - lo)]);
          }
        });
      });
    });
  });
}

// ----------------------------------------------------------------- embedding

// The indices as int64, each checked against [0, V).
Ints read_indices(const Tensor& index, int64_t V, const std::string& op, const Shape& weight_shape) {
  Ints v(static_cast<size_t>(index.numel()));
  auto read = [&]<typename I>() {
    Tensor d = dense<I>(index, 1);
    const I* p = d.template data<I>();
    for (size_t i = 0; i < v.size(); ++i) {
      int64_t k = static_cast<int64_t>(p[i]);
      if (k < 0 || k >= V)
        fail<IndexError>("[", op, "] index ", k, " at position ", i, " is out of range for ", V,
                         " embeddings (valid: ", V > 0 ? "0.." + std::to_string(V - 1) : std::string("none"),
                         "; weight shape ", shape_str(weight_shape), ")");
      v[i] = k;
    }
  };
  if (index.dtype() == DType::i32) read.template operator()<int32_t>();
  else if (index.dtype() == DType::i64) read.template operator()<int64_t>();
  else fail<TypeError>("[", op, "] indices must be i32 or i64, got ", dtype_name(index.dtype()));
  return v;
}

void embedding(KernelContext& c) {
  const Tensor& weight = c.input(0);
  int64_t V = weight.shape()[0], D = weight.shape()[1];
  Ints idx = read_indices(c.input(1), V, "embedding", weight.shape());
  Tensor& y = c.output(0);
  if (y.numel() == 0) return;
  dispatch_float(weight.dtype(), "embedding", [&]<typename T>() {
    Tensor w = dense<T>(weight, c.num_threads);
    const T* wp = w.template data<T>();
    into<T>(y, c.num_threads, [&](T* yp) {
      parallel_for(static_cast<int64_t>(idx.size()), grain_for(D), c.num_threads, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
          std::memcpy(yp + i * D, wp + idx[static_cast<size_t>(i)] * D, static_cast<size_t>(D) * sizeof(T));
      });
    });
  });
}

void embedding_backward(KernelContext& c) {
  Tensor& out = c.output(0);
  int64_t V = out.shape()[0], D = out.shape()[1];
  int64_t pad = c.attrs.get<int64_t>("padding_idx", -1);
  Ints idx = read_indices(c.input(1), V, "embedding_backward", out.shape());
  int64_t M = static_cast<int64_t>(idx.size());
  dispatch_float(c.input(0).dtype(), "embedding_backward", [&]<typename T>() {
    Tensor go = dense<T>(c.input(0), c.num_threads);
    const T* gp = go.template data<T>();
    into<T>(out, c.num_threads, [&](T* op) {
      std::fill_n(op, V * D, T(0));
      parallel_for(D, grain_for(M), c.num_threads, [&](int64_t lo, int64_t hi) {
        for (int64_t i = 0; i < M; ++i) {
          int64_t k = idx[static_cast<size_t>(i)];
          if (k == pad) continue;
          T* dst = op + k * D;
          const T* src = gp + i * D;
          for (int64_t j = lo; j < hi; ++j) dst[j] += src[j];
        }
      });
    });
  });
}

}  // namespace

void register_norm_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> floats = {DType::f32, DType::f64};
  r.add("batch_norm", CPU, floats, batch_norm);
  r.add("batch_norm_inference", CPU, floats, batch_norm_inference);
  r.add("batch_norm_backward", CPU, floats, batch_norm_backward);
  r.add("batch_norm_update_stats", CPU, floats, batch_norm_update_stats);
  r.add("layer_norm", CPU, floats, layer_norm);
  r.add("layer_norm_backward", CPU, floats, layer_norm_backward);
  r.add("embedding", CPU, floats, embedding);
  r.add("embedding_backward", CPU, floats, embedding_backward);
}

}  // namespace ndflow::cpu
