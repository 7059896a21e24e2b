// CPU kernels of the shape/array ops (ops/array.cc). Copies and casts run on
// the strided loops of kernels/cpu/loops.h (a parallel memcpy when both sides
// are dense); the index kernels check every index before using it and raise
// IndexError naming the op, the index and the valid range. Accumulating
// kernels split work so that no two threads ever write the same element,
// which also keeps their results deterministic.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"

namespace ndflow::cpu {

namespace {

using Ints = std::vector<int64_t>;

// ------------------------------------------------------------ conversions

template <typename T>
inline constexpr bool is_low_float_v = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// One element of a cast. Half and BFloat16 go through float.
template <typename Out, typename In>
Out convert(In v) {
  if constexpr (std::is_same_v<Out, In>) {
    return v;
  } else if constexpr (is_low_float_v<In>) {
    return convert<Out, float>(static_cast<float>(v));
  } else if constexpr (is_low_float_v<Out>) {
    return Out(convert<float, In>(v));
  } else if constexpr (std::is_same_v<Out, bool>) {
    return v != In(0);
  } else if constexpr (std::is_integral_v<Out> && std::is_floating_point_v<In>) {
    // NOTE: a plain cast of NaN or of an out-of-range float is UB. NaN gives
    // 0 and the rest saturates; u8 goes through i64 and wraps, as NumPy and
    // PyTorch do in practice (-1.0 -> 255).
    if (std::isnan(v)) return Out(0);
    using W = std::conditional_t<std::is_same_v<Out, uint8_t>, int64_t, Out>;
    double d = static_cast<double>(v);
    W w;
    if (d <= static_cast<double>(std::numeric_limits<W>::lowest())) w = std::numeric_limits<W>::lowest();
    else if (d >= static_cast<double>(std::numeric_limits<W>::max())) w = std::numeric_limits<W>::max();
    else w = static_cast<W>(d);
    return static_cast<Out>(w);
  } else {
    return static_cast<Out>(v);  // integer narrowing wraps (defined since C++20)
  }
}

// a + b, wrapping for signed integers instead of overflowing (UB).
template <typename T>
T add_wrap(T a, T b) {
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    using U = std::make_unsigned_t<T>;
    return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
  } else {
    return static_cast<T>(a + b);
  }
}

// ------------------------------------------------------------------ copies

// The bytes a view can touch (strides are non-negative in ndflow).
std::pair<const char*, const char*> byte_span(const Tensor& t) {
  const char* p = static_cast<const char*>(t.raw_data());
  int64_t last = 0;
  for (size_t d = 0; d < t.shape().size(); ++d) last += (t.shape()[d] - 1) * t.strides()[d];
  return {p, p + (last + 1) * static_cast<int64_t>(dtype_size(t.dtype()))};
}

void copy_raw(const Tensor& dst, const Tensor& src, int nt) {
  if (dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
    char* d = static_cast<char*>(dst.raw_data());
    const char* s = static_cast<const char*>(src.raw_data());
    int64_t bytes = dst.numel() * static_cast<int64_t>(dtype_size(dst.dtype()));
    parallel_for(bytes, kParallelGrain * 8, nt,
                 [&](int64_t b, int64_t e) { std::memcpy(d + b, s + b, static_cast<size_t>(e - b)); });
    return;
  }
  dispatch_all(dst.dtype(), "copy", [&]<typename T>() {
    unary_loop<T, T>(dst, src, nt, [](T v) { return v; });
  });
}

void cast_raw(const Tensor& dst, const Tensor& src, int nt) {
  dispatch_all(dst.dtype(), "cast", [&]<typename Out>() {
    dispatch_all(src.dtype(), "cast", [&]<typename In>() {
      unary_loop<Out, In>(dst, src, nt, [](In v) { return convert<Out, In>(v); });
    });
  });
}

// dst = src broadcast to dst's shape and converted to dst's dtype; any strides.
void copy_into(const Tensor& dst, const Tensor& src, int nt) {
  if (dst.numel() == 0 || src.numel() == 0) return;
  auto [d0, d1] = byte_span(dst);
  auto [s0, s1] = byte_span(src);
  if (d0 < s1 && s0 < d1) {  // overlapping memory: read everything before writing
    Tensor tmp = Tensor::empty(src.shape(), src.dtype(), src.device());
    copy_raw(tmp, src, nt);
    copy_into(dst, tmp, nt);
    return;
  }
  if (dst.dtype() == src.dtype()) copy_raw(dst, src, nt);
  else cast_raw(dst, src, nt);
}

void fill_zero(const Tensor& t, int nt) {
  if (t.numel() == 0) return;
  if (t.is_contiguous()) {  // all-zero bytes are 0 in every dtype
    char* p = static_cast<char*>(t.raw_data());
    parallel_for(static_cast<int64_t>(t.nbytes()), kParallelGrain * 8, nt,
                 [&](int64_t b, int64_t e) { std::memset(p + b, 0, static_cast<size_t>(e - b)); });
    return;
  }
  dispatch_all(t.dtype(), "fill", [&]<typename T>() {
    for_each_element(make_plan<1>({&t}), nt, [](char** p, const int64_t* s, int64_t n) {
      for (int64_t i = 0; i < n; ++i) *reinterpret_cast<T*>(p[0] + i * s[0]) = T{};
    });
  });
}

// A dense (row-major) version of t: t itself when it already is.
Tensor dense(const Tensor& t, int nt) {
  if (t.is_contiguous()) return t;
  Tensor d = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_raw(d, t, nt);
  return d;
}

// Runs f on a dense tensor that ends up in `out` (out itself when dense).
template <typename F>
void into_output(const Tensor& out, int nt, F&& f) {
  if (out.is_contiguous()) {
    f(out);
    return;
  }
  Tensor tmp = Tensor::empty(out.shape(), out.dtype(), out.device());
  f(tmp);
  copy_into(out, tmp, nt);
}

// Sizes of the dims before, at and after `axis`.
struct Split3 {
  int64_t outer = 1, n = 1, inner = 1;
};
Split3 split_at(const Shape& s, int64_t axis) {
  Split3 r;
  for (int64_t d = 0; d < static_cast<int64_t>(s.size()); ++d)
    (d < axis ? r.outer : d == axis ? r.n : r.inner) *= s[d];
  return r;
}

// ----------------------------------------------------------------- indices

[[noreturn]] void bad_index(std::string_view op, int64_t value, int64_t n, int64_t axis,
                            const Shape& shape) {
  fail<IndexError>("[", op, "] index ", value, " is out of range for axis ", axis, " of size ", n,
                   " (valid: ", n > 0 ? "0.." + std::to_string(n - 1) : "none, the axis is empty",
                   "; input shape ", shape_str(shape), ")");
}

template <typename Fn>
void dispatch_index(DType t, std::string_view op, Fn&& fn) {
  switch (t) {
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    default: fail<TypeError>("[", op, "] indices must be integers, got ", dtype_name(t));
  }
}

// All indices of `index` (row-major), each checked against [0, n).
Ints read_indices(const Tensor& index, int64_t n, std::string_view op, int64_t axis,
                  const Shape& shape) {
  Tensor d = dense(index, 1);
  Ints v(static_cast<size_t>(d.numel()));
  dispatch_index(d.dtype(), op, [&]<typename I>() {
    const I* p = static_cast<const I*>(d.raw_data());
    for (size_t i = 0; i < v.size(); ++i) {
      int64_t k = static_cast<int64_t>(p[i]);
      if (k < 0 || k >= n) bad_index(op, k, n, axis, shape);
      v[i] = k;
    }
  });
  return v;
}

// Row-major walk over `shape`, tracking the element offset of N operands.
template <int N>
struct Walk {
  Walk(Shape s, std::array<Strides, N> strides) : shape(std::move(s)), st(std::move(strides)) {}
  Shape shape;
  std::array<Strides, N> st;
  Shape idx;
  std::array<int64_t, N> off{};

