// Element types of ndflow tensors, their C++ storage types, type promotion
// (NumPy/PyTorch rules) and the dtype dispatch helpers kernels use:
//
//   dispatch_float(t.dtype(), "exp", [&]<typename T>() { ... T is float or double ... });
#pragma once

#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ndflow {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, i64, u8, boolean };
inline constexpr int kNumDTypes = 8;

// IEEE binary16, stored as bits; arithmetic goes through float.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  explicit Half(float f);
  operator float() const;
};

// bfloat16: the upper half of a float32, rounded to nearest even.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a (quiet) NaN
      bits = static_cast<uint16_t>((u >> 16) | 0x40);
      return;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = static_cast<uint16_t>(u >> 16);
  }
  operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

NDF_EXPORT std::string_view dtype_name(DType t);
NDF_EXPORT DType dtype_from_name(std::string_view name);  // throws NotFoundError
NDF_EXPORT size_t dtype_size(DType t);
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}
inline bool is_integral(DType t) { return t == DType::i32 || t == DType::i64 || t == DType::u8; }
// The common type two operands are computed in (NumPy/PyTorch promotion:
// bool < integers < floats; f16 with bf16 gives f32).
NDF_EXPORT DType promote_types(DType a, DType b);
inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<Half> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };
template <typename T> inline constexpr DType dtype_v = dtype_of<T>::value;

// Calls fn.template operator()<T>() with the storage type T of `t`. `what`
// names the caller for the error raised on an unsupported dtype.
template <typename Fn>
decltype(auto) dispatch_all(DType t, std::string_view what, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::f16: return fn.template operator()<Half>();
    case DType::bf16: return fn.template operator()<BFloat16>();
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    case DType::boolean: return fn.template operator()<bool>();
  }
  fail<TypeError>("[", what, "] invalid dtype code ", static_cast<int>(t));
}

// f32 and f64: what the floating-point kernels compute in.
template <typename Fn>
decltype(auto) dispatch_float(DType t, std::string_view what, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    default:
      fail<TypeError>("[", what, "] got dtype ", dtype_name(t), "; valid dtypes: f32, f64");
  }
}

// f32, f64, i32, i64, u8: types with ordinary arithmetic.
template <typename Fn>
decltype(auto) dispatch_numeric(DType t, std::string_view what, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn.template operator()<float>();
    case DType::f64: return fn.template operator()<double>();
    case DType::i32: return fn.template operator()<int32_t>();
    case DType::i64: return fn.template operator()<int64_t>();
    case DType::u8: return fn.template operator()<uint8_t>();
    default:
      fail<TypeError>("[", what, "] got dtype ", dtype_name(t),
                      "; valid dtypes: f32, f64, i32, i64, u8");
  }
}

// Numeric types plus bool (comparisons, where, copies).
template <typename Fn>
decltype(auto) dispatch_numeric_bool(DType t, std::string_view what, Fn&& fn) {
  if (t == DType::boolean) return fn.template operator()<bool>();
  return dispatch_numeric(t, what, std::forward<Fn>(fn));
}

}  // namespace ndflow
