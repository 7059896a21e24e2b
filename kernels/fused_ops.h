// The op "fused_elementwise" (ops/fused.cc) runs a small expression program
// that the fusion pass (runtime/passes/fusion.cc) built from a tree of
// elementwise ops; its CPU kernel is kernels/cpu/fused.cc. The table of
// fusable ops (kernels/fused_ops.cc) is the one place that says which ops
// can be fused and how each is evaluated: op name -> the op's own scalar
// functor (kernels/scalar_functions.h, which the op's kernel maps too). The
// program is encoded in node attributes:
//
//   ops    String  instruction op names, separated by spaces: "mul add relu"
//   args   Ints    the operands of every instruction in order (arity from the
//                  table): k < num_inputs is input k, otherwise the result of
//                  instruction k - num_inputs (always an earlier one)
//   params Floats  two per instruction: the scalar attributes of its op
//                  (leaky_relu's slope, clamp's lo and hi), 0 when unused
//
// The last instruction's result is the output. Names, not numeric codes, keep
// saved graphs valid when the table grows.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/op_registry.h"

namespace ndflow::fused {

// Applies one instruction to a block of n elements: out[i] = f(a0[i], a1[i]).
template <typename T>
using BlockFn = void (*)(const double* params, const T* const* args, T* out, int64_t n);

struct FusableOp {
  std::string_view name;                   // the registered op
  int arity;                               // number of tensor inputs
  std::array<std::string_view, 2> params;  // attributes that parameterize the functor
  BlockFn<float> f32;
  BlockFn<double> f64;
};

// Every op whose f32/f64 scalar function the fused kernel can evaluate
// (defined in kernels/fused_ops.cc, next to the functors). Ops with bool
// inputs or results (comparisons, logic, where) stay unfused: a program
// computes in one floating dtype throughout.
NDF_EXPORT std::span<const FusableOp> fusable_ops();
// The table row of an op, or null when the op cannot be fused.
NDF_EXPORT const FusableOp* find_fusable(std::string_view name);

struct Instr {
  const FusableOp* op = nullptr;
  std::array<int32_t, 2> args{};  // operand indices (see the header comment)
  std::array<double, 2> params{};
};

struct Program {
  int32_t num_inputs = 0;
  std::vector<Instr> instrs;
};

inline constexpr std::string_view kOpName = "fused_elementwise";

// Parses and checks the attributes of a fused_elementwise node with
// `num_inputs` inputs; ValueError saying what is wrong otherwise.
NDF_EXPORT Program decode(const Attrs& attrs, size_t num_inputs);
// The attributes that decode() turns back into `p`.
NDF_EXPORT Attrs encode(const Program& p);

}  // namespace ndflow::fused
