// Graph passes (runtime/passes/) on hand-built graphs: node counts before and
// after each pass, and every fetched value unchanged, checked by running the
// graph before and after in a Session with its own passes off (graph_eval.h).
// Fusion and the randomized graphs
// are in test_passes_fusion.cc and test_passes_random.cc.
#include <catch2/catch.hpp>

#include <functional>

#include "graph_eval.h"
#include "op_samples.h"
#include "runtime/passes/pass.h"
#include "runtime/passes/pipeline.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {


int64_t node_of_op(const Graph& g, const std::string& op) {
  for (const Node* node : g.nodes())
    if (node->op->name() == op) return node->id;
  return -1;
}

using PassFn = PassReport (*)(Graph&, const PassContext&);

// Runs `pass`, validates the graph and checks that every fetch still
// evaluates to exactly the same values.
PassReport run_checked(Graph& g, const std::vector<NodeOutput>& fetches, const std::map<std::string, Tensor>& feeds,
                       PassFn pass, const std::vector<int64_t>& targets = {}) {
  auto before = evaluate(g, fetches, feeds);
  PassReport r = pass(g, PassContext(g, fetches, targets));
  INFO(r.pass << ": " << r.detail << "\n" << g.to_string());
  REQUIRE_NOTHROW(g.validate());
  REQUIRE(r.nodes_after == static_cast<int64_t>(g.num_nodes()));
  auto after = evaluate(g, fetches, feeds);
  for (size_t i = 0; i < fetches.size(); ++i) REQUIRE_CLOSE(after[i], before[i], 0.0, 0.0);
  return r;
}

PassReport fold(Graph& g, const PassContext& c) { return constant_folding_pass(g, c); }

const Tensor kX = rnd({2, 3}, 11);
const Tensor kY = rnd({2, 3}, 12);

}  // namespace

TEST_CASE("prune keeps what fetches and targets need, through data and control edges", "[passes]") {
  Graph g;
  Tensor v = zeros({2, 3}, DType::f64).mark_variable("v");
  Tensor w = zeros({2, 3}, DType::f64).mark_variable("w");
  Tensor a, kept_by_control;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    Tensor unused = g.placeholder("unused", {2, 3}, DType::f64);
    a = relu(x);
    kept_by_control = cos(x);
    g.add_control_dependency(kept_by_control, a);
    g.mark_output("b", exp(x));  // neither fetched nor needed
    sin(unused);
    assign(v, a);      // the target
    assign_add(w, x);  // a side effect nobody asks for
  }
  int64_t target = node_of_op(g, "assign");
  REQUIRE(g.num_nodes() == 10);
  PassReport r = prune_pass(g, PassContext(g, {g.edge(a)}, {target}));
  INFO(g.to_string());
  CHECK(r.nodes_before == 10);
  CHECK(r.nodes_after == 5);  // x, relu, cos (control), v, assign
  CHECK(count_op(g, "assign") == 1);
  CHECK(count_op(g, "assign_add") == 0);
  CHECK(count_op(g, "cos") == 1);
  CHECK(g.find("unused") == nullptr);
  CHECK(g.inputs().size() == 1);
  CHECK(g.outputs().empty());  // "b" is not produced by this compiled graph
  CHECK(r.detail.find("side effects") != std::string::npos);
  REQUIRE_NOTHROW(g.validate());
  auto out = evaluate(g, {g.edge(a)}, {{"x", kX}});
  REQUIRE_CLOSE(out[0], relu(kX), 0.0, 0.0);
  REQUIRE_CLOSE(v, relu(kX), 0.0, 0.0);  // the target ran
}

TEST_CASE("passes reject fetches and targets that are not in the graph", "[passes]") {
  Graph g;
  {
    GraphScope s(g);
    g.mark_output("y", relu(g.placeholder("x", {2}, DType::f64)));
  }
  CHECK_THROWS_AS(PassContext(g, {{42, 0}}, {}), ValueError);
  CHECK_THROWS_AS(PassContext(g, {{g.outputs()[0].second.node, 3}}, {}), ValueError);
  CHECK_THROWS_AS(PassContext(g, {}, {-1}), ValueError);
}

