// The data-parallel rewrite (runtime/passes/data_parallel.h) in a cluster of
// one: the structure it builds (buckets by size and dtype, in the order
// backward produces the gradients; updates and fetched gradients rewired),
// idempotence, and unchanged training results (a mean over one rank is the
// value itself). The N-rank equivalence is tests/dist/test_graph_data_parallel.py.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>

#include "graph_eval.h"
#include "op_samples.h"
#include "ops/collective.h"
#include "runtime/passes/data_parallel.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

struct Model {
  std::vector<Tensor> params, velocity, steps;
  Tensor lr;
  Graph graph;
};

// A 2-layer MLP step with SGD momentum; `extra_f64` adds an f64 parameter
// (a scale on the logits) so that two dtypes need reducing.
Model make_model(bool extra_f64 = false) {
  Model m;
  Generator gen(5);
  m.params = {randn({12, 16}, DType::f32, &gen) * 0.3, zeros({16}), randn({16, 4}, DType::f32, &gen) * 0.3,
              zeros({4})};
  if (extra_f64) m.params.push_back(ones({4}, DType::f64));
  for (size_t i = 0; i < m.params.size(); ++i) {
    m.params[i] = m.params[i].contiguous().clone().mark_variable("p" + std::to_string(i));
    m.velocity.push_back(zeros_like(m.params[i]).mark_variable());
    m.steps.push_back(zeros({}, DType::i64).mark_variable());
  }
  m.lr = scalar(0.1).mark_variable("lr");
  MomentumOptions mo;
  mo.momentum = 0.9;
  GraphScope scope(m.graph);
  Tensor x = m.graph.placeholder("x", {-1, 12});
  Tensor y = m.graph.placeholder("y", {-1}, DType::i64);
  const auto& p = m.params;
  Tensor logits = matmul(relu(matmul(x, p[0]) + p[1]), p[2]) + p[3];
  if (extra_f64) logits = logits * cast(p[4], DType::f32);
  Tensor loss = cross_entropy(logits, y);
  auto gs = gradients({loss}, p);
  for (size_t i = 0; i < p.size(); ++i) {
    apply_momentum(p[i], gs[i], m.velocity[i], m.steps[i], m.lr, mo);
    m.graph.mark_output("grad_" + std::to_string(i), gs[i]);
  }
  m.graph.mark_output("loss", loss);
  return m;
}

std::vector<const Node*> nodes_of(const Graph& g, const std::string& op) {
  std::vector<const Node*> v;
  for (const Node* n : g.nodes())
    if (n->op->name() == op) v.push_back(n);
  return v;
}

// Which parameter (index into m.params) an update node writes.
size_t param_of(const Model& m, const Node& update) {
  const Node& var = *m.graph.node(update.inputs[0].node);
  const Tensor& t = std::get<Tensor>(*var.attrs.find("value"));
  for (size_t i = 0; i < m.params.size(); ++i)
    if (t.same(m.params[i])) return i;
  FAIL("update node " << update.name << " writes no parameter of the model");
  return 0;
}

// bucket node id -> the parameters whose gradients it reduces, via the updates.
std::map<int64_t, std::set<size_t>> buckets_of(const Model& m) {
  std::map<int64_t, std::set<size_t>> b;
  for (const Node* u : nodes_of(m.graph, "apply_momentum")) {
    const Node& producer = *m.graph.node(u->inputs[1].node);
    REQUIRE(producer.op->name() == "all_reduce_coalesced");
    b[producer.id].insert(param_of(m, *u));
  }
  return b;
}

std::vector<std::string> targets(const Graph& g) {
  std::vector<std::string> t;
  for (const Node* n : nodes_of(g, "apply_momentum")) t.push_back(n->name);
  return t;
}

}  // namespace

TEST_CASE("data_parallel puts every updated gradient behind one mean bucket", "[passes][data_parallel]") {
  Model m = make_model();
  const size_t before = m.graph.num_nodes();
  PassReport r = data_parallel_pass(m.graph);
  INFO(r.detail << "\n" << m.graph.to_string());
  REQUIRE_NOTHROW(m.graph.validate());
  CHECK(r.pass == "data_parallel");
  CHECK(r.nodes_before == static_cast<int64_t>(before));
  CHECK(r.nodes_after == static_cast<int64_t>(before) + 1);
  CHECK(r.detail.find("1 bucket(s)") != std::string::npos);
  auto buckets = nodes_of(m.graph, "all_reduce_coalesced");
  REQUIRE(buckets.size() == 1);
  CHECK(buckets[0]->attrs.get<std::string>("op") == "mean");
  CHECK(buckets[0]->inputs.size() == 4);
  CHECK(buckets_of(m).begin()->second == std::set<size_t>{0, 1, 2, 3});
  // The fetched gradients are the reduced ones too (as DDP leaves them in .grad).
  for (const auto& [name, o] : m.graph.outputs())
    if (name.rfind("grad_", 0) == 0) CHECK(o.node == buckets[0]->id);

  SECTION("running it again changes nothing") {
    PassReport again = data_parallel_pass(m.graph);
    CHECK(again.nodes_after == again.nodes_before);
    CHECK(again.detail.find("already reduced") != std::string::npos);
  }
}

