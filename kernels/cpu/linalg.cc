// CPU kernel of matmul (ops/linalg.cc). f32 goes to oneDNN's dnnl_sgemm,
// which reaches 91–96% of the machine's peak (BENCHMARKING.md); the wrapper
// must therefore add almost nothing: contiguous and simply-transposed operands
// are passed as they are (trans 'T'), a batch whose right operand is shared is
// folded into one tall GEMM, and only truly irregular views are copied. f64 (used
// by gradchecks, rarely hot) runs a packed, register-blocked kernel below.
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/parallel.h"

namespace ndflow::cpu {

namespace {

// One operand's matrices: rows x cols with element strides rs, cs.
struct Mat {
  int64_t rows = 1, cols = 1, rs = 0, cs = 0;
};

// A batch of C[M,N] = A[M,K] @ B[K,N]: per-batch element offsets of each operand.
struct BatchedGemm {
  int64_t M = 0, N = 0, K = 0;
  Mat a, b;
  int64_t ldc = 0;  // C is always row-major (see matmul below)
  std::vector<int64_t> a_off, b_off, c_off;
  int64_t batch() const { return static_cast<int64_t>(c_off.size()); }
};

// The matrix view of an operand: a 1-d `a` is a row vector, a 1-d `b` a column.
Mat matrix_of(const Tensor& t, bool is_left) {
  int64_t r = t.rank();
  const Shape& s = t.shape();
  const Strides& st = t.strides();
  if (r == 1) return is_left ? Mat{1, s[0], 0, st[0]} : Mat{s[0], 1, st[0], 0};
  return Mat{s[r - 2], s[r - 1], st[r - 2], st[r - 1]};
}

BatchedGemm plan_gemm(const Tensor& a, const Tensor& b, const Tensor& c) {
  BatchedGemm p;
  p.a = matrix_of(a, true);
  p.b = matrix_of(b, false);
  p.M = p.a.rows;
  p.K = p.a.cols;
  p.N = p.b.cols;
  p.ldc = std::max<int64_t>(p.N, 1);

  // Batch dims of the output; each operand's batch dims are right-aligned to them.
  size_t ra = static_cast<size_t>(a.rank()), rb = static_cast<size_t>(b.rank());
  size_t nb = static_cast<size_t>(c.rank()) - (ra >= 2) - (rb >= 2);
  size_t ba = ra >= 2 ? ra - 2 : 0, bb = rb >= 2 ? rb - 2 : 0;
  Strides sa(nb, 0), sb(nb, 0);
  int64_t total = 1;
  for (size_t d = 0; d < nb; ++d) {
    total *= c.shape()[d];
    if (d >= nb - ba && a.shape()[d - (nb - ba)] != 1) sa[d] = a.strides()[d - (nb - ba)];
    if (d >= nb - bb && b.shape()[d - (nb - bb)] != 1) sb[d] = b.strides()[d - (nb - bb)];
  }
  p.a_off.resize(static_cast<size_t>(total));
  p.b_off.resize(static_cast<size_t>(total));
  p.c_off.resize(static_cast<size_t>(total));
  std::vector<int64_t> idx(nb, 0);
  int64_t oa = 0, ob = 0, mn = p.M * p.N;
  for (int64_t i = 0; i < total; ++i) {
    p.a_off[i] = oa;
    p.b_off[i] = ob;
    p.c_off[i] = i * mn;
    for (size_t d = nb; d-- > 0;) {  // odometer step over the batch dims
      oa += sa[d];
      ob += sb[d];
      if (++idx[d] < c.shape()[d]) break;
      oa -= sa[d] * idx[d];
      ob -= sb[d] * idx[d];
      idx[d] = 0;
    }
  }
  return p;
}

// How BLAS can read a matrix in place: row-major ('N', element (i,j) at
// i*ld + j) or column-major ('T', at j*ld + i). A dim of size 1 places no
// constraint on its stride. Anything else (expanded or sliced-with-step
// matrix dims) must be copied first.
struct Layout {
  bool ok = false;
  char trans = 'N';
  int64_t ld = 1;
};
Layout blas_layout(const Mat& m) {
  if ((m.cols == 1 || m.cs == 1) && (m.rows == 1 || m.rs >= std::max<int64_t>(m.cols, 1)))
    return {true, 'N', m.rows == 1 ? std::max<int64_t>(m.cols, 1) : m.rs};
  if ((m.rows == 1 || m.rs == 1) && (m.cols == 1 || m.cs >= std::max<int64_t>(m.rows, 1)))
    return {true, 'T', m.cols == 1 ? std::max<int64_t>(m.rows, 1) : m.cs};
  return {};
}

// ------------------------------------------------------------------- f32

void sgemm(char ta, char tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc) {
  dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
  NDF_CHECK(st == dnnl_success, InternalError, "[matmul] oneDNN sgemm failed with status ",
            static_cast<int>(st), " (M=", M, ", N=", N, ", K=", K, ", transA=", ta,
            ", transB=", tb, ", lda=", lda, ", ldb=", ldb, ", ldc=", ldc, ")");
}

// Below this many multiply-adds per matrix a batch runs one matrix per thread
// (each sgemm single-threaded) instead of spreading every small GEMM.
constexpr int64_t kSmallGemm = 64 * 64 * 64;

// An outer product (K == 1: a weight gradient at batch 1) is one scaled row
// per output row; GEMM's packing costs more than the product itself. Each
// element is the single rounded product a*b, as sgemm with beta = 0 gives.
void outer_product(const BatchedGemm& p, const float* A, const float* B, float* C, int threads) {
  const float* a = A + p.a_off[0];
  const float* b = B + p.b_off[0];
  const int64_t N = p.N, bs = p.b.cs, as = p.a.rs;
  parallel_for(p.M, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), threads, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float ai = a[i * as];
      float* c = C + p.c_off[0] + i * p.ldc;
      if (bs == 1) {
        for (int64_t j = 0; j < N; ++j) c[j] = ai * b[j];
      } else {
        for (int64_t j = 0; j < N; ++j) c[j] = ai * b[j * bs];
      }
    }
  });
}

