// The fusion pass (runtime/passes/fusion.cc) and the fused_elementwise
// kernel (kernels/cpu/fused.cc): which groups form, and that the fused node
// computes exactly what the unfused ops did.
#include <catch2/catch.hpp>

#include "graph_eval.h"
#include "kernels/fused_ops.h"
#include "op_samples.h"
#include "runtime/passes/pass.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {


// Fuses, validates, and returns the fetched values before and after.
std::pair<std::vector<Tensor>, std::vector<Tensor>> fuse(Graph& g, const std::vector<NodeOutput>& fetches,
                                                         const std::map<std::string, Tensor>& feeds,
                                                         PassReport* report = nullptr) {
  auto before = evaluate(g, fetches, feeds);
  PassReport r = fusion_pass(g, PassContext(g, fetches, {}));
  INFO(r.detail << "\n" << g.to_string());
  REQUIRE_NOTHROW(g.validate());
  if (report) *report = r;
  return {before, evaluate(g, fetches, feeds)};
}

}  // namespace

TEST_CASE("fusion turns a 5-op chain into one node with the same results", "[passes][fusion]") {
  for (DType dt : {DType::f64, DType::f32}) {
    INFO(dtype_name(dt));
    Graph g;
    Tensor y;
    {
      GraphScope s(g);
      Tensor x = g.placeholder("x", {64, 33}, dt);
      y = tanh(sigmoid(exp(neg(gelu(x)))));
    }
    REQUIRE(g.num_nodes() == 6);
    PassReport r;
    auto [before, after] = fuse(g, {g.edge(y)}, {{"x", rnd({64, 33}, 21, -3, 3).to(dt)}}, &r);
    CHECK(r.nodes_before == 6);
    CHECK(r.nodes_after == 2);
    CHECK(count_op(g, "fused_elementwise") == 1);
    CHECK(g.node(g.edge(y).node)->attrs.get<std::string>("ops") == "gelu neg exp sigmoid tanh");
    // The fused kernel applies the ops' own scalar functions in the same
    // dtype: exact in f64, and within an ulp in f32 whatever the compiler
    // does with contraction across inlined functors.
    if (dt == DType::f64) REQUIRE_CLOSE(after[0], before[0], 0.0, 0.0);
    else REQUIRE_CLOSE(after[0], before[0], 0.0, 1.2e-7);
  }
}

TEST_CASE("fusion takes trees with broadcast inputs and op parameters", "[passes][fusion]") {
  Graph g;
  Tensor y;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {4, 3}, DType::f64);
    Tensor w = g.placeholder("w", {3}, DType::f64);
    Tensor b = g.placeholder("b", {4, 1}, DType::f64);
    Tensor t = x * w + b;
    y = clamp(leaky_relu(t, 0.3), -0.2, 0.5) + square(t);  // t feeds two nodes
  }
  auto [before, after] = fuse(g, {g.edge(y)}, {{"x", rnd({4, 3}, 1)}, {"w", rnd({3}, 2)}, {"b", rnd({4, 1}, 3)}});
  REQUIRE_CLOSE(after[0], before[0], 0.0, 0.0);
  // t = add(mul) feeds leaky_relu and square: it stays, fused with mul; the
  // rest (leaky_relu, clamp, square, add) is the second group.
  CHECK(count_op(g, "fused_elementwise") == 2);
  CHECK(g.num_nodes() == 5);
  const Node& root = *g.node(g.edge(y).node);
  CHECK(root.attrs.get<std::string>("ops") == "leaky_relu clamp square add");
  auto params = root.attrs.get<std::vector<double>>("params");
  CHECK(params[0] == 0.3);
  CHECK(params[2] == -0.2);
  CHECK(params[3] == 0.5);
}

TEST_CASE("fusion leaves shared, reshaped, fetched and non-float intermediates unfused", "[passes][fusion]") {
  Graph g;
  Tensor shared, narrow, fetched, ints, y;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {4, 3}, DType::f64);
    Tensor col = g.placeholder("col", {4, 1}, DType::f64);
    Tensor i = g.placeholder("i", {4, 3}, DType::i64);
    shared = exp(x);                        // two consumers
    narrow = sin(col);                      // [4,1]: would be computed 3 times per row
    fetched = cos(x);                       // fetched on its own
    ints = relu(i) * i;                     // integer: not fusable
    y = (shared + sin(shared)) * narrow + fetched;
  }
  std::vector<NodeOutput> fetches = {g.edge(y), g.edge(fetched), g.edge(ints)};
  auto [before, after] = fuse(g, fetches,
                              {{"x", rnd({4, 3}, 1)}, {"col", rnd({4, 1}, 2)},
                               {"i", tensor(std::vector<int64_t>{1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12}, {4, 3})}});
  for (size_t k = 0; k < fetches.size(); ++k) REQUIRE_CLOSE(after[k], before[k], 0.0, 0.0);
  CHECK(count_op(g, "exp") == 1);
  CHECK(count_op(g, "cos") == 1);
  CHECK(count_op(g, "relu") == 1);
  CHECK(count_op(g, "fused_elementwise") == 1);  // sin(exp), add, mul, add
  CHECK(count_op(g, "sin") == 1);                // sin(col) stays, alone
  const Node& root = *g.node(g.edge(y).node);
  CHECK(root.attrs.get<std::string>("ops") == "sin add mul add");
}