TEST_CASE("constant folding evaluates constant subgraphs once", "[passes]") {
  Graph g;
  Tensor y;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    Tensor k = exp(seq({2, 3})) * 2.0 + full({2, 3}, 1.0, DType::f64);  // all constant
    y = x * k;
  }
  REQUIRE(g.num_nodes() == 8);  // x, const, exp, full(2), mul, full(1), add, mul
  PassReport r = run_checked(g, {g.edge(y)}, {{"x", kX}}, fold);
  CHECK(r.nodes_after == 3);  // x, the folded constant, mul
  CHECK(count_op(g, "constant") == 1);
  CHECK(count_op(g, "exp") == 0);
  CHECK(r.detail.find("folded 3 nodes") != std::string::npos);
}

TEST_CASE("constant folding leaves Variables, random draws and large results alone", "[passes]") {
  Graph g;
  Tensor v = rnd({2, 3}, 5).mark_variable("v");
  Tensor y1, y2, y3;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    y1 = x + v * 2.0;                                   // v changes between runs
    y2 = uniform({2, 3}, 0.0, 1.0, DType::f64) * 2.0;  // a fresh draw per run
    y3 = full({1100, 1000}, 1.0, DType::f32) + 1.0;     // 1.1M elements
  }
  std::vector<NodeOutput> fetches = {g.edge(y1), g.edge(y2), g.edge(y3)};
  PassReport r = run_checked(g, fetches, {{"x", kX}}, fold);
  CHECK(r.nodes_before == r.nodes_after);
  CHECK(count_op(g, "constant") == 0);
  CHECK(count_op(g, "mul") == 2);
  CHECK(r.detail.find("left unfolded") != std::string::npos);
  // A higher cap folds the large one.
  PassReport big = constant_folding_pass(g, PassContext(g, fetches, {}), int64_t{2} << 20);
  CHECK(count_op(g, "constant") == 1);
  CHECK(big.nodes_after == big.nodes_before - 2);  // add folded in place, both fulls dropped
}

TEST_CASE("constant folding leaves a node whose kernel fails to fail at run time", "[passes]") {
  Graph g;
  Tensor table = seq({3, 2}), bad_index = tensor(std::vector<int64_t>{0, 5}, {2});
  Tensor y;
  {
    GraphScope s(g);
    y = index_select(table, 0, bad_index) * 2.0;
  }
  PassReport r = constant_folding_pass(g, PassContext(g, {g.edge(y)}, {}));
  CHECK(r.nodes_after == r.nodes_before);
  CHECK(count_op(g, "index_select") == 1);
  CHECK(r.detail.find("left to fail at run time") != std::string::npos);
  CHECK(r.detail.find("index_select") != std::string::npos);  // names the node
  REQUIRE_NOTHROW(g.validate());
}

TEST_CASE("CSE merges equal computations, commutative operands in either order", "[passes]") {
  Graph g;
  Tensor z, a1, a2;
  Tensor t = seq({2, 3}), t_copy = t.clone();
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    Tensor y = g.placeholder("y", {2, 3}, DType::f64);
    a1 = exp(x);
    a2 = exp(x);
    Tensor m = mul(a1, y) + mul(y, a2);                       // merge: commutative
    Tensor d = sub(x, y) + sub(y, x);                         // keep both: not commutative
    Tensor l = leaky_relu(x, 0.1) + leaky_relu(x, 0.2);       // keep both: attrs differ
    Tensor f = full({2, 3}, 0.0, DType::f64) + full({2, 3}, -0.0, DType::f64);  // differ in bits
    Tensor c = g.constant(t) + g.constant(t) + g.constant(t_copy);  // same handle merges
    z = m + d + l + f + c;
  }
  PassReport r = run_checked(g, {g.edge(z)}, {{"x", kX}, {"y", kY}}, cse_pass);
  INFO(r.detail);
  CHECK(count_op(g, "exp") == 1);
  CHECK(count_op(g, "mul") == 1);
  CHECK(count_op(g, "sub") == 2);
  CHECK(count_op(g, "leaky_relu") == 2);
  CHECK(count_op(g, "full") == 2);
  CHECK(count_op(g, "constant") == 2);
  // exp, mul, constant, and the add (m = mul + mul) that became mul + mul of one node
  CHECK(r.nodes_before - r.nodes_after == 3);
}

