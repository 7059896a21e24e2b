// CPU kernels of softmax, log_softmax, cross_entropy and their backward ops
// (ops/nn.cc). A tensor is viewed as [outer, L, inner] around the reduced
// axis. When the axis is innermost, each row is contiguous: long rows are
// vectorized along the row; short rows (MNIST's 10 classes) a block at a
// time, because the epilogues of a vectorized reduction cost more than ten
// elements: max and sum run scalar per row and exp runs vectorized over the
// whole block. Otherwise blocks of up to kColBlock neighbouring columns are
// processed together and the loops vectorize across columns. All are parallel
// over rows/blocks for large inputs, and numerically stable: exponents are
// taken of x - max(x) <= 0.
#include <bit>
#include <cmath>
#include <limits>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/parallel.h"

namespace ndflow::cpu {

namespace {

// e^x in f32 without a libm call, so that the loops around it vectorize
// (glibc's vector exp is only declared under -ffast-math). Cephes' expf:
// x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial, 2^n built in
// the exponent bits; about 1.4 ulp. Below -87.33 the result is flushed to 0
// (e^-87.33 is the smallest normal float; softmax never needs less).
inline float exp_f32(float x) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  constexpr float kMin = -87.33f, kMax = 88.7228391f;  // ln(FLT_MAX)
  float xc = std::min(std::max(x, kMin), kMax);
  float t = xc * 1.44269504088896341f + kMagic;
  float n = t - kMagic;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // n is in [-126, 128]; 2^128 is not a float, so that case scales by 2^127 * 2.
  auto ni = static_cast<int32_t>(std::bit_cast<uint32_t>(t) - std::bit_cast<uint32_t>(kMagic));
  float twice = ni > 127 ? 2.0f : 1.0f;
  ni = std::min(ni, int32_t{127});
  float y = p * std::bit_cast<float>(static_cast<uint32_t>(ni + 127) << 23) * twice;
  y = x < kMin ? 0.0f : y;
  y = x > kMax ? std::numeric_limits<float>::infinity() : y;
  return x != x ? x : y;
}

template <typename T>
inline T exp_t(T x) {
  if constexpr (std::is_same_v<T, float>) return exp_f32(x);
  else return std::exp(x);
}

// Columns processed together when the reduced axis is not innermost.
constexpr int64_t kColBlock = 256;

struct AxisGeom {
  int64_t outer = 1, L = 1, inner = 1;
};
AxisGeom axis_geom(const Shape& s, int64_t axis) {
  AxisGeom g;
  for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d) {
    if (d < axis) g.outer *= s[d];
    else if (d == axis) g.L = s[d];
    else g.inner *= s[d];
  }
  return g;
}

// Rows shorter than this are processed a block of kBlockElems elements at a time.
constexpr int64_t kShortRow = 64, kBlockElems = 2048;

// Calls rows(r0, nr) for blocks of rows of an innermost-axis reduction: one
// row per call when rows are long.
template <typename F>
void for_row_blocks(int64_t nrows, int64_t L, int threads, F rows) {
  int64_t per = L >= kShortRow ? 1 : std::max<int64_t>(1, kBlockElems / std::max<int64_t>(L, 1));
  int64_t nblk = (nrows + per - 1) / per;
  parallel_for(nblk, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(per * L, 1)), threads,
               [&](int64_t lo, int64_t hi) {
                 for (int64_t b = lo; b < hi; ++b) rows(b * per, std::min(per, nrows - b * per));
               });
}

// Calls cols(base, width) for every block of columns of a strided reduction;
// element l of column j of the block is at base + l * inner + j.
template <typename F>
void for_col_blocks(const AxisGeom& g, int threads, F cols) {
  int64_t nblk = (g.inner + kColBlock - 1) / kColBlock;
  int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(g.L * kColBlock, 1));
  parallel_for(g.outer * nblk, grain, threads, [&](int64_t lo, int64_t hi) {
    for (int64_t u = lo; u < hi; ++u) {
      int64_t o = u / nblk, j0 = (u % nblk) * kColBlock;
      cols(o * g.L * g.inner + j0, std::min(kColBlock, g.inner - j0));
    }
  });
}

// ------------------------------------------------------------- helpers

