// Random ops: uniform, normal, bernoulli and randint draws from the Philox
// counter-based generator (kernels/philox.h). An op's numbers are a pure
// function of its attributes — shape, dtype, distribution parameters, "seed"
// and "offset" — so a graph node re-run with the same attributes draws the
// same numbers, and any device can compute any element on its own. The API
// functions take the seed from a Generator and reserve the counter words the
// draw consumes (Generator::advance), so consecutive calls never overlap.
#include <cmath>
#include <limits>
#include <mutex>

#include "kernels/philox.h"
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow {

namespace {

using Metas = std::vector<TensorMeta>;
using philox::Dist;

// The default generator is shared by every thread that draws without naming
// a generator; this lock keeps its counter consistent. Generators a user
// passes are theirs to synchronize, as in PyTorch.
std::mutex& default_generator_mutex() {
  static std::mutex mu;
  return mu;
}

// PyTorch's default seed: a fresh process draws the same numbers every run.
constexpr uint64_t kDefaultSeed = 67280421310721ULL;

void check_shape(std::span<const int64_t> shape, std::string_view op) {
  for (int64_t d : shape)
    NDF_CHECK(d >= 0, ValueError, "[", op, "] shape ", shape_str(shape), " has a negative dimension");
  int64_t n = 1;
  for (int64_t d : shape)
    NDF_CHECK(!__builtin_mul_overflow(n, d, &n), ValueError, "[", op, "] shape ", shape_str(shape),
              " has more elements than fit in int64");
}

void check_float_dtype(DType dtype, std::string_view op) {
  NDF_CHECK(is_floating(dtype), TypeError, "[", op, "] got dtype ", dtype_name(dtype),
            "; valid dtypes: f32, f64, f16, bf16");
}

// The largest finite value of a float dtype: bounds beyond it would draw inf.
double float_max(DType dtype) {
  switch (dtype) {
    case DType::f16: return 65504.0;
    case DType::bf16: return 3.3895313892515355e38;
    case DType::f32: return std::numeric_limits<float>::max();
    default: return std::numeric_limits<double>::max();
  }
}

// ------------------------------------------------- parameter validation
// Called by the API before the generator advances (a failed call consumes
// nothing) and by infer, so graph nodes (built or loaded) are checked too.

void check_uniform(double low, double high, DType dtype) {
  check_float_dtype(dtype, "uniform");
  NDF_CHECK(std::isfinite(low) && std::isfinite(high) && low < high, ValueError,
            "[uniform] needs finite low < high, got low=", low, ", high=", high);
  NDF_CHECK(std::isfinite(high - low), ValueError, "[uniform] the range high - low overflows (low=", low,
            ", high=", high, ")");
  double m = float_max(dtype);
  NDF_CHECK(low >= -m && high <= m, ValueError, "[uniform] low=", low, " and high=", high,
            " must lie within the finite range of ", dtype_name(dtype), " (+-", m, ")");
}

void check_normal(double mean, double std, DType dtype) {
  check_float_dtype(dtype, "normal");
  NDF_CHECK(std::isfinite(mean) && std::isfinite(std) && std >= 0, ValueError,
            "[normal] needs a finite mean and a finite std >= 0, got mean=", mean, ", std=", std);
}

void check_bernoulli(double p) {
  NDF_CHECK(p >= 0 && p <= 1, ValueError, "[bernoulli] p must be in [0, 1], got ", p);
}

void check_randint(int64_t low, int64_t high, DType dtype) {
  NDF_CHECK(low < high, ValueError, "[randint] needs low < high, got low=", low, ", high=", high);
  int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  switch (dtype) {
    case DType::i32:
      lo = std::numeric_limits<int32_t>::min();
      hi = std::numeric_limits<int32_t>::max();
      break;
    case DType::u8:
      lo = 0;
      hi = 255;
      break;
    case DType::i64: case DType::f32: case DType::f64: break;
    default:
      fail<TypeError>("[randint] got dtype ", dtype_name(dtype), "; valid dtypes: i64, i32, u8, f32, f64");
  }
  NDF_CHECK(low >= lo && high - 1 <= hi, ValueError, "[randint] values in [", low, ", ", high,
            ") do not fit in dtype ", dtype_name(dtype), " ([", lo, ", ", hi, "])");
}

// ------------------------------------------------------------- infer

TensorMeta draw_meta(const InferContext& c, std::string_view op, DType default_dtype) {
  auto shape = c.attrs.get<std::vector<int64_t>>("shape");
  check_shape(shape, op);
  // In a graph the draw reads its generator's state {seed, offset}; eagerly
  // the seed and offset are attributes.
  NDF_CHECK(c.inputs.size() <= 1, ValueError, "[", op, "] takes at most one input (the generator state), got ",
            c.inputs.size());
  if (c.inputs.size() == 1) {
    const TensorMeta& st = c.input(0);
    NDF_CHECK(st.dtype == DType::i64 && st.shape.size() == 1 && (st.shape[0] == 2 || st.shape[0] == -1),
              TypeError, "[", op, "] the generator state must be an i64 tensor of shape [2], got ",
              dtype_name(st.dtype), " ", shape_str(st.shape));
  }
  return TensorMeta{Shape(shape), c.attrs.get<DType>("dtype", default_dtype), Device::cpu()};
}

Metas infer_uniform(const InferContext& c) {
  TensorMeta m = draw_meta(c, "uniform", DType::f32);
  check_uniform(c.attrs.get<double>("low", 0.0), c.attrs.get<double>("high", 1.0), m.dtype);
  return Metas{m};
}

Metas infer_normal(const InferContext& c) {
  TensorMeta m = draw_meta(c, "normal", DType::f32);
  check_normal(c.attrs.get<double>("mean", 0.0), c.attrs.get<double>("std", 1.0), m.dtype);
  return Metas{m};
}

Metas infer_bernoulli(const InferContext& c) {
  TensorMeta m = draw_meta(c, "bernoulli", DType::f32);
  check_bernoulli(c.attrs.get<double>("p", 0.5));
  return Metas{m};
}

Metas infer_randint(const InferContext& c) {
  TensorMeta m = draw_meta(c, "randint", DType::i64);
  check_randint(c.attrs.get<int64_t>("low", 0), c.attrs.get<int64_t>("high"), m.dtype);
  return Metas{m};
}

// Adds the attributes every random op shares. Random ops are stateful, as in
// TensorFlow (SetIsStateful): graph passes must not fold, merge or hoist a
// draw, which is meant to be made anew where and when it runs.
OpDef& draw_op(OpRegistry& r, const char* name, DType default_dtype, const char* doc) {
  return r.add(OpDef(name).variadic_input("state", 0).mutates({0}).output("y").doc(doc).stateful()
                   .attr("shape", AttrType::Ints)
                   .attr("dtype", AttrType::DType, default_dtype)
                   .attr("seed", AttrType::Int, int64_t{0})
                   .attr("offset", AttrType::Int, int64_t{0}));
}

// Draws with `op`: reserves the counter words of the draw from the generator.
// Eagerly the seed and offset become attributes (the uint64 seed is stored bit
// for bit in an int64). In a graph the node reads the generator's state
// Variable and advances it (the op mutates its state input), so every run of
// the graph draws new numbers.
Tensor draw(const OpDef& op, Generator* gen, Dist dist, bool wide, const Shape& shape, Attrs attrs) {
  for (int64_t d : shape)
    NDF_CHECK(d >= 0 || !current_graph_builder(), ValueError, "[", op.name(), "] shape ", shape_str(shape),
              " is not fully known; a random draw in a graph needs a concrete shape (trace or build the "
              "graph with concrete input shapes)");
  check_shape(shape, op.name());
  uint64_t words = philox::words_for(dist, wide, shape_numel(shape));
  attrs.set("shape", shape.vec());
  Generator& g = gen ? *gen : default_generator();
  if (current_graph_builder()) return call_op1(op, {g.state()}, attrs);
  uint64_t seed, offset;
  if (gen) {
    seed = gen->seed();
    offset = gen->advance(words);
  } else {
    std::lock_guard<std::mutex> lock(default_generator_mutex());
    seed = g.seed();
    offset = g.advance(words);
  }
  attrs.set("seed", static_cast<int64_t>(seed));
  attrs.set("offset", static_cast<int64_t>(offset));
  return call_op1(op, std::span<const Tensor>{}, attrs);
}

}  // namespace

void register_random_ops(OpRegistry& r) {
  draw_op(r, "uniform", DType::f32, "uniform floats in [low, high)")
      .attr("low", AttrType::Float, 0.0)
      .attr("high", AttrType::Float, 1.0)
      .infer(infer_uniform);
  draw_op(r, "normal", DType::f32, "normal floats with mean and std (Box-Muller)")
      .attr("mean", AttrType::Float, 0.0)
      .attr("std", AttrType::Float, 1.0)
      .infer(infer_normal);
  draw_op(r, "bernoulli", DType::f32, "1 with probability p, else 0")
      .attr("p", AttrType::Float, 0.5)
      .infer(infer_bernoulli);
  draw_op(r, "randint", DType::i64, "integers uniform in [low, high), unbiased")
      .attr("low", AttrType::Int, int64_t{0})
      .attr("high", AttrType::Int)
      .infer(infer_randint);
}

// ------------------------------------------------------------------ the API

Generator::Generator(uint64_t seed) {
  state_ = Tensor::empty(Shape{2}, DType::i64);
  state_.mark_variable("rng_state");
  manual_seed(seed);
}

void Generator::manual_seed(uint64_t seed) {
  state_.data<int64_t>()[0] = static_cast<int64_t>(seed);
  state_.data<int64_t>()[1] = 0;
}
uint64_t Generator::seed() const { return static_cast<uint64_t>(state_.data<int64_t>()[0]); }
uint64_t Generator::offset() const { return static_cast<uint64_t>(state_.data<int64_t>()[1]); }

uint64_t Generator::advance(uint64_t n) {
  uint64_t o = offset();
  state_.data<int64_t>()[1] = static_cast<int64_t>(o + philox::round_to_block(n));
  return o;
}

Generator& default_generator() {
  static Generator g(kDefaultSeed);
  return g;
}

void manual_seed(uint64_t seed) {
  std::lock_guard<std::mutex> lock(default_generator_mutex());
  default_generator().manual_seed(seed);
}

Tensor uniform(const Shape& shape, double low, double high, DType dtype, Generator* gen) {
  check_uniform(low, high, dtype);
  static const OpDef& op = op_def("uniform");
  return draw(op, gen, Dist::Uniform, dtype == DType::f64, shape,
              Attrs{{"low", low}, {"high", high}, {"dtype", dtype}});
}

Tensor normal(const Shape& shape, double mean, double std, DType dtype, Generator* gen) {
  check_normal(mean, std, dtype);
  static const OpDef& op = op_def("normal");
  return draw(op, gen, Dist::Normal, dtype == DType::f64, shape,
              Attrs{{"mean", mean}, {"std", std}, {"dtype", dtype}});
}

Tensor randn(const Shape& shape, DType dtype, Generator* gen) { return normal(shape, 0.0, 1.0, dtype, gen); }
Tensor rand(const Shape& shape, DType dtype, Generator* gen) { return uniform(shape, 0.0, 1.0, dtype, gen); }

Tensor bernoulli(const Shape& shape, double p, DType dtype, Generator* gen) {
  check_bernoulli(p);
  static const OpDef& op = op_def("bernoulli");
  return draw(op, gen, Dist::Bernoulli, false, shape, Attrs{{"p", p}, {"dtype", dtype}});
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, DType dtype, Generator* gen) {
  check_randint(low, high, dtype);
  bool wide = static_cast<uint64_t>(high) - static_cast<uint64_t>(low) > (uint64_t(1) << 32);
  static const OpDef& op = op_def("randint");
  return draw(op, gen, Dist::Randint, wide, shape,
              Attrs{{"low", low}, {"high", high}, {"dtype", dtype}});
}

}  // namespace ndflow