TEST_CASE("CSE never merges random draws or reads on both sides of an update", "[passes]") {
  Graph g;
  Tensor v = rnd({2, 3}, 9).mark_variable("v");
  Tensor u1, u2, r1, r2;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    Attrs draw{{"shape", std::vector<int64_t>{2, 3}}, {"dtype", DType::f64}, {"seed", int64_t{7}}};
    u1 = call_op1(op_def("uniform"), std::span<const Tensor>{}, draw);
    u2 = call_op1(op_def("uniform"), std::span<const Tensor>{}, draw);  // identical attrs
    r1 = v * 2.0;
    assign(v, x);
    r2 = v * 2.0;  // same op and inputs as r1, but after the assign
  }
  std::vector<NodeOutput> fetches = {g.edge(u1), g.edge(u2), g.edge(r1), g.edge(r2)};
  PassReport r = cse_pass(g, PassContext(g, fetches, {node_of_op(g, "assign")}));
  INFO(g.to_string());
  CHECK(count_op(g, "uniform") == 2);
  CHECK(count_op(g, "mul") == 2);
  CHECK(r.nodes_before - r.nodes_after == 1);  // only the two full(2.0) scalars merge
  REQUIRE_NOTHROW(g.validate());
}

TEST_CASE("CSE keeps a fetched duplicate as an identity of the kept node", "[passes]") {
  Graph g;
  Tensor a1, a2;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    a1 = exp(x);
    a2 = exp(x);
  }
  std::vector<NodeOutput> fetches = {g.edge(a1), g.edge(a2)};
  run_checked(g, fetches, {{"x", kX}}, cse_pass);
  CHECK(count_op(g, "exp") == 1);
  CHECK(count_op(g, "identity") == 1);
  CHECK(g.node(fetches[1].node)->op->name() == "identity");
}

namespace {

// Builds x (and anything `make` adds) → y, fetches relu(y) so that y itself
// is not preserved, runs the algebraic pass and returns what relu reads.
struct Simplified {
  bool to_x;        // relu now reads x directly
  int64_t removed;  // nodes the pass removed
  std::string ops;  // the graph afterwards, for messages
};

Simplified simplify(const std::function<Tensor(const Tensor&)>& make, const Shape& shape = {2, 3},
                    DType dtype = DType::f64) {
  Graph g;
  Tensor x, out;
  {
    GraphScope s(g);
    x = g.placeholder("x", shape, dtype);
    Tensor y = make(x);
    g.mark_output("y", y);
    out = relu(y);
  }
  std::vector<int64_t> concrete;
  for (int64_t d : shape) concrete.push_back(d < 0 ? 2 : d);
  PassReport r = run_checked(g, {g.edge(out)}, {{"x", rnd(Shape(concrete), 3).to(dtype)}}, algebraic_pass);
  bool to_x = g.node(g.edge(out).node)->inputs[0] == g.edge(x);
  if (to_x) CHECK(g.outputs()[0].second == g.edge(x));  // the named output follows
  return {to_x, r.nodes_before - r.nodes_after, g.to_string()};
}

}  // namespace