// sum over i < n of term(i): vectorized for long rows, a plain loop for short ones.
template <typename T, typename F>
T sum_of(int64_t n, F term) {
  T s = 0;
  if (n >= kShortRow) {
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += term(i);
  } else {
    for (int64_t i = 0; i < n; ++i) s += term(i);
  }
  return s;
}

template <typename T>
T max_of(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  if (n >= kShortRow) {
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  } else {
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  }
  return m;
}

// For rows r < nr of length n at x (row stride n): m[r] = max, s[r] =
// sum(exp(x - m)), and e (if given) = exp(x - m). Short rows need e as
// scratch; `tmp` (kBlockElems) serves when the caller does not want it.
template <typename T>
void rows_max_sum_exp(const T* x, int64_t nr, int64_t n, T* m, T* s, T* e) {
  if (n >= kShortRow) {
    for (int64_t r = 0; r < nr; ++r) {
      const T* xr = x + r * n;
      T mr = m[r] = max_of(xr, n);
      if (e) {
        T* er = e + r * n;
        s[r] = sum_of<T>(n, [&](int64_t i) { return er[i] = exp_t(xr[i] - mr); });
      } else {
        s[r] = sum_of<T>(n, [&](int64_t i) { return exp_t(xr[i] - mr); });
      }
    }
    return;
  }
  T tmp[kBlockElems];
  T* buf = e ? e : tmp;
  for (int64_t r = 0; r < nr; ++r) {
    T mr = m[r] = max_of(x + r * n, n);
    for (int64_t i = 0; i < n; ++i) buf[r * n + i] = x[r * n + i] - mr;
  }
#pragma omp simd
  for (int64_t k = 0; k < nr * n; ++k) buf[k] = exp_t(buf[k]);
  for (int64_t r = 0; r < nr; ++r) s[r] = sum_of<T>(n, [&](int64_t i) { return buf[r * n + i]; });
}

// Per column j < w of a block: m[j] = max over l of x[l*stride + j] and
// s[j] = sum over l of exp(x - m[j]).
template <typename T>
void cols_max_sum_exp(const T* x, int64_t L, int64_t stride, int64_t w, T* m, T* s) {
  std::fill_n(m, w, -std::numeric_limits<T>::infinity());
  std::fill_n(s, w, T(0));
  for (int64_t l = 0; l < L; ++l) {
    const T* xl = x + l * stride;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) m[j] = xl[j] > m[j] ? xl[j] : m[j];
  }
  for (int64_t l = 0; l < L; ++l) {
    const T* xl = x + l * stride;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) s[j] += exp_t(xl[j] - m[j]);
  }
}

// ------------------------------------------------------------- forward

// Rows r < nr of length n at x -> y.
template <typename T, bool Log>
void softmax_rows(const T* x, T* y, int64_t nr, int64_t n) {
  T m[kBlockElems], s[kBlockElems];
  rows_max_sum_exp(x, nr, n, m, s, Log ? nullptr : y);
  for (int64_t r = 0; r < nr; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    if constexpr (Log) {
      // (x - m) - log(s), not x - (m + log s): the latter rounds log(s) to the
      // precision of m, which loses digits when |m| is large.
      T mr = m[r], log_s = std::log(s[r]);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mr) - log_s;
    } else {
      T inv = T(1) / s[r];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    }
  }
}

template <typename T, bool Log>
void softmax_cols(const T* x, T* y, int64_t L, int64_t stride, int64_t w) {
  T m[kColBlock], s[kColBlock];
  cols_max_sum_exp(x, L, stride, w, m, s);
  for (int64_t j = 0; j < w; ++j) s[j] = Log ? std::log(s[j]) : T(1) / s[j];
  for (int64_t l = 0; l < L; ++l) {
    const T* xl = x + l * stride;
    T* yl = y + l * stride;
    if constexpr (Log) {
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) yl[j] = (xl[j] - m[j]) - s[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) yl[j] = exp_t(xl[j] - m[j]) * s[j];
    }
  }
}

// ------------------------------------------------------------ backward
// softmax:     dx = y * (g - sum(g * y))
// log_softmax: dx = g - exp(y) * sum(g)