  void seek(int64_t p) {
    idx.resize(shape.size());
    off.fill(0);
    for (size_t d = shape.size(); d-- > 0;) {
      idx[d] = p % shape[d];
      p /= shape[d];
      for (int k = 0; k < N; ++k) off[k] += idx[d] * st[k][d];
    }
  }
  void next() {
    for (size_t d = shape.size(); d-- > 0;) {
      for (int k = 0; k < N; ++k) off[k] += st[k][d];
      if (++idx[d] < shape[d]) return;
      for (int k = 0; k < N; ++k) off[k] -= shape[d] * st[k][d];
      idx[d] = 0;
    }
  }
};

// dst[o, map[j], t] += src[o, j, t] for every map[j] >= 0, with dense
// operands [outer, n_src, inner] and [outer, n_dst, inner]. Threads split
// (o, t), so writes never collide whatever the map.
template <typename T>
void index_add_rows(T* dst, const T* src, Split3 s, int64_t n_dst, const Ints& map, int nt) {
  int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(s.n, 1));
  parallel_for(s.outer * s.inner, grain, nt, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e;) {
      int64_t o = q / s.inner, t0 = q % s.inner, t1 = std::min(s.inner, t0 + (e - q));
      for (int64_t j = 0; j < s.n; ++j) {
        int64_t k = map[static_cast<size_t>(j)];
        if (k < 0) continue;
        T* d = dst + (o * n_dst + k) * s.inner;
        const T* x = src + (o * s.n + j) * s.inner;
        for (int64_t t = t0; t < t1; ++t) d[t] = add_wrap(d[t], x[t]);
      }
      q += t1 - t0;
    }
  });
}