void sgemm_batched(const BatchedGemm& p, const float* A, const float* B, float* C, int threads) {
  Layout la = blas_layout(p.a), lb = blas_layout(p.b);
  int64_t nbatch = p.batch();
  if (nbatch == 1 && p.K == 1 && p.M * p.N >= 4096) {
    outer_product(p, A, B, C, threads);
    return;
  }
  // NOTE: dnnl_sgemm sizes its OpenMP team by omp_get_max_threads(), an ICV of
  // the calling thread: a thread that never saw set_num_threads (an executor
  // worker) would otherwise use every core.
  if (omp_get_max_threads() != threads) omp_set_num_threads(threads);

  // A shared right operand and a batch of row-major left matrices stacked at
  // a constant pitch are one tall GEMM: [batch*M, K] @ [K, N].
  bool fold = nbatch > 1 && la.trans == 'N';
  for (int64_t i = 1; fold && i < nbatch; ++i)
    fold = p.b_off[i] == p.b_off[0] && p.a_off[i] == p.a_off[0] + i * p.M * la.ld;
  if (fold) {
    sgemm('N', lb.trans, nbatch * p.M, p.N, p.K, A + p.a_off[0], la.ld, B + p.b_off[0], lb.ld, C,
          p.ldc);
    return;
  }
  int64_t work = p.M * p.N * p.K;
  if (nbatch > 1 && work < kSmallGemm) {
    // Inside the parallel region oneDNN sees omp_in_parallel() and runs single-threaded.
    int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(work, 1));
    parallel_for(nbatch, grain, threads, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        sgemm(la.trans, lb.trans, p.M, p.N, p.K, A + p.a_off[i], la.ld, B + p.b_off[i], lb.ld,
              C + p.c_off[i], p.ldc);
    });
    return;
  }
  for (int64_t i = 0; i < nbatch; ++i)
    sgemm(la.trans, lb.trans, p.M, p.N, p.K, A + p.a_off[i], la.ld, B + p.b_off[i], lb.ld,
          C + p.c_off[i], p.ldc);
}