// Rows r < nr of length n.
template <typename T, bool Log>
void backward_rows(const T* y, const T* g, T* dx, int64_t nr, int64_t n) {
  if constexpr (Log) {
    // exp(y) first, over the whole block (vectorized even for short rows).
#pragma omp simd
    for (int64_t k = 0; k < nr * n; ++k) dx[k] = exp_t(y[k]);
  }
  for (int64_t r = 0; r < nr; ++r) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* dr = dx + r * n;
    if constexpr (Log) {
      T s = sum_of<T>(n, [&](int64_t i) { return gr[i]; });
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) dr[i] = gr[i] - dr[i] * s;
    } else {
      T s = sum_of<T>(n, [&](int64_t i) { return gr[i] * yr[i]; });
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) dr[i] = yr[i] * (gr[i] - s);
    }
  }
}

template <typename T, bool Log>
void backward_cols(const T* y, const T* g, T* dx, int64_t L, int64_t stride, int64_t w) {
  T s[kColBlock];
  std::fill_n(s, w, T(0));
  for (int64_t l = 0; l < L; ++l) {
    const T* yl = y + l * stride;
    const T* gl = g + l * stride;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) s[j] += Log ? gl[j] : gl[j] * yl[j];
  }
  for (int64_t l = 0; l < L; ++l) {
    const T* yl = y + l * stride;
    const T* gl = g + l * stride;
    T* dl = dx + l * stride;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j)
      dl[j] = Log ? gl[j] - exp_t(yl[j]) * s[j] : yl[j] * (gl[j] - s[j]);
  }
}

// ------------------------------------------------------------- kernels

// The kernels run on dense row-major buffers (dense() in loops.h); a result
// computed apart from a non-dense `out` is copied into it.
template <typename T>
void write_back(const Tensor& result, Tensor& out, int threads) {
  if (!result.same(out)) unary_loop<T, T>(out, result, threads, [](T v) { return v; });
}

template <bool Log>
void softmax_forward(KernelContext& c) {
  const Tensor& x_in = c.input(0);
  Tensor& out = c.output(0);
  int64_t axis = normalize_axis(c.attrs.get<int64_t>("axis", -1), x_in.rank(), c.op.name());
  if (out.numel() == 0) return;
  dispatch_float(x_in.dtype(), c.op.name(), [&]<typename T>() {
    Tensor x = dense<T>(x_in, c.num_threads);
    Tensor y = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
    AxisGeom g = axis_geom(x.shape(), axis);
    const T* xp = x.template data<T>();
    T* yp = y.template data<T>();
    if (g.inner == 1) {
      for_row_blocks(g.outer, g.L, c.num_threads, [&](int64_t r0, int64_t nr) {
        softmax_rows<T, Log>(xp + r0 * g.L, yp + r0 * g.L, nr, g.L);
      });
    } else {
      for_col_blocks(g, c.num_threads, [&](int64_t base, int64_t w) {
        softmax_cols<T, Log>(xp + base, yp + base, g.L, g.inner, w);
      });
    }
    write_back<T>(y, out, c.num_threads);
  });
}

template <bool Log>
void softmax_backward(KernelContext& c) {
  const Tensor& y_in = c.input(0);
  const Tensor& g_in = c.input(1);
  Tensor& out = c.output(0);
  int64_t axis = normalize_axis(c.attrs.get<int64_t>("axis", -1), y_in.rank(), c.op.name());
  if (out.numel() == 0) return;
  dispatch_float(y_in.dtype(), c.op.name(), [&]<typename T>() {
    Tensor y = dense<T>(y_in, c.num_threads), g = dense<T>(g_in, c.num_threads);
    Tensor dx = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
    AxisGeom geo = axis_geom(y.shape(), axis);
    const T* yp = y.template data<T>();
    const T* gp = g.template data<T>();
    T* dp = dx.template data<T>();
    if (geo.inner == 1) {
      for_row_blocks(geo.outer, geo.L, c.num_threads, [&](int64_t r0, int64_t nr) {
        int64_t o = r0 * geo.L;
        backward_rows<T, Log>(yp + o, gp + o, dp + o, nr, geo.L);
      });
    } else {
      for_col_blocks(geo, c.num_threads, [&](int64_t base, int64_t w) {
        backward_cols<T, Log>(yp + base, gp + base, dp + base, geo.L, geo.inner, w);
      });
    }
    write_back<T>(dx, out, c.num_threads);
  });
}

