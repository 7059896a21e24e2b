// The scalar function of every elementwise op, written once. CPU kernels map
// them over tensors (kernels/cpu/math.cc); the graph fusion pass composes
// them into one loop. Each is a functor with a templated call operator so
// one definition serves f32, f64 and, where it makes sense, integers.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

namespace ndflow::scalar {

template <typename T>
inline constexpr bool is_float_v = std::is_floating_point_v<T>;

// ------------------------------------------------------------------- unary
struct Neg { template <class T> T operator()(T x) const { return static_cast<T>(-x); } };
struct Abs {
  template <class T> T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) return x; else return x < T(0) ? static_cast<T>(-x) : x;
  }
};
struct Exp { template <class T> T operator()(T x) const { return std::exp(x); } };
struct Log { template <class T> T operator()(T x) const { return std::log(x); } };
struct Log1p { template <class T> T operator()(T x) const { return std::log1p(x); } };
struct Sqrt { template <class T> T operator()(T x) const { return std::sqrt(x); } };
struct Rsqrt { template <class T> T operator()(T x) const { return T(1) / std::sqrt(x); } };
struct Square { template <class T> T operator()(T x) const { return static_cast<T>(x * x); } };
struct Sin { template <class T> T operator()(T x) const { return std::sin(x); } };
struct Cos { template <class T> T operator()(T x) const { return std::cos(x); } };
struct Tanh { template <class T> T operator()(T x) const { return std::tanh(x); } };
struct Sigmoid {
  // Split by sign so that exp never overflows.
  template <class T> T operator()(T x) const {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    T e = std::exp(x);
    return e / (T(1) + e);
  }
};
struct Relu { template <class T> T operator()(T x) const { return x > T(0) ? x : T(0); } };
struct LeakyRelu {
  double slope;
  template <class T> T operator()(T x) const { return x > T(0) ? x : static_cast<T>(x * slope); }
};
// d leaky_relu / dx times the incoming gradient: (x, g) -> g * (x > 0 ? 1 : slope).
struct ReluGrad {  // 0 where x <= 0 whatever g is, as PyTorch's threshold_backward
  template <class T> T operator()(T x, T g) const { return x > T(0) ? g : T(0); }
};
struct LeakyReluGrad {
  double slope;
  template <class T> T operator()(T x, T g) const { return x > T(0) ? g : static_cast<T>(g * slope); }
};
struct Gelu {  // exact GELU: x * Phi(x)
  template <class T> T operator()(T x) const {
    return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
  }
};
// d gelu / dx = Phi(x) + x * phi(x), times g.
struct GeluGrad {
  template <class T> T operator()(T x, T g) const {
    T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
    T pdf = std::exp(T(-0.5) * x * x) * T(0.39894228040143267794);
    return g * (cdf + x * pdf);
  }
};
struct Softplus {  // log(1 + e^x) = max(x, 0) + log1p(e^-|x|)
  template <class T> T operator()(T x) const {
    return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::abs(x)));
  }
};
struct Sign {
  template <class T> T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) return static_cast<T>(x > T(0));
    else return static_cast<T>((x > T(0)) - (x < T(0)));
  }
};
struct Floor { template <class T> T operator()(T x) const { if constexpr (is_float_v<T>) return std::floor(x); else return x; } };
struct Ceil { template <class T> T operator()(T x) const { if constexpr (is_float_v<T>) return std::ceil(x); else return x; } };
struct Round {  // half to even, like NumPy (nearbyint under the default rounding mode)
  template <class T> T operator()(T x) const { if constexpr (is_float_v<T>) return std::nearbyint(x); else return x; }
};
struct LogicalNot { template <class T> bool operator()(T x) const { return !static_cast<bool>(x); } };

// ------------------------------------------------------------------ binary
struct Add { template <class T> T operator()(T a, T b) const { return static_cast<T>(a + b); } };
struct Sub { template <class T> T operator()(T a, T b) const { return static_cast<T>(a - b); } };
struct Mul { template <class T> T operator()(T a, T b) const { return static_cast<T>(a * b); } };
struct Div { template <class T> T operator()(T a, T b) const { return a / b; } };
struct Pow { template <class T> T operator()(T a, T b) const { return std::pow(a, b); } };
// NaN propagates, as in NumPy's maximum/minimum.
struct Maximum {
  template <class T> T operator()(T a, T b) const {
    if constexpr (is_float_v<T>) if (a != a || b != b) return a + b;
    return a > b ? a : b;
  }
};
struct Minimum {
  template <class T> T operator()(T a, T b) const {
    if constexpr (is_float_v<T>) if (a != a || b != b) return a + b;
    return a < b ? a : b;
  }
};
struct Eq { template <class T> bool operator()(T a, T b) const { return a == b; } };
struct Ne { template <class T> bool operator()(T a, T b) const { return a != b; } };
struct Lt { template <class T> bool operator()(T a, T b) const { return a < b; } };
struct Le { template <class T> bool operator()(T a, T b) const { return a <= b; } };
struct Gt { template <class T> bool operator()(T a, T b) const { return a > b; } };
struct Ge { template <class T> bool operator()(T a, T b) const { return a >= b; } };
struct LogicalAnd { template <class T> bool operator()(T a, T b) const { return static_cast<bool>(a) && static_cast<bool>(b); } };
struct LogicalOr { template <class T> bool operator()(T a, T b) const { return static_cast<bool>(a) || static_cast<bool>(b); } };
struct Clamp {
  double lo, hi;  // +-inf when absent
  template <class T> T operator()(T x) const {
    double v = static_cast<double>(x);
    if (v < lo) return static_cast<T>(lo);
    if (v > hi) return static_cast<T>(hi);
    return x;
  }
};

}  // namespace ndflow::scalar