// -------------------------------------------------------------------- kernels

// cast, contiguous, broadcast_to, broadcast_like: out = input 0, broadcast and converted.
void copy_kernel(KernelContext& c) { copy_into(c.output(0), c.input(0), c.num_threads); }

void concat(KernelContext& c) {
  const Tensor& out = c.output(0);
  int64_t ax = normalize_axis(c.attrs.get<int64_t>("axis", 0), out.rank(), "concat");
  int64_t off = 0;
  for (const Tensor& x : c.inputs) {
    int64_t n = x.shape()[ax];
    if (x.numel() > 0)
      copy_into(Tensor::make_view(out, x.shape(), out.strides(), out.offset() + off * out.strides()[ax]),
                x, c.num_threads);
    off += n;
  }
}

void slice_backward(KernelContext& c) {
  static const OpDef& slice_op = op_def("slice");
  const Tensor& out = c.output(0);
  fill_zero(out, c.num_threads);
  // The region is exactly the view the forward slice took, so the slice
  // semantics stay in one place (ops/array.cc).
  copy_into(slice_op.view_fn()(out, c.attrs), c.input(0), c.num_threads);
}

void index_select(KernelContext& c) {
  const Tensor &x = c.input(0), &index = c.input(1);
  int64_t ax = normalize_axis(c.attrs.get<int64_t>("axis", 0), x.rank(), "index_select");
  Ints idx = read_indices(index, x.shape()[ax], "index_select", ax, x.shape());
  Split3 s = split_at(x.shape(), ax);
  into_output(c.output(0), c.num_threads, [&](const Tensor& out) {
    if (out.numel() == 0) return;
    Tensor xd = dense(x, c.num_threads);
    size_t row = static_cast<size_t>(s.inner) * dtype_size(x.dtype());
    char* o = static_cast<char*>(out.raw_data());
    const char* src = static_cast<const char*>(xd.raw_data());
    int64_t k = static_cast<int64_t>(idx.size());
    int64_t grain = std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(s.inner, 1));
    parallel_for(s.outer * k, grain, c.num_threads, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        std::memcpy(o + r * row, src + (r / k * s.n + idx[r % k]) * row, row);
    });
  });
}

void index_select_backward(KernelContext& c) {
  const Tensor &g = c.input(0), &index = c.input(1), &like = c.input(2);
  int64_t ax = normalize_axis(c.attrs.get<int64_t>("axis", 0), like.rank(), "index_select_backward");
  Ints idx = read_indices(index, like.shape()[ax], "index_select_backward", ax, like.shape());
  into_output(c.output(0), c.num_threads, [&](const Tensor& out) {
    fill_zero(out, c.num_threads);
    Tensor gd = dense(g, c.num_threads);
    dispatch_numeric(g.dtype(), "index_select_backward", [&]<typename T>() {
      index_add_rows(out.data<T>(), gd.data<T>(), split_at(gd.shape(), ax), like.shape()[ax], idx,
                     c.num_threads);
    });
  });
}