TEST_CASE("the fused kernel handles large, strided and scalar operands", "[passes][fusion]") {
  // Big enough to split across threads and blocks; operands that broadcast
  // along rows, along columns, as a 0-d scalar, and a transposed view.
  Tensor a = rnd({300, 1000}, 1);
  Tensor row = rnd({1000}, 2);
  Tensor col = rnd({300, 1}, 3);
  Tensor s = scalar(0.75, DType::f64);
  Tensor at = rnd({1000, 300}, 4).transpose(0, 1);
  // ((a * row + col) - at) * s, then relu
  fused::Program p;
  p.num_inputs = 5;
  auto op = [](const char* n) { return fused::find_fusable(n); };
  p.instrs = {{op("mul"), {0, 1}, {}}, {op("add"), {5, 2}, {}}, {op("sub"), {6, 4}, {}},
              {op("mul"), {7, 3}, {}}, {op("relu"), {8, 0}, {}}};
  Tensor got = call_op1(op_def("fused_elementwise"), {a, row, col, s, at}, fused::encode(p));
  Tensor want = relu((a * row + col - at) * s);
  REQUIRE_CLOSE(got, want, 0.0, 0.0);
  Tensor got32 = call_op1(op_def("fused_elementwise"),
                          {a.to(DType::f32), row.to(DType::f32), col.to(DType::f32), s.to(DType::f32),
                           at.to(DType::f32)},
                          fused::encode(p));
  Tensor want32 = relu((a.to(DType::f32) * row.to(DType::f32) + col.to(DType::f32) - at.to(DType::f32)) *
                       s.to(DType::f32));
  REQUIRE_CLOSE(got32, want32, 0.0, 1.2e-7);
}

TEST_CASE("fused_elementwise rejects malformed programs with clear errors", "[passes][fusion]") {
  const OpDef& f = op_def("fused_elementwise");
  Tensor x = rnd({2, 3}, 1);
  auto attrs = [](std::string ops, std::vector<int64_t> args, std::vector<double> params) {
    return Attrs{{"ops", ops}, {"args", args}, {"params", params}};
  };
  auto run = [&](const Attrs& a, std::vector<Tensor> in) { return call_op1(f, in, a); };
  CHECK_NOTHROW(run(attrs("exp relu", {0, 1}, {0, 0, 0, 0}), {x}));
  CHECK_THROWS_AS(run(attrs("exp where", {0, 1}, {0, 0, 0, 0}), {x}), ValueError);   // not fusable
  CHECK_THROWS_AS(run(attrs("exp relu", {0, 2}, {0, 0, 0, 0}), {x}), ValueError);    // forward reference
  CHECK_THROWS_AS(run(attrs("exp relu", {0}, {0, 0, 0, 0}), {x}), ValueError);       // too few args
  CHECK_THROWS_AS(run(attrs("exp", {0, 0}, {0, 0}), {x}), ValueError);               // too many args
  CHECK_THROWS_AS(run(attrs("exp", {0}, {0}), {x}), ValueError);                     // params per instr
  CHECK_THROWS_AS(run(attrs("", {}, {}), {x}), ValueError);                          // empty
  CHECK_THROWS_AS(run(attrs("clamp", {0}, {1.0, -1.0}), {x}), ValueError);           // lo > hi
  CHECK_THROWS_AS(run(attrs("add", {0, 1}, {0, 0}), {x, x.to(DType::f32)}), TypeError);
  CHECK_THROWS_AS(run(attrs("neg", {0}, {0, 0}), {tensor(std::vector<int64_t>{1, 2}, {2})}), TypeError);
  CHECK_THROWS_AS(run(attrs("add", {0, 1}, {0, 0}), {x, rnd({4}, 2)}), ShapeError);
  try {
    run(attrs("exp relu", {0, 2}, {0, 0, 0, 0}), {x});
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()).find("[fused_elementwise]") != std::string::npos);
  }
}
