// The table of fusable ops (kernels/fused_ops.h) — each row maps an op name
// to its own scalar functor from kernels/scalar_functions.h, the functor the
// op's kernel in kernels/cpu/math.cc maps too — and the program encoding.
#include "kernels/fused_ops.h"

#include <sstream>

#include "kernels/scalar_functions.h"

namespace ndflow::fused {

namespace {

// Builds the op's functor from the instruction's params.
template <class F>
struct Plain {
  F operator()(const double*) const { return F{}; }
};
struct MakeLeakyRelu {
  scalar::LeakyRelu operator()(const double* p) const { return {p[0]}; }
};
struct MakeLeakyReluGrad {
  scalar::LeakyReluGrad operator()(const double* p) const { return {p[0]}; }
};
struct MakeClamp {
  scalar::Clamp operator()(const double* p) const { return {p[0], p[1]}; }
};

template <typename T, class Make, int Arity>
void apply(const double* params, const T* const* args, T* out, int64_t n) {
  const auto f = Make{}(params);
  const T* a = args[0];
  if constexpr (Arity == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i]);
  } else {
    const T* b = args[1];
    for (int64_t i = 0; i < n; ++i) out[i] = f(a[i], b[i]);
  }
}

template <class Make, int Arity>
constexpr FusableOp row(std::string_view name, std::array<std::string_view, 2> params = {}) {
  return {name, Arity, params, &apply<float, Make, Arity>, &apply<double, Make, Arity>};
}

constexpr FusableOp kTable[] = {
    row<Plain<scalar::Neg>, 1>("neg"),
    row<Plain<scalar::Abs>, 1>("abs"),
    row<Plain<scalar::Exp>, 1>("exp"),
    row<Plain<scalar::Log>, 1>("log"),
    row<Plain<scalar::Log1p>, 1>("log1p"),
    row<Plain<scalar::Sqrt>, 1>("sqrt"),
    row<Plain<scalar::Rsqrt>, 1>("rsqrt"),
    row<Plain<scalar::Square>, 1>("square"),
    row<Plain<scalar::Sin>, 1>("sin"),
    row<Plain<scalar::Cos>, 1>("cos"),
    row<Plain<scalar::Tanh>, 1>("tanh"),
    row<Plain<scalar::Sigmoid>, 1>("sigmoid"),
    row<Plain<scalar::Relu>, 1>("relu"),
    row<MakeLeakyRelu, 1>("leaky_relu", {"negative_slope"}),
    row<Plain<scalar::Gelu>, 1>("gelu"),
    row<Plain<scalar::Softplus>, 1>("softplus"),
    row<Plain<scalar::Sign>, 1>("sign"),
    row<Plain<scalar::Floor>, 1>("floor"),
    row<Plain<scalar::Ceil>, 1>("ceil"),
    row<Plain<scalar::Round>, 1>("round"),
    row<MakeClamp, 1>("clamp", {"lo", "hi"}),
    row<Plain<scalar::Add>, 2>("add"),
    row<Plain<scalar::Sub>, 2>("sub"),
    row<Plain<scalar::Mul>, 2>("mul"),
    row<Plain<scalar::Div>, 2>("div"),
    row<Plain<scalar::Pow>, 2>("pow"),
    row<Plain<scalar::Maximum>, 2>("maximum"),
    row<Plain<scalar::Minimum>, 2>("minimum"),
    row<Plain<scalar::ReluGrad>, 2>("relu_grad"),
    row<MakeLeakyReluGrad, 2>("leaky_relu_grad", {"negative_slope"}),
    row<Plain<scalar::GeluGrad>, 2>("gelu_grad"),
};

}  // namespace

std::span<const FusableOp> fusable_ops() { return kTable; }

const FusableOp* find_fusable(std::string_view name) {
  for (const FusableOp& op : kTable)
    if (op.name == name) return &op;
  return nullptr;
}

Program decode(const Attrs& attrs, size_t num_inputs) {
  const std::string ops = attrs.get<std::string>("ops");
  const auto args = attrs.get<std::vector<int64_t>>("args");
  const auto params = attrs.get<std::vector<double>>("params");
  Program p;
  p.num_inputs = static_cast<int32_t>(num_inputs);
  std::istringstream names(ops);
  size_t next_arg = 0;
  for (std::string name; names >> name;) {
    const FusableOp* op = find_fusable(name);
    NDF_CHECK(op, ValueError, "[fused_elementwise] instruction ", p.instrs.size(), " names op '", name,
              "', which cannot be fused; valid ops are the rows of kernels/fused_ops.h");
    Instr in;
    in.op = op;
    int64_t limit = static_cast<int64_t>(num_inputs + p.instrs.size());
    for (int k = 0; k < op->arity; ++k) {
      NDF_CHECK(next_arg < args.size(), ValueError, "[fused_elementwise] 'args' has ", args.size(),
                " operand indices, too few for the instructions in ops=\"", ops, "\"");
      int64_t a = args[next_arg++];
      NDF_CHECK(a >= 0 && a < limit, ValueError, "[fused_elementwise] instruction ", p.instrs.size(), " (",
                name, ") operand ", k, " is ", a, "; valid: 0..", limit - 1, " (", num_inputs,
                " inputs, then the results of earlier instructions)");
      in.args[static_cast<size_t>(k)] = static_cast<int32_t>(a);
    }
    size_t pi = 2 * p.instrs.size();
    NDF_CHECK(pi + 1 < params.size(), ValueError, "[fused_elementwise] 'params' has ", params.size(),
              " values; need 2 per instruction (", ops, ")");
    in.params = {params[pi], params[pi + 1]};
    if (name == "clamp")
      NDF_CHECK(!(in.params[0] > in.params[1]), ValueError, "[fused_elementwise] clamp instruction ",
                p.instrs.size(), " has lo (", in.params[0], ") greater than hi (", in.params[1], ")");
    p.instrs.push_back(in);
  }
  NDF_CHECK(!p.instrs.empty(), ValueError, "[fused_elementwise] the program is empty (ops=\"", ops, "\")");
  NDF_CHECK(next_arg == args.size(), ValueError, "[fused_elementwise] 'args' has ", args.size(),
            " operand indices but the instructions take ", next_arg);
  NDF_CHECK(params.size() == 2 * p.instrs.size(), ValueError, "[fused_elementwise] 'params' has ",
            params.size(), " values; need exactly 2 per instruction (", 2 * p.instrs.size(), ")");
  return p;
}

Attrs encode(const Program& p) {
  std::string ops;
  std::vector<int64_t> args;
  std::vector<double> params;
  for (const Instr& in : p.instrs) {
    if (!ops.empty()) ops += ' ';
    ops += in.op->name;
    for (int k = 0; k < in.op->arity; ++k) args.push_back(in.args[static_cast<size_t>(k)]);
    params.push_back(in.params[0]);
    params.push_back(in.params[1]);
  }
  return Attrs{{"ops", ops}, {"args", args}, {"params", params}};
}

}  // namespace ndflow::fused