void gather(KernelContext& c) {
  const Tensor &x = c.input(0), &index = c.input(1), &out = c.output(0);
  int64_t ax = normalize_axis(c.attrs.get<int64_t>("axis", 0), x.rank(), "gather");
  int64_t n = x.shape()[ax], ax_stride = x.strides()[ax];
  Strides xst = x.strides();
  xst[ax] = 0;  // the index supplies the position along the axis
  dispatch_all(x.dtype(), "gather", [&]<typename T>() {
    dispatch_index(index.dtype(), "gather", [&]<typename I>() {
      T* o = out.data<T>();
      const T* xp = x.data<T>();
      const I* ip = index.data<I>();
      parallel_for(out.numel(), kParallelGrain, c.num_threads, [&](int64_t b, int64_t e) {
        Walk<3> w(out.shape(), {out.strides(), index.strides(), xst});
        w.seek(b);
        for (int64_t p = b; p < e; ++p, w.next()) {
          int64_t k = static_cast<int64_t>(ip[w.off[1]]);
          if (k < 0 || k >= n) bad_index("gather", k, n, ax, x.shape());
          o[w.off[0]] = xp[w.off[2] + k * ax_stride];
        }
      });
    });
  });
}

void scatter_add(KernelContext& c) {
  const Tensor &x = c.input(0), &index = c.input(1), &src = c.input(2), &out = c.output(0);
  int64_t ax = normalize_axis(c.attrs.get<int64_t>("axis", 0), x.rank(), "scatter_add");
  copy_into(out, x, c.num_threads);
  int64_t m = index.shape()[ax], n = out.shape()[ax];
  if (index.numel() == 0) return;
  // Walk the index with `axis` innermost: one row per position of the other
  // axes, and rows write disjoint elements of out, so threads split rows.
  Shape shape;
  std::array<Strides, 3> st;
  const Tensor* ops[3] = {&out, &index, &src};
  for (int64_t d = 0; d <= x.rank(); ++d) {
    if (d == ax) continue;
    int64_t dd = d == x.rank() ? ax : d;
    shape.push_back(index.shape()[dd]);
    for (int k = 0; k < 3; ++k) st[k].push_back(k == 0 && dd == ax ? 0 : ops[k]->strides()[dd]);
  }
  int64_t ax_stride = out.strides()[ax];
  dispatch_numeric(out.dtype(), "scatter_add", [&]<typename T>() {
    dispatch_index(index.dtype(), "scatter_add", [&]<typename I>() {
      T* o = out.data<T>();
      const T* sp = src.data<T>();
      const I* ip = index.data<I>();
      int64_t grain = std::max<int64_t>(1, kParallelGrain / m);
      parallel_for(index.numel() / m, grain, c.num_threads, [&](int64_t b, int64_t e) {
        Walk<3> w(shape, st);
        w.seek(b * m);
        for (int64_t p = b * m; p < e * m; ++p, w.next()) {
          int64_t k = static_cast<int64_t>(ip[w.off[1]]);
          if (k < 0 || k >= n) bad_index("scatter_add", k, n, ax, out.shape());
          T& dst = o[w.off[0] + k * ax_stride];
          dst = add_wrap(dst, sp[w.off[2]]);
        }
      });
    });
  });
}

// For each coordinate along a padded axis of length n: the input coordinate
// it copies, or -1 for the constant. Infer has checked the widths (reflect
// widths are below n, replicate needs n > 0).
Ints pad_map(int64_t n, int64_t before, int64_t after, const std::string& mode) {
  Ints m(static_cast<size_t>(n + before + after));
  for (int64_t o = 0; o < static_cast<int64_t>(m.size()); ++o) {
    int64_t i = o - before;
    if (i < 0 || i >= n) {
      if (mode == "reflect") i = i < 0 ? -i : 2 * (n - 1) - i;
      else if (mode == "replicate") i = i < 0 ? 0 : n - 1;
      else i = -1;
    }
    m[static_cast<size_t>(o)] = i;
  }
  return m;
}

std::vector<Ints> pad_maps(const Shape& in, const Attrs& a) {
  Ints p = a.get<Ints>("pads");
  std::string mode = a.get<std::string>("mode", "constant");
  std::vector<Ints> maps;
  for (size_t d = 0; d < in.size(); ++d) {
    int64_t b = 2 * d < p.size() ? p[2 * d] : 0, e = 2 * d + 1 < p.size() ? p[2 * d + 1] : 0;
    maps.push_back(pad_map(in[d], b, e, mode));
  }
  return maps;
}

