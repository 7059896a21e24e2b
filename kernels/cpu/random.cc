// CPU kernels of the random ops (ops/random.cc), on the Philox stream layout
// of kernels/philox.h. Work is split into chunks that each open the stream at
// their own first word, so any thread count gives bit-identical tensors.
// Parameters were validated by the op's infer.
#include <cmath>
#include <cstdint>
#include <numbers>

#include "core/op_registry.h"
#include "kernels/cpu/loops.h"
#include "kernels/philox.h"

namespace ndflow::cpu {

namespace {

using philox::Dist;
using philox::Stream;

// Random numbers cost far more than a copy, so chunks can be smaller.
constexpr int64_t kRandomGrain = 4096;

template <typename T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return T(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bool>)
    return v != 0.0;
  else
    return static_cast<T>(v);
}

template <typename T>
double to_double(T v) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>)
    return static_cast<float>(v);
  else
    return static_cast<double>(v);
}

template <typename T>
inline constexpr bool is_float_storage =
    std::is_floating_point_v<T> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

// f64 is drawn and computed in double; f32, f16 and bf16 in float.
template <typename T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

struct DrawParams {
  uint64_t seed, offset;
  int64_t* state = nullptr;  // the generator state {seed, offset} to advance, in graphs
};
DrawParams draw_params(const KernelContext& c) {
  // In a graph the node reads its generator's state Variable and advances it
  // (fill_groups), so each run of the graph draws new numbers.
  if (!c.inputs.empty()) {
    const Tensor& st = c.input(0);
    NDF_CHECK(st.numel() == 2 && st.is_contiguous(), ShapeError, "[", c.op.name(),
              "] the generator state must be a contiguous i64 tensor of 2 elements, got shape ",
              shape_str(st.shape()));
    int64_t* state = st.data<int64_t>();
    return {static_cast<uint64_t>(state[0]), static_cast<uint64_t>(state[1]), state};
  }
  // Eagerly, seeds are uint64 stored bit for bit in an int64 attribute.
  return {static_cast<uint64_t>(c.attrs.get<int64_t>("seed", 0)),
          static_cast<uint64_t>(c.attrs.get<int64_t>("offset", 0))};
}

// Calls gen(stream, out + g * group, count) for each group of elements, where
// count is the group size except for a shorter last group. A group consumes
// group * words_per_element words even when it is cut short, which is what
// words_for() reserved.
template <typename T, typename Gen>
void fill_groups(const Tensor& out, int num_threads, Dist dist, bool wide, DrawParams dp, Gen gen) {
  auto fill = [&](T* data, int64_t n) {
    const int64_t group = philox::group_size(dist);
    const uint64_t words_per_group =
        static_cast<uint64_t>(group) * static_cast<uint64_t>(philox::words_per_element(dist, wide));
    int64_t groups = (n + group - 1) / group;
    parallel_for(groups, std::max<int64_t>(1, kRandomGrain / group), num_threads, [&](int64_t b, int64_t e) {
      Stream stream(dp.seed, dp.offset + static_cast<uint64_t>(b) * words_per_group);
      for (int64_t g = b; g < e; ++g) {
        int64_t first = g * group;
        gen(stream, data + first, std::min(group, n - first), dp.offset + static_cast<uint64_t>(g) * words_per_group);
      }
    });
  };
  if (dp.state) dp.state[1] = static_cast<int64_t>(dp.offset + philox::round_to_block(philox::words_for(dist, wide, out.numel())));
  if (out.is_contiguous()) {
    fill(static_cast<T*>(out.raw_data()), out.numel());
    return;
  }
  // An in-place draw into a view: the same numbers as a fresh tensor, copied in.
  Tensor tmp = Tensor::empty(out.shape(), out.dtype(), out.device());
  fill(static_cast<T*>(tmp.raw_data()), tmp.numel());
  unary_loop<T, T>(out, tmp, num_threads, [](T x) { return x; });
}

// The largest T below `high`: results that round up to `high` are clamped to
// it, so that uniform stays in [low, high) for every dtype.
template <typename T>
T below(double high) {
  T t = from_double<T>(high);
  if constexpr (std::is_floating_point_v<T>) {
    while (to_double(t) >= high) t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  } else {  // Half, BFloat16: step the bit pattern towards -inf
    while (to_double(t) >= high) {
      if (t.bits == 0) t.bits = 0x8001;         // +0 -> smallest negative subnormal
      else if (t.bits & 0x8000) ++t.bits;      // negative: larger magnitude
      else --t.bits;                           // positive: smaller magnitude
    }
  }
  return t;
}