TEST_CASE("data_parallel buckets by size in the order backward produces gradients", "[passes][data_parallel]") {
  Model m = make_model();
  // Gradient bytes: p0 768, p1 64, p2 256, p3 16. A 300-byte cap: the last
  // layer's (p3, p2) together first, then p1, then p0 alone.
  PassReport r = data_parallel_pass(m.graph, {.bucket_bytes = 300});
  INFO(r.detail);
  REQUIRE_NOTHROW(m.graph.validate());
  auto buckets = buckets_of(m);
  REQUIRE(buckets.size() == 3);
  std::vector<int64_t> order = m.graph.topological_order();
  auto pos = [&](int64_t id) { return std::find(order.begin(), order.end(), id) - order.begin(); };
  std::vector<std::pair<int64_t, std::set<size_t>>> by_position;
  for (auto& [id, params] : buckets) by_position.emplace_back(pos(id), params);
  std::sort(by_position.begin(), by_position.end());
  CHECK(by_position[0].second == std::set<size_t>{2, 3});
  CHECK(by_position[1].second == std::set<size_t>{1});
  CHECK(by_position[2].second == std::set<size_t>{0});

  SECTION("a cap below every gradient gives one bucket each") {
    Model m2 = make_model();
    data_parallel_pass(m2.graph, {.bucket_bytes = 1});
    CHECK(buckets_of(m2).size() == 4);
  }
  SECTION("a bad cap is an error") {
    Model m3 = make_model();
    REQUIRE_THROWS_WITH(data_parallel_pass(m3.graph, {.bucket_bytes = 0}),
                        Catch::Contains("[data_parallel] bucket_bytes must be positive"));
  }
}

TEST_CASE("data_parallel keeps one dtype per bucket", "[passes][data_parallel]") {
  Model m = make_model(/*extra_f64=*/true);
  data_parallel_pass(m.graph);
  REQUIRE_NOTHROW(m.graph.validate());
  auto buckets = buckets_of(m);
  REQUIRE(buckets.size() == 2);
  for (auto& [id, params] : buckets) {
    const Node& b = *m.graph.node(id);
    for (const TensorMeta& meta : b.outputs) CHECK(meta.dtype == b.outputs[0].dtype);
    CHECK(params == (b.outputs[0].dtype == DType::f64 ? std::set<size_t>{4} : std::set<size_t>{0, 1, 2, 3}));
  }
}

TEST_CASE("in a cluster of one, data_parallel training equals plain training", "[passes][data_parallel]") {
  Generator data_gen(9);
  Tensor x = randn({32, 12}, DType::f32, &data_gen);
  Tensor labels = randint(0, 4, {32}, DType::i64, &data_gen);
  Model plain = make_model(), parallel = make_model();
  data_parallel_pass(parallel.graph, {.bucket_bytes = 300});
  Session a(plain.graph), b(parallel.graph);
  std::vector<std::string> fetches = {"loss", "grad_0", "grad_3"};
  for (int step = 0; step < 5; ++step) {
    auto ra = a.run({{"x", x}, {"y", labels}}, fetches, targets(plain.graph));
    auto rb = b.run({{"x", x}, {"y", labels}}, fetches, targets(parallel.graph));
    for (size_t i = 0; i < ra.size(); ++i) REQUIRE_CLOSE(rb[i], ra[i], 0.0, 0.0);
  }
  for (size_t i = 0; i < plain.params.size(); ++i) REQUIRE_CLOSE(parallel.params[i], plain.params[i], 0.0, 0.0);
}

TEST_CASE("collective ops in a cluster of one copy their inputs", "[collectives]") {
  Tensor x = tensor(std::vector<float>{1, -2, 3, 4, 5, 6}, {2, 3});
  Tensor xt = x.t();  // a strided view: the output is a contiguous copy
  REQUIRE_CLOSE(all_reduce(x, "mean"), x);
  REQUIRE_CLOSE(all_reduce(xt, "max"), xt.contiguous());
  REQUIRE_CLOSE(broadcast_from(x, 0), x);
  REQUIRE_CLOSE(all_gather(x), x.reshape({1, 2, 3}));
  auto both = all_reduce_coalesced({x, xt}, "sum");
  REQUIRE_CLOSE(both[0], x);
  REQUIRE_CLOSE(both[1], xt.contiguous());
  REQUIRE_THROWS_WITH(all_reduce(tensor(std::vector<int64_t>{1, 2}), "mean"),
                      Catch::Contains("[all_reduce] op 'mean' needs a floating tensor"));
  REQUIRE_THROWS_WITH(all_reduce_coalesced({x, x.to(DType::f64)}), Catch::Contains("a bucket holds one dtype"));
  REQUIRE_THROWS_WITH(broadcast_from(x, 1), Catch::Contains("[broadcast] root 1 is not a rank of this 1-rank world"));

  // In a graph: the same values, and gradients through them.
  Tensor w = tensor(std::vector<double>{0.5, -1.5, 2.0}, {3}).mark_variable("w");
  Graph g;
  {
    GraphScope scope(g);
    Tensor in = g.placeholder("x", {2, 3}, DType::f64);
    Tensor s = sum(all_gather(all_reduce(in * w, "sum")) * broadcast_from(in, 0));
    g.mark_output("s", s);
    g.mark_output("dw", gradients({s}, {w})[0]);
  }
  Tensor xin = x.to(DType::f64);
  auto out = Session(g).run({{"x", xin}}, {"s", "dw"});
  REQUIRE(out[0].item<double>() == Approx(sum(xin * w * xin).item<double>()));
  REQUIRE_CLOSE(out[1], sum(xin * xin, {0}), 1e-12, 1e-12);
}