void pad(KernelContext& c) {
  const Tensor& x = c.input(0);
  int64_t r = x.rank();
  if (r == 0) return copy_into(c.output(0), x, c.num_threads);
  std::vector<Ints> maps = pad_maps(x.shape(), c.attrs);
  double value = c.attrs.get<double>("value", 0.0);
  into_output(c.output(0), c.num_threads, [&](const Tensor& out) {
    int64_t last = out.shape()[r - 1];
    if (out.numel() == 0) return;
    dispatch_all(x.dtype(), "pad", [&]<typename T>() {
      const T fill = convert<T, double>(value);
      T* op = out.data<T>();
      const T* xp = x.data<T>();
      const Strides& xs = x.strides();
      const Ints& lmap = maps[r - 1];
      int64_t grain = std::max<int64_t>(1, kParallelGrain / last);
      parallel_for(out.numel() / last, grain, c.num_threads, [&](int64_t b, int64_t e) {
        for (int64_t row = b; row < e; ++row) {
          int64_t off = 0, rem = row;
          bool inside = true;
          for (int64_t d = r - 2; d >= 0; --d) {
            int64_t size = out.shape()[d];
            int64_t i = maps[d][static_cast<size_t>(rem % size)];
            rem /= size;
            inside = inside && i >= 0;
            off += i * xs[d];
          }
          T* dst = op + row * last;
          for (int64_t t = 0; t < last; ++t) {
            int64_t k = lmap[static_cast<size_t>(t)];
            dst[t] = (inside && k >= 0) ? xp[off + k * xs[r - 1]] : fill;
          }
        }
      });
    });
  });
}

// The adjoint of pad, one padded axis at a time: each pass sums the grad
// rows that copied input row i into row i.
void pad_backward(KernelContext& c) {
  const Tensor &g = c.input(0), &like = c.input(1);
  std::vector<Ints> maps = pad_maps(like.shape(), c.attrs);
  Tensor cur = dense(g, c.num_threads);
  dispatch_numeric(g.dtype(), "pad_backward", [&]<typename T>() {
    for (int64_t d = 0; d < like.rank(); ++d) {
      int64_t n_in = like.shape()[d];
      if (cur.shape()[d] == n_in) continue;  // this axis is not padded
      Shape ns = cur.shape();
      ns[d] = n_in;
      Tensor next = Tensor::empty(ns, g.dtype(), g.device());
      fill_zero(next, c.num_threads);
      index_add_rows(next.data<T>(), cur.data<T>(), split_at(cur.shape(), d), n_in, maps[d],
                     c.num_threads);
      cur = next;
    }
  });
  copy_into(c.output(0), cur, c.num_threads);
}

void one_hot(KernelContext& c) {
  const Tensor& labels = c.input(0);
  int64_t n = c.attrs.get<int64_t>("num_classes");
  into_output(c.output(0), c.num_threads, [&](const Tensor& out) {
    fill_zero(out, c.num_threads);
    Tensor l = dense(labels, c.num_threads);
    dispatch_all(out.dtype(), "one_hot", [&]<typename T>() {
      dispatch_index(l.dtype(), "one_hot", [&]<typename L>() {
        const T one = convert<T, double>(1.0);
        T* op = out.data<T>();
        const L* lp = static_cast<const L*>(l.raw_data());
        parallel_for(l.numel(), kParallelGrain, c.num_threads, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) {
            int64_t k = static_cast<int64_t>(lp[i]);
            NDF_CHECK(k >= 0 && k < n, IndexError, "[one_hot] label ", k, " at position ", i,
                      " is out of range for num_classes ", n, " (valid: 0..", n - 1,
                      "; labels shape ", shape_str(labels.shape()), ")");
            op[i * n + k] = one;
          }
        });
      });
    });
  });
}

}  // namespace

void register_array_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> all = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                  DType::i32, DType::i64, DType::u8,  DType::boolean};
  const std::vector<DType> numeric = {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8};

  r.add("cast", CPU, all, copy_kernel);
  r.add("contiguous", CPU, all, copy_kernel);
  r.add("broadcast_to", CPU, all, copy_kernel);
  r.add("broadcast_like", CPU, all, copy_kernel);
  r.add("concat", CPU, all, concat);
  r.add("slice_backward", CPU, all, slice_backward);
  r.add("index_select", CPU, all, index_select);
  r.add("index_select_backward", CPU, numeric, index_select_backward);
  r.add("gather", CPU, all, gather);
  r.add("scatter_add", CPU, numeric, scatter_add);
  r.add("pad", CPU, all, pad);
  r.add("pad_backward", CPU, numeric, pad_backward);
  r.add("one_hot", CPU, {DType::i32, DType::i64, DType::u8}, one_hot);
}

}  // namespace ndflow::cpu