// ------------------------------------------------------------------- f64
// A GotoBLAS-style loop nest (Goto & van de Geijn, "Anatomy of High-Performance
// Matrix Multiplication", TOMS 2008): blocks of A and B are packed into
// zero-padded micro-panels so that the MR x NR micro-kernel streams unit-stride
// memory and keeps its accumulators in registers. Packing reads any strides,
// so transposed, sliced or expanded operands need no copy. Parallel over
// (batch element, block of MC rows); each task packs its own panels.

constexpr int64_t MR = 4, NR = 16;              // 4 x 16 doubles = 8 zmm accumulators
constexpr int64_t MC = 64, KC = 256, NC = 256;  // A block 128 KiB, B block 512 KiB (L2)

// Ap[panel][k][r] for rows [i0, i0+mc) and depth [p0, p0+kc).
void pack_a(const double* A, const Mat& m, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
            double* Ap) {
  for (int64_t ir = 0; ir < mc; ir += MR) {
    double* dst = Ap + ir * kc;
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t r = 0; r < MR; ++r)
        dst[k * MR + r] = ir + r < mc ? A[(i0 + ir + r) * m.rs + (p0 + k) * m.cs] : 0.0;
  }
}

// Bp[panel][k][j] for depth [p0, p0+kc) and columns [j0, j0+nc).
void pack_b(const double* B, const Mat& m, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            double* Bp) {
  for (int64_t jr = 0; jr < nc; jr += NR) {
    double* dst = Bp + jr * kc;
    int64_t w = std::min(NR, nc - jr);
    for (int64_t k = 0; k < kc; ++k) {
      const double* src = B + (p0 + k) * m.rs + (j0 + jr) * m.cs;
      for (int64_t j = 0; j < NR; ++j) dst[k * NR + j] = j < w ? src[j * m.cs] : 0.0;
    }
  }
}

// C[mr x nr] += Ap-panel @ Bp-panel over depth kc. Written with GCC vector
// types so that the 4 x 16 accumulator tile stays in eight 512-bit registers
// (left to itself the auto-vectorizer shuffles instead).
typedef double v8d __attribute__((vector_size(64)));
inline v8d load8(const double* p) {
  v8d v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void add8(double* p, v8d v) { std::memcpy(p, &v, sizeof v); }

void micro_kernel(int64_t kc, const double* __restrict ap, const double* __restrict bp, double* C,
                  int64_t ldc, int64_t mr, int64_t nr) {
  static_assert(MR == 4 && NR == 16, "the micro-kernel is written for a 4 x 16 tile");
  v8d acc[MR][2] = {};
  for (int64_t k = 0; k < kc; ++k) {
    v8d b0 = load8(bp + k * NR), b1 = load8(bp + k * NR + 8);
    for (int64_t r = 0; r < MR; ++r) {
      double a = ap[k * MR + r];
      acc[r][0] += a * b0;
      acc[r][1] += a * b1;
    }
  }
  if (mr == MR && nr == NR) {
    for (int64_t r = 0; r < MR; ++r) {
      add8(C + r * ldc, load8(C + r * ldc) + acc[r][0]);
      add8(C + r * ldc + 8, load8(C + r * ldc + 8) + acc[r][1]);
    }
    return;
  }
  double tile[MR][NR];
  std::memcpy(tile, acc, sizeof tile);
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t j = 0; j < nr; ++j) C[r * ldc + j] += tile[r][j];
}