TEST_CASE("algebraic simplification removes identity elements when nothing else changes", "[passes]") {
  std::vector<std::pair<std::string, std::function<Tensor(const Tensor&)>>> exact = {
      {"x*1", [](const Tensor& x) { return x * 1.0; }},
      {"1*x", [](const Tensor& x) { return 1.0 * x; }},
      {"x+0", [](const Tensor& x) { return x + 0.0; }},
      {"0+x", [](const Tensor& x) { return 0.0 + x; }},
      {"x-0", [](const Tensor& x) { return x - 0.0; }},
      {"x/1", [](const Tensor& x) { return x / 1.0; }},
      {"x*ones[3]", [](const Tensor& x) { return x * ones({3}, DType::f64); }},
      {"x*const ones[2,3]", [o = ones({2, 3}, DType::f64)](const Tensor& x) { return x * o; }},
      {"neg(neg(x))", [](const Tensor& x) { return neg(neg(x)); }},
      {"cast to own dtype", [](const Tensor& x) { return call_op1(op_def("cast"), {x}, Attrs{{"dtype", DType::f64}}); }},
      {"transpose(transpose(x))", [](const Tensor& x) { return transpose(transpose(x, 0, 1), 0, 1); }},
      {"reshape(reshape(x)) to x's shape", [](const Tensor& x) { return reshape(reshape(x, {6}), {2, 3}); }},
      {"reshape to x's shape", [](const Tensor& x) { return reshape(x, {2, -1}); }},
  };
  for (auto& [name, make] : exact) {
    INFO(name);
    Simplified s = simplify(make);
    INFO(s.ops);
    CHECK(s.to_x);
  }
}

TEST_CASE("algebraic simplification keeps ops that broadcast, promote or compute", "[passes]") {
  auto x2 = [](const Tensor& x) { return x * 2.0; };
  auto zero_minus = [](const Tensor& x) { return 0.0 - x; };
  auto grows = [](const Tensor& x) { return x * ones({2, 2, 3}, DType::f64); };
  auto promotes = [](const Tensor& x) { return x * scalar(1.0, DType::f64); };
  CHECK_FALSE(simplify(x2).to_x);
  CHECK_FALSE(simplify(zero_minus).to_x);
  CHECK_FALSE(simplify(grows).to_x);
  CHECK_FALSE(simplify(promotes, {2, 3}, DType::f32).to_x);  // f32 * f64 -> f64
  // With an unknown dim, ones[2,3] might broadcast x's [1,3]; ones[1,3] cannot.
  CHECK_FALSE(simplify([](const Tensor& x) { return x * ones({2, 3}, DType::f64); }, {-1, 3}).to_x);
  CHECK(simplify([](const Tensor& x) { return x * ones({1, 3}, DType::f64); }, {-1, 3}).to_x);
}

TEST_CASE("algebraic simplification composes permutes and reshapes", "[passes]") {
  Graph g;
  Tensor p, r;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3, 4}, DType::f64);
    p = permute(permute(x, {1, 2, 0}), {1, 2, 0});  // = permute(x, {2, 0, 1})
    r = reshape(reshape(reshape(x, {6, 4}), {4, 6}), {24});
  }
  std::vector<NodeOutput> fetches = {g.edge(p), g.edge(r)};
  run_checked(g, fetches, {{"x", rnd({2, 3, 4}, 4)}}, algebraic_pass);
  CHECK(count_op(g, "permute") == 1);
  CHECK(g.node(fetches[0].node)->attrs.get<std::vector<int64_t>>("axes") == std::vector<int64_t>{2, 0, 1});
  CHECK(count_op(g, "reshape") == 1);
  CHECK(g.num_nodes() == 3);
}

