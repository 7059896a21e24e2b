// Randomized graphs through every pass: a seeded generator builds DAGs of
// elementwise, reduction, matmul, shape, random and constant-only ops, with
// planted opportunities (duplicates, identity elements, double negations,
// permute/reshape pairs, constant subexpressions, Variables). Each pass alone
// and the whole pipeline must leave every fetched value unchanged: bit for
// bit in f64, and to rounding in f32.
#include <catch2/catch.hpp>

#include <random>

#include "graph_eval.h"
#include "op_samples.h"
#include "runtime/passes/pass.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

struct RandomGraph {
  Graph g;
  std::vector<NodeOutput> fetches;
  std::map<std::string, Tensor> feeds;
  Tensor variable;  // kept alive with the graph
};

class GraphGenerator {
 public:
  GraphGenerator(uint64_t seed, DType dt) : rng_(seed), dt_(dt), seed_(seed) {}

  RandomGraph build(int steps) {
    RandomGraph r;
    r.variable = rnd({4, 5}, seed_ + 1000).to(dt_).mark_variable("v");
    r.feeds = {{"x", rnd({4, 5}, seed_ + 1, -2, 2).to(dt_)}, {"y", rnd({4, 5}, seed_ + 2, -2, 2).to(dt_)}};
    // Eager data first: inside the scope, tensor() makes graph constants.
    Tensor c0 = rnd({4, 5}, seed_ + 3).to(dt_), c1 = rnd({4, 5}, seed_ + 4).to(dt_);
    Tensor w = rnd({5, 5}, seed_ + 5, -0.5, 0.5).to(dt_);
    GraphScope scope(r.g);
    pool_ = {r.g.placeholder("x", {4, 5}, dt_), r.g.placeholder("y", {4, 5}, dt_), r.g.variable(r.variable)};
    consts_ = {r.g.constant(c0), r.g.constant(c1)};
    for (auto& c : consts_) pool_.push_back(c);
    weight_ = r.g.constant(w);
    for (int i = 0; i < steps; ++i) pool_.push_back(step());
    r.fetches.push_back(r.g.edge(pool_.back()));
    for (int i = 0; i < 3; ++i) r.fetches.push_back(r.g.edge(pick()));
    r.g.mark_output("out", pool_.back());
    return r;
  }

 private:
  size_t below(size_t n) { return static_cast<size_t>(rng_() % n); }
  // Mostly recent values (deep chains), sometimes any (wide DAGs that keep
  // using the inputs).
  const Tensor& pick() {
    if (below(2)) return pool_[below(pool_.size())];
    return pool_[pool_.size() - 1 - below(std::min<size_t>(pool_.size(), 8))];
  }
  const Tensor& pick_const() { return consts_[below(consts_.size())]; }

  Tensor unary(const Tensor& t) {
    switch (below(10)) {
      case 0: return tanh(t);
      case 1: return sigmoid(t);
      case 2: return sin(t);
      case 3: return neg(t);
      case 4: return relu(t);
      case 5: return abs(t);
      case 6: return leaky_relu(t, 0.1);
      case 7: return clamp(t, -1.5, 1.5);
      case 8: return gelu(t);
      default: return exp(tanh(t));
    }
  }
  Tensor binary(const Tensor& a, const Tensor& b) {
    switch (below(5)) {
      case 0: return a + b;
      case 1: return a - b;
      case 2: return a * b;
      case 3: return maximum(a, b);
      default: return minimum(a, b);
    }
  }

  Tensor step() {
    const Tensor& t = pick();
    switch (below(14)) {
      case 0: case 1: return unary(t);
      case 2: case 3: return binary(t, pick());
      case 4: {  // the same op on the same inputs twice (CSE)
        uint64_t state = rng_();
        std::mt19937_64 saved(state);
        rng_.seed(state);
        Tensor a = unary(t);
        rng_ = saved;
        return binary(a, unary(t));
      }
      case 5: {  // identity elements (algebraic)
        switch (below(5)) {
          case 0: return t * 1.0;
          case 1: return 1.0 * t;
          case 2: return t + 0.0;
          case 3: return t - 0.0;
          default: return t / 1.0;
        }
      }
      case 6: return binary(neg(neg(t)), call_op1(op_def("cast"), {t}, Attrs{{"dtype", dt_}}));
      case 7: return binary(unary(pick_const()), unary(pick_const()));  // constant subgraph
      case 8: {  // reduce and broadcast back
        Tensor r = below(2) ? sum(t, {1}, true) : mean(t, {0}, true);
        return binary(t, tanh(r));
      }
      case 9: return tanh(matmul(t, weight_));
      case 10: return reshape(permute(permute(reshape(t, {20}), {0}), {0}), {4, 5}) +
                      transpose(transpose(t, 0, 1), 0, 1);
      case 11: return t * uniform({4, 5}, -1.0, 1.0, dt_);  // stateful: never folded or merged
      case 12: return binary(t, consts_[0] * 2.0 + 1.0);
      default: return binary(t, sigmoid(pool_[2]));         // reads the Variable
    }
  }