void uniform(KernelContext& c) {
  const Tensor& out = c.output(0);
  double low = c.attrs.get<double>("low", 0.0), high = c.attrs.get<double>("high", 1.0);
  DrawParams dp = draw_params(c);
  dispatch_all(out.dtype(), "uniform", [&]<typename T>() {
    if constexpr (is_float_storage<T>) {
      constexpr bool wide = std::is_same_v<T, double>;
      const T top = below<T>(high);
      const double span = high - low;
      fill_groups<T>(out, c.num_threads, Dist::Uniform, wide, dp, [&](Stream& s, T* o, int64_t, uint64_t) {
        double u = wide ? philox::uniform_f64(s.next64()) : philox::uniform_f32(s.next());
        T v = from_double<T>(low + span * u);
        *o = to_double(v) >= high ? top : v;
      });
    } else {
      fail<TypeError>("[uniform] got dtype ", dtype_name(out.dtype()), "; valid dtypes: f32, f64, f16, bf16");
    }
  });
}

// Box–Muller: two uniforms give two independent standard normals.
void normal(KernelContext& c) {
  const Tensor& out = c.output(0);
  double mean = c.attrs.get<double>("mean", 0.0), stddev = c.attrs.get<double>("std", 1.0);
  DrawParams dp = draw_params(c);
  dispatch_all(out.dtype(), "normal", [&]<typename T>() {
    if constexpr (is_float_storage<T>) {
      using C = compute_t<T>;
      constexpr bool wide = std::is_same_v<C, double>;
      const C m = static_cast<C>(mean), sd = static_cast<C>(stddev);
      const C two_pi = static_cast<C>(2 * std::numbers::pi);
      fill_groups<T>(out, c.num_threads, Dist::Normal, wide, dp, [&](Stream& s, T* o, int64_t count, uint64_t) {
        C u1, u2;
        if constexpr (wide) {
          u1 = philox::uniform_pos_f64(s.next64());
          u2 = philox::uniform_f64(s.next64());
        } else {
          u1 = philox::uniform_pos_f32(s.next());
          u2 = philox::uniform_f32(s.next());
        }
        C r = std::sqrt(C(-2) * std::log(u1)), theta = two_pi * u2;
        o[0] = from_double<T>(m + sd * r * std::cos(theta));
        if (count == 2) o[1] = from_double<T>(m + sd * r * std::sin(theta));
      });
    } else {
      fail<TypeError>("[normal] got dtype ", dtype_name(out.dtype()), "; valid dtypes: f32, f64, f16, bf16");
    }
  });
}

void bernoulli(KernelContext& c) {
  const Tensor& out = c.output(0);
  // x < p * 2^32 has probability p up to 2^-32, and is exact at p = 0 and 1.
  const uint64_t threshold = static_cast<uint64_t>(c.attrs.get<double>("p", 0.5) * 0x1p32);
  DrawParams dp = draw_params(c);
  dispatch_all(out.dtype(), "bernoulli", [&]<typename T>() {
    const T one = from_double<T>(1.0), zero = from_double<T>(0.0);
    fill_groups<T>(out, c.num_threads, Dist::Bernoulli, false, dp, [&](Stream& s, T* o, int64_t, uint64_t) {
      *o = static_cast<uint64_t>(s.next()) < threshold ? one : zero;
    });
  });
}

// Unbiased integers in [low, high): Lemire's multiply-shift with rejection;
// a rejected element redraws from its own retry stream, so no other element
// moves.
void randint(KernelContext& c) {
  const Tensor& out = c.output(0);
  int64_t low = c.attrs.get<int64_t>("low", 0), high = c.attrs.get<int64_t>("high");
  const uint64_t range = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  const bool wide = range > (uint64_t(1) << 32);
  DrawParams dp = draw_params(c);
  dispatch_numeric(out.dtype(), "randint", [&]<typename T>() {
    fill_groups<T>(out, c.num_threads, Dist::Randint, wide, dp, [&](Stream& s, T* o, int64_t, uint64_t word) {
      philox::RetryStream retry(dp.seed, word);
      uint64_t k = wide ? philox::bounded64(s.next64(), range, retry) : philox::bounded32(s.next(), range, retry);
      // Modular uint64 arithmetic: low + k lies in [low, high) and so fits int64.
      *o = static_cast<T>(static_cast<int64_t>(static_cast<uint64_t>(low) + k));
    });
  });
}

}  // namespace

void register_random_kernels(KernelRegistry& r) {
  constexpr auto CPU = DeviceType::CPU;
  const std::vector<DType> floats = {DType::f32, DType::f64, DType::f16, DType::bf16};
  r.add("uniform", CPU, floats, uniform);
  r.add("normal", CPU, floats, normal);
  r.add("bernoulli", CPU, {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i32, DType::i64,
                           DType::u8, DType::boolean}, bernoulli);
  r.add("randint", CPU, {DType::f32, DType::f64, DType::i32, DType::i64, DType::u8}, randint);
}

}  // namespace ndflow::cpu