// ------------------------------------------------------- cross_entropy
// logits [N, C, inner] (inner = product of the trailing dims), labels
// [N, inner]. Per sample: loss = log(sum(exp(x - m))) + m - x[label], and the
// gradient (softmax - onehot) * weight, where weight is the output gradient
// (divided by the sample count for 'mean').

enum class Red { Mean, Sum, None };
Red reduction_of(const Attrs& a) {
  std::string r = a.get<std::string>("reduction", "mean");
  return r == "sum" ? Red::Sum : r == "none" ? Red::None : Red::Mean;
}

template <typename Fn>
void dispatch_label(DType t, Fn&& fn) {
  switch (t) {
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    default: fail<TypeError>("[cross_entropy] labels must be i32, i64 or u8, got ", dtype_name(t));
  }
}

struct CeGeom {
  int64_t N = 1, C = 1, inner = 1;
  int64_t samples() const { return N * inner; }
};
CeGeom ce_geom(const Shape& logits) {
  if (logits.size() == 1) return {1, logits[0], 1};
  CeGeom g{logits[0], logits[1], 1};
  for (size_t d = 2; d < logits.size(); ++d) g.inner *= logits[d];
  return g;
}

template <typename L>
int64_t checked_label(const L* labels, int64_t i, int64_t C) {
  auto v = static_cast<int64_t>(labels[i]);
  if (v < 0 || v >= C) [[unlikely]]
    fail<IndexError>("[cross_entropy] label ", v, " at flat position ", i, " is out of range for ",
                     C, " classes (valid: 0..", C - 1, ")");
  return v;
}

void cross_entropy_forward(KernelContext& c) {
  const Tensor& x_in = c.input(0);
  Tensor& out = c.output(0);
  Red red = reduction_of(c.attrs);
  CeGeom g = ce_geom(x_in.shape());
  dispatch_float(x_in.dtype(), "cross_entropy", [&]<typename T>() {
    dispatch_label(c.input(1).dtype(), [&]<typename L>() {
      Tensor x = dense<T>(x_in, c.num_threads), y = dense<L>(c.input(1), c.num_threads);
      // Per-sample losses go straight to a 'none' output, else to scratch.
      Tensor loss = red == Red::None && out.is_contiguous()
                        ? out : Tensor::empty({g.samples()}, x.dtype(), x.device());
      const T* xp = x.template data<T>();
      const L* yp = y.template data<L>();
      T* lp = loss.template data<T>();
      if (g.C == 0 && g.samples() > 0)
        fail<IndexError>("[cross_entropy] logits of shape ", shape_str(x.shape()),
                         " have no classes, so no label is valid");
      if (g.inner == 1) {
        for_row_blocks(g.N, g.C, c.num_threads, [&](int64_t r0, int64_t nr) {
          T m[kBlockElems], s[kBlockElems];
          for (int64_t r = 0; r < nr; ++r) checked_label(yp, r0 + r, g.C);
          rows_max_sum_exp(xp + r0 * g.C, nr, g.C, m, s, static_cast<T*>(nullptr));
          for (int64_t r = 0; r < nr; ++r)
            lp[r0 + r] = (m[r] - xp[(r0 + r) * g.C + static_cast<int64_t>(yp[r0 + r])]) + std::log(s[r]);
        });
      } else {
        for_col_blocks(AxisGeom{g.N, g.C, g.inner}, c.num_threads, [&](int64_t base, int64_t w) {
          int64_t n = base / (g.C * g.inner), s0 = base - n * (g.C - 1) * g.inner;
          T m[kColBlock], s[kColBlock];
          for (int64_t j = 0; j < w; ++j) checked_label(yp, s0 + j, g.C);
          cols_max_sum_exp(xp + base, g.C, g.inner, w, m, s);
          for (int64_t j = 0; j < w; ++j)
            lp[s0 + j] = (m[j] - xp[base + static_cast<int64_t>(yp[s0 + j]) * g.inner + j]) + std::log(s[j]);
        });
      }
      if (red == Red::None) {
        if (!loss.same(out))
          write_back<T>(Tensor::make_view(loss, out.shape(), contiguous_strides(out.shape()), 0),
                        out, c.num_threads);
        return;
      }
      // Summed in double and in a fixed order: the same result for any thread count.
      double total = 0;
      for (int64_t i = 0; i < g.samples(); ++i) total += static_cast<double>(lp[i]);
      if (red == Red::Mean) total /= static_cast<double>(g.samples());  // 0/0 = NaN, as in NumPy
      *out.template data<T>() = static_cast<T>(total);
    });
  });
}