void dgemm_blocked(const BatchedGemm& p, const double* A, const double* B, double* C, int threads) {
  int64_t row_blocks = (p.M + MC - 1) / MC;
  int64_t tasks = p.batch() * row_blocks;
  int64_t flops_per_task = 2 * std::min(p.M, MC) * p.N * p.K;
  int64_t grain = std::max<int64_t>(1, (int64_t(1) << 17) / std::max<int64_t>(flops_per_task, 1));
  parallel_for(tasks, grain, threads, [&](int64_t lo, int64_t hi) {
    std::vector<double> Ap(static_cast<size_t>(MC * KC)), Bp(static_cast<size_t>(KC * NC));
    for (int64_t t = lo; t < hi; ++t) {
      int64_t bi = t / row_blocks, i0 = (t % row_blocks) * MC, mc = std::min(MC, p.M - i0);
      const double* a = A + p.a_off[bi];
      const double* b = B + p.b_off[bi];
      double* c = C + p.c_off[bi] + i0 * p.ldc;
      for (int64_t i = 0; i < mc; ++i) std::fill_n(c + i * p.ldc, p.N, 0.0);
      for (int64_t j0 = 0; j0 < p.N; j0 += NC) {
        int64_t nc = std::min(NC, p.N - j0);
        for (int64_t p0 = 0; p0 < p.K; p0 += KC) {
          int64_t kc = std::min(KC, p.K - p0);
          pack_b(b, p.b, p0, kc, j0, nc, Bp.data());
          pack_a(a, p.a, i0, mc, p0, kc, Ap.data());
          for (int64_t jr = 0; jr < nc; jr += NR)
            for (int64_t ir = 0; ir < mc; ir += MR)
              micro_kernel(kc, Ap.data() + ir * kc, Bp.data() + jr * kc,
                           c + ir * p.ldc + j0 + jr, p.ldc, std::min(MR, mc - ir),
                           std::min(NR, nc - jr));
        }
      }
    }
  });
}

// ---------------------------------------------------------------- kernel

void matmul(KernelContext& ctx) {
  const Tensor& a_in = ctx.input(0);
  const Tensor& b_in = ctx.input(1);
  Tensor& out = ctx.output(0);
  if (out.numel() == 0) return;
  dispatch_float(a_in.dtype(), "matmul", [&]<typename T>() {
    // A freshly allocated output is contiguous; one written in place (a view,
    // perhaps of an operand) may not be or may overlap the operands, and then
    // the product goes through a temporary.
    auto& st = out.impl()->storage;
    bool direct = out.is_contiguous() && st != a_in.impl()->storage && st != b_in.impl()->storage;
    Tensor c = direct ? out : Tensor::empty(out.shape(), out.dtype(), out.device());
    Tensor a = a_in, b = b_in;
    if constexpr (std::is_same_v<T, float>) {
      if (!blas_layout(matrix_of(a, true)).ok) a = dense<T>(a, ctx.num_threads);
      if (!blas_layout(matrix_of(b, false)).ok) b = dense<T>(b, ctx.num_threads);
    }
    BatchedGemm p = plan_gemm(a, b, c);
    T* C = c.template data<T>();
    if (p.K == 0) {
      std::fill_n(C, c.numel(), T(0));
    } else if constexpr (std::is_same_v<T, float>) {
      sgemm_batched(p, a.template data<T>(), b.template data<T>(), C, ctx.num_threads);
    } else {
      dgemm_blocked(p, a.template data<T>(), b.template data<T>(), C, ctx.num_threads);
    }
    if (!c.same(out)) unary_loop<T, T>(out, c, ctx.num_threads, [](T v) { return v; });
  });
}

}  // namespace

void register_linalg_kernels(KernelRegistry& r) {
  r.add("matmul", DeviceType::CPU, {DType::f32, DType::f64}, matmul);
}

}  // namespace ndflow::cpu
