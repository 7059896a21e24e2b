#include "core/dtype.h"

#include <array>

namespace ndflow {

namespace {
constexpr std::array<std::string_view, kNumDTypes> kNames = {"f32", "f64", "f16", "bf16",
                                                             "i32", "i64", "u8",  "bool"};
constexpr std::array<size_t, kNumDTypes> kSizes = {4, 8, 2, 2, 4, 8, 1, 1};
}  // namespace

Half::Half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) {  // inf or NaN
    bits = static_cast<uint16_t>(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0u));
    return;
  }
  if (mag >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
    bits = static_cast<uint16_t>(sign | 0x7c00u);
    return;
  }
  if (mag < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    // Let the FPU round: adding 0.5 aligns the half subnormal grid with float's mantissa LSBs.
    float af;
    std::memcpy(&af, &mag, 4);
    af += 0.5f;
    uint32_t a;
    std::memcpy(&a, &af, 4);
    bits = static_cast<uint16_t>(sign | (a - 0x3f000000u));
    return;
  }
  // Normal: rebias exponent (127 -> 15) and round mantissa to nearest even.
  uint32_t odd = (mag >> 13) & 1u;
  mag += 0xc8000fffu + odd;  // -(112 << 23) + rounding bias
  bits = static_cast<uint16_t>(sign | (mag >> 13));
}

Half::operator float() const {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu;
  uint32_t man = bits & 0x3ffu;
  uint32_t out;
  if (exp == 0x1f) {
    out = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    if (man == 0) {
      out = sign;
    } else {  // subnormal: value = man * 2^-24
      float f = static_cast<float>(man) * 5.9604644775390625e-8f;
      std::memcpy(&out, &f, 4);
      out |= sign;
    }
  } else {
    out = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &out, 4);
  return f;
}

std::string_view dtype_name(DType t) {
  auto i = static_cast<size_t>(t);
  return i < kNames.size() ? kNames[i] : std::string_view("<invalid dtype>");
}

DType dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i)
    if (kNames[i] == name) return static_cast<DType>(i);
  if (name == "float32") return DType::f32;
  if (name == "float64") return DType::f64;
  if (name == "float16") return DType::f16;
  if (name == "bfloat16") return DType::bf16;
  if (name == "int32") return DType::i32;
  if (name == "int64") return DType::i64;
  if (name == "uint8") return DType::u8;
  fail<NotFoundError>("unknown dtype '", name, "'; valid: f32, f64, f16, bf16, i32, i64, u8, bool");
}

size_t dtype_size(DType t) {
  auto i = static_cast<size_t>(t);
  NDF_CHECK(i < kSizes.size(), InternalError, "invalid dtype code ", i);
  return kSizes[i];
}

DType promote_types(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {  // category: bool 0, integer 1, float 2
    return t == DType::boolean ? 0 : is_integral(t) ? 1 : 2;
  };
  int ra = rank(a), rb = rank(b);
  if (ra != rb) return ra > rb ? a : b;
  if (ra == 2) {
    if (a == DType::f64 || b == DType::f64) return DType::f64;
    return DType::f32;  // any mix of f32, f16, bf16
  }
  // integers: u8 < i32 < i64
  if (a == DType::i64 || b == DType::i64) return DType::i64;
  return DType::i32;
}

}  // namespace ndflow