  std::mt19937_64 rng_;
  DType dt_;
  uint64_t seed_;
  std::vector<Tensor> pool_, consts_;
  Tensor weight_;
};

using PassFn = PassReport (*)(Graph&, const PassContext&);
PassReport fold(Graph& g, const PassContext& c) { return constant_folding_pass(g, c); }
PassReport pipeline(Graph& g, const PassContext& c) {
  auto reports = run_passes(g, PassOptions{}, c.fetches(), c.targets());
  return {"pipeline", reports.front().nodes_before, reports.back().nodes_after, to_string(reports)};
}

void check_all_passes(DType dt, double rtol, int seeds) {
  const std::vector<std::pair<const char*, PassFn>> passes = {
      {"prune", prune_pass}, {"constant_folding", fold}, {"cse", cse_pass},
      {"algebraic", algebraic_pass}, {"fusion", fusion_pass}, {"pipeline", pipeline}};
  std::map<std::string, int64_t> removed;
  for (int seed = 0; seed < seeds; ++seed) {
    RandomGraph r = GraphGenerator(static_cast<uint64_t>(seed), dt).build(30);
    REQUIRE_NOTHROW(r.g.validate());
    auto reference = evaluate(r.g, r.fetches, r.feeds);
    for (auto& [name, pass] : passes) {
      Graph g = r.g.clone();
      PassReport rep = pass(g, PassContext(g, r.fetches, {}));
      INFO("seed " << seed << ", " << name << ": " << rep.detail << "\n" << g.to_string());
      REQUIRE_NOTHROW(g.validate());
      CHECK(rep.nodes_after <= rep.nodes_before);
      auto got = evaluate(g, r.fetches, r.feeds);
      for (size_t i = 0; i < got.size(); ++i) REQUIRE_CLOSE(got[i], reference[i], rtol, rtol);
      removed[name] += rep.nodes_before - rep.nodes_after;
    }
  }
  // Every pass found the opportunities planted for it.
  for (auto& [name, n] : removed) {
    INFO(name << " removed " << n << " nodes over " << seeds << " graphs");
    CHECK(n >= seeds);
  }
}

}  // namespace

TEST_CASE("every pass leaves random f64 graphs bit-identical", "[passes][random]") {
  check_all_passes(DType::f64, 0.0, 40);
}

TEST_CASE("every pass leaves random f32 graphs equal to rounding", "[passes][random]") {
  check_all_passes(DType::f32, 1e-5, 15);
}

TEST_CASE("random graphs: the pipeline folds, merges, simplifies and fuses", "[passes][random]") {
  RandomGraph r = GraphGenerator(7, DType::f64).build(60);
  Graph g = r.g.clone();
  auto reports = run_passes(g, PassOptions{}, r.fetches, {});
  INFO(to_string(reports));
  for (auto& rep : reports) CHECK_FALSE(rep.detail.empty());
  int64_t fused = 0, uniform = 0, orig_uniform = 0;
  for (const Node* n : g.nodes()) {
    fused += n->op->name() == "fused_elementwise";
    uniform += n->op->name() == "uniform";
  }
  for (const Node* n : r.g.nodes()) orig_uniform += n->op->name() == "uniform";
  CHECK(fused > 0);
  // Draws that are still needed stay: prune may drop some, nothing merges them.
  CHECK(uniform <= orig_uniform);
  auto want = evaluate(r.g, r.fetches, r.feeds);
  auto got = evaluate(g, r.fetches, r.feeds);
  for (size_t i = 0; i < got.size(); ++i) REQUIRE_CLOSE(got[i], want[i], 0.0, 0.0);
}