TEST_CASE("algebraic simplification turns the transpose of a product into a product of transposes", "[passes]") {
  Graph g;
  Tensor y, shared, kept;
  {
    GraphScope s(g);
    Tensor a = g.placeholder("a", {3, 5}, DType::f64);
    Tensor b = g.placeholder("b", {3, 4}, DType::f64);
    y = matmul(permute(a, {1, 0}), b.t().t()).t() * 2.0;  // (a^T b)^T, as a weight gradient comes out
    Tensor p = matmul(permute(a, {1, 0}), b);
    shared = p.t() + 0.5;  // the product is also used untransposed: leave it
    kept = p * 3.0;
  }
  std::vector<NodeOutput> fetches = {g.edge(y), g.edge(shared), g.edge(kept)};
  auto feeds = std::map<std::string, Tensor>{{"a", rnd({3, 5}, 7)}, {"b", rnd({3, 4}, 8)}};
  PassReport r = run_checked(g, fetches, feeds, algebraic_pass);
  CHECK(r.detail.find("1 transposed products") != std::string::npos);
  // y's product now reads b^T and a^T (a^T^T collapsed to a) and is contiguous.
  const Node* mm = g.node(g.node(fetches[0].node)->inputs[0].node);
  REQUIRE(mm->op->name() == "matmul");
  CHECK(g.node(mm->inputs[1].node)->op->name() == "placeholder");
  Session optimized(g);
  auto out = optimized.run({{"a", feeds["a"]}, {"b", feeds["b"]}}, {g.node(fetches[0].node)->name});
  CHECK(out[0].shape() == Shape{4, 5});
}

TEST_CASE("algebraic simplification keeps copies of Variables and fetched nodes", "[passes]") {
  Graph g;
  Tensor v = rnd({2, 3}, 8).mark_variable("v");
  Tensor y1, y2;
  {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    y1 = v * 1.0;  // a snapshot of a buffer that an update may change
    y2 = x * 1.0;  // fetched: stays, as an alias of x
  }
  std::vector<NodeOutput> fetches = {g.edge(y1), g.edge(y2)};
  run_checked(g, fetches, {{"x", kX}}, algebraic_pass);
  CHECK(g.node(fetches[0].node)->op->name() == "mul");
  CHECK(g.node(fetches[1].node)->op->name() == "identity");
}

TEST_CASE("run_passes runs the enabled passes in order and reports each", "[passes]") {
  auto build = [](Graph& g) {
    GraphScope s(g);
    Tensor x = g.placeholder("x", {2, 3}, DType::f64);
    Tensor k = exp(seq({2, 3})) * 0.5;
    Tensor a = relu(x * k) * 1.0;
    Tensor b = relu(k * x);
    exp(x);  // dead
    return std::vector<NodeOutput>{g.edge(tanh(a + b) - 0.25)};
  };
  Graph g;
  auto fetches = build(g);
  auto before = evaluate(g, fetches, {{"x", kX}});
  auto reports = run_passes(g, PassOptions{}, fetches, {});
  INFO(to_string(reports) << g.to_string());
  std::vector<std::string> names;
  for (auto& r : reports) names.push_back(r.pass);
  CHECK(names == std::vector<std::string>{"prune", "constant_folding", "cse", "algebraic", "fusion", "prune_final"});
  for (size_t i = 1; i < reports.size(); ++i) CHECK(reports[i].nodes_before == reports[i - 1].nodes_after);
  REQUIRE_NOTHROW(g.validate());
  CHECK(g.num_nodes() == 4);  // x, the folded k, the scalar 0.25, one fused node
  REQUIRE_CLOSE(evaluate(g, fetches, {{"x", kX}})[0], before[0], 0.0, 0.0);

  Graph none;
  auto f2 = build(none);
  size_t n = none.num_nodes();
  CHECK(run_passes(none, PassOptions::none(), f2, {}).empty());
  CHECK(none.num_nodes() == n);
  PassOptions only_cse = PassOptions::none();
  only_cse.cse = true;
  auto one = run_passes(none, only_cse, f2, {});
  REQUIRE(one.size() == 1);
  CHECK(one[0].pass == "cse");

  // The executor's entry point (pipeline.h) logs one line per pass.
  Graph third;
  GraphEndpoints ends{build(third), {}};
  auto log = run_passes(third, PassOptions{}, ends);
  CHECK(log.size() == 6);
  CHECK(log[0].rfind("prune: ", 0) == 0);
}