void cross_entropy_backward(KernelContext& c) {
  const Tensor& x_in = c.input(0);
  Tensor& out = c.output(0);
  Red red = reduction_of(c.attrs);
  CeGeom g = ce_geom(x_in.shape());
  if (out.numel() == 0) return;
  dispatch_float(x_in.dtype(), "cross_entropy_backward", [&]<typename T>() {
    dispatch_label(c.input(1).dtype(), [&]<typename L>() {
      Tensor x = dense<T>(x_in, c.num_threads), y = dense<L>(c.input(1), c.num_threads);
      Tensor go = dense<T>(c.input(2), c.num_threads);
      Tensor dx = out.is_contiguous() ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
      const T* xp = x.template data<T>();
      const L* yp = y.template data<L>();
      const T* gp = go.template data<T>();
      T* dp = dx.template data<T>();
      // The weight of sample i: the output gradient, shared when reduced.
      T shared = red == Red::None ? T(0) : gp[0];
      if (red == Red::Mean) shared /= static_cast<T>(g.samples());
      auto weight = [&](int64_t i) { return red == Red::None ? gp[i] : shared; };
      if (g.inner == 1) {
        for_row_blocks(g.N, g.C, c.num_threads, [&](int64_t r0, int64_t nr) {
          T m[kBlockElems], s[kBlockElems];
          for (int64_t r = 0; r < nr; ++r) checked_label(yp, r0 + r, g.C);
          rows_max_sum_exp(xp + r0 * g.C, nr, g.C, m, s, dp + r0 * g.C);
          for (int64_t r = 0; r < nr; ++r) {
            T* dr = dp + (r0 + r) * g.C;
            T wt = weight(r0 + r), scale = wt / s[r];
#pragma omp simd
            for (int64_t i = 0; i < g.C; ++i) dr[i] *= scale;
            dr[static_cast<int64_t>(yp[r0 + r])] -= wt;
          }
        });
      } else {
        for_col_blocks(AxisGeom{g.N, g.C, g.inner}, c.num_threads, [&](int64_t base, int64_t w) {
          int64_t n = base / (g.C * g.inner), s0 = base - n * (g.C - 1) * g.inner;
          T m[kColBlock], s[kColBlock];
          for (int64_t j = 0; j < w; ++j) checked_label(yp, s0 + j, g.C);
          cols_max_sum_exp(xp + base, g.C, g.inner, w, m, s);
          for (int64_t j = 0; j < w; ++j) s[j] = weight(s0 + j) / s[j];
          for (int64_t l = 0; l < g.C; ++l) {
            const T* xl = xp + base + l * g.inner;
            T* dl = dp + base + l * g.inner;
#pragma omp simd
            for (int64_t j = 0; j < w; ++j) dl[j] = exp_t(xl[j] - m[j]) * s[j];
          }
          for (int64_t j = 0; j < w; ++j)
            dp[base + static_cast<int64_t>(yp[s0 + j]) * g.inner + j] -= weight(s0 + j);
        });
      }
      write_back<T>(dx, out, c.num_threads);
    });
  });
}

}  // namespace

void register_nn_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> floats = {DType::f32, DType::f64};
  r.add("softmax", CPU, floats, softmax_forward<false>);
  r.add("log_softmax", CPU, floats, softmax_forward<true>);
  r.add("softmax_backward", CPU, floats, softmax_backward<false>);
  r.add("log_softmax_backward", CPU, floats, softmax_backward<true>);
  r.add("cross_entropy", CPU, floats, cross_entropy_forward);
  r.add("cross_entropy_backward", CPU, floats, cross_entropy_backward);
}

}  // namespace ndflow::cpu
