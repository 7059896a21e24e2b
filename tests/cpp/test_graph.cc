// Static graphs end to end: every differentiable op gradchecked in graph
// mode (symbolic gradients vs finite differences, both run by a Session),
// eager and graph training agree for 20 steps, Variables are read and
// updated in program order, and misuse gives clear errors.
#include <catch2/catch.hpp>

#include "op_samples.h"
#include "runtime/session.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// Builds <w, op(inputs)> and its symbolic gradients in a graph, then checks
// them against central differences of the compiled forward graph.
void graph_gradcheck(const OpSample& s) {
  const OpDef& op = op_def(s.op);
  std::vector<Tensor> values;
  std::vector<size_t> wrt;
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    Tensor v = s.inputs[i].contiguous();
    bool want = s.grad_inputs.empty()
                    ? (v.dtype() == DType::f32 || v.dtype() == DType::f64)
                    : std::find(s.grad_inputs.begin(), s.grad_inputs.end(), int(i)) != s.grad_inputs.end();
    if (want) {
      v = v.to(DType::f64).clone();
      wrt.push_back(i);
    }
    values.push_back(v);
  }
  if (wrt.empty()) return;

  Graph g;
  {
    GraphScope scope(g);
    std::vector<Tensor> phs;
    for (size_t i = 0; i < values.size(); ++i)
      phs.push_back(g.placeholder("in" + std::to_string(i), values[i].shape(), values[i].dtype()));
    std::vector<Tensor> outs = call_op(op, phs, s.attrs);
    std::vector<Tensor> flat;
    for (auto& o : outs)
      if (is_floating(o.dtype())) flat.push_back(reshape(o, {-1}));
    Tensor y = flat.size() == 1 ? flat[0] : concat(flat, 0);
    Tensor w = rnd({y.shape()[0]}, 11, 0.5, 1.5);
    Tensor proj = sum(mul(y, w));
    std::vector<Tensor> xs;
    for (size_t i : wrt) xs.push_back(phs[i]);
    auto grads = gradients({proj}, xs, {}, /*zeros_for_unused=*/true);
    g.mark_output("proj", proj);
    for (size_t k = 0; k < grads.size(); ++k) g.mark_output("grad" + std::to_string(k), grads[k]);
  }
  Session sess(g);
  auto feeds = [&](const std::vector<Tensor>& vals) {
    std::vector<std::pair<std::string, Tensor>> f;
    for (size_t i = 0; i < vals.size(); ++i) f.emplace_back("in" + std::to_string(i), vals[i]);
    return f;
  };
  std::vector<std::string> fetch_grads;
  for (size_t k = 0; k < wrt.size(); ++k) fetch_grads.push_back("grad" + std::to_string(k));
  auto analytic = sess.run(feeds(values), fetch_grads);

  const double eps = 1e-6;
  for (size_t k = 0; k < wrt.size(); ++k) {
    Tensor x = values[wrt[k]];
    double* p = x.data<double>();
    auto an = analytic[k].contiguous().to_vector<double>();
    REQUIRE(static_cast<int64_t>(an.size()) == x.numel());
    for (int64_t e = 0; e < x.numel(); ++e) {
      double orig = p[e];
      p[e] = orig + eps;
      double fp = sess.run(feeds(values), {"proj"})[0].item<double>();
      p[e] = orig - eps;
      double fm = sess.run(feeds(values), {"proj"})[0].item<double>();
      p[e] = orig;
      double numeric = (fp - fm) / (2 * eps);
      INFO("input " << wrt[k] << " element " << e << ": analytic " << an[e] << " numeric " << numeric);
      REQUIRE(std::abs(an[e] - numeric) <= 1e-5 + 1e-3 * std::abs(numeric));
    }
  }
}

}  // namespace

TEST_CASE("every differentiable op passes gradcheck in graph mode", "[graph][grad]") {
  int checked = 0;
  for (const OpSample& s : all_samples()) {
    const OpDef& op = op_def(s.op);
    if (!op.differentiable() || !s.check_grad || op.is_stateful()) continue;
    INFO("graph gradcheck of " << s.op);
    graph_gradcheck(s);
    ++checked;
  }
  CHECK(checked > 50);
}

TEST_CASE("eager and graph training of an MLP agree for 20 steps", "[graph]") {
  // The same model, data, initial weights and SGD-momentum updates, once
  // eagerly and once as one compiled training step run 20 times.
  auto make_params = [] {
    Generator gen(5);
    std::vector<Tensor> p = {randn({12, 16}, DType::f32, &gen) * 0.3, zeros({16}),
                             randn({16, 4}, DType::f32, &gen) * 0.3, zeros({4})};
    for (size_t i = 0; i < p.size(); ++i) p[i] = p[i].contiguous().clone().mark_variable("p" + std::to_string(i));
    return p;
  };
  Generator data_gen(9);
  Tensor x = randn({32, 12}, DType::f32, &data_gen);
  Tensor labels = randint(0, 4, {32}, DType::i64, &data_gen);
  auto loss_of = [](const std::vector<Tensor>& p, const Tensor& in, const Tensor& y) {
    return cross_entropy(matmul(relu(matmul(in, p[0]) + p[1]), p[2]) + p[3], y);
  };
  MomentumOptions mo;
  mo.momentum = 0.9;

  // Eager.
  auto pe = make_params();
  std::vector<Tensor> ve, se;
  for (auto& p : pe) {
    ve.push_back(zeros_like(p));
    se.push_back(zeros({}, DType::i64));
  }
  Tensor lr_e = scalar(0.1);
  std::vector<double> eager_losses;
  for (int step = 0; step < 20; ++step) {
    for (auto& p : pe) p.set_requires_grad(true);
    Tensor loss = loss_of(pe, x, labels);
    auto gs = grad({loss}, pe);
    eager_losses.push_back(loss.item<double>());
    NoGradGuard ng;
    for (size_t i = 0; i < pe.size(); ++i) {
      pe[i].set_requires_grad(false);
      apply_momentum(pe[i], gs[i], ve[i], se[i], lr_e, mo);
    }
  }

  // Graph: forward, symbolic gradients and the fused updates in one graph.
  auto pg = make_params();
  std::vector<Tensor> vg, sg;
  for (auto& p : pg) {
    vg.push_back(zeros_like(p).mark_variable());
    sg.push_back(zeros({}, DType::i64).mark_variable());
  }
  Tensor lr_g = scalar(0.1).mark_variable("lr");
  Graph g;
  {
    GraphScope scope(g);
    Tensor in = g.placeholder("x", {-1, 12});
    Tensor y = g.placeholder("y", {-1}, DType::i64);
    Tensor loss = loss_of(pg, in, y);
    auto gs = gradients({loss}, pg);
    for (size_t i = 0; i < pg.size(); ++i) apply_momentum(pg[i], gs[i], vg[i], sg[i], lr_g, mo);
    g.mark_output("loss", loss);
  }
  std::vector<std::string> targets;
  for (const Node* n : g.nodes())
    if (n->op->name() == "apply_momentum") targets.push_back(n->name);
  REQUIRE(targets.size() == 4);
  Session sess(g);
  for (int step = 0; step < 20; ++step) {
    double loss = sess.run({{"x", x}, {"y", labels}}, {"loss"}, targets)[0].item<double>();
    INFO("step " << step);
    REQUIRE(loss == Approx(eager_losses[static_cast<size_t>(step)]).epsilon(1e-5));
  }
  for (size_t i = 0; i < pe.size(); ++i) REQUIRE_CLOSE(pg[i], pe[i], 1e-5, 1e-4);
  CHECK(eager_losses.back() < eager_losses.front());
}

TEST_CASE("updates of a Variable wait for its earlier readers", "[graph]") {
  Tensor v = tensor(std::vector<float>{1, 2, 3}, {3}).mark_variable("v");
  Graph g;
  {
    GraphScope scope(g);
    Tensor before = v * 2.0;     // reads v
    assign_add(v, ones({3}));    // must run after the read
    Tensor after = v * 2.0;      // must see the update
    g.mark_output("before", before);
    g.mark_output("after", after);
  }
  std::vector<std::string> targets;
  for (const Node* n : g.nodes())
    if (n->op->name() == "assign_add") targets.push_back(n->name);
  Session sess(g);
  auto out = sess.run({}, {"before", "after"}, targets);
  REQUIRE_CLOSE(out[0], tensor(std::vector<float>{2, 4, 6}, {3}));
  REQUIRE_CLOSE(out[1], tensor(std::vector<float>{4, 6, 8}, {3}));
  REQUIRE_CLOSE(v, tensor(std::vector<float>{2, 3, 4}, {3}));  // the eager Variable itself changed
}

TEST_CASE("graph misuse gives clear errors", "[graph][errors]") {
  Tensor escaped;
  {
    Graph g;
    GraphScope scope(g);
    escaped = g.placeholder("x", {2});
    Graph other;
    Tensor y;
    {
      GraphScope inner(other);
      REQUIRE_THROWS_WITH(relu(escaped), Catch::Contains("another graph"));
    }
    REQUIRE_THROWS_WITH(g.placeholder("x", {3}), Catch::Contains("already used"));
    REQUIRE_THROWS_AS(escaped.item<float>(), ValueError);
  }
  REQUIRE_THROWS_WITH(relu(escaped), Catch::Contains("outside of its graph scope"));
  REQUIRE_THROWS_AS(call_op(op_def("placeholder"), std::vector<Tensor>{},
                            Attrs{{"shape", std::vector<int64_t>{1}}, {"dtype", DType::f32}}),
                    ValueError);

  Graph g;
  {
    GraphScope scope(g);
    Tensor a = g.placeholder("a", {2, 3});
    Tensor b = g.placeholder("b", {4, 5});
    REQUIRE_THROWS_WITH(matmul(a, b), Catch::Contains("[matmul]"));
    Tensor c = relu(a);
    g.mark_output("c", c);
  }
  // A hand-made cycle and a dangling edge are caught by validate, naming the node.
  Graph bad = g.clone();
  Node* relu_node = nullptr;
  for (const Node* n : bad.nodes())
    if (n->op->name() == "relu") relu_node = bad.mutable_node(n->id);
  REQUIRE(relu_node);
  relu_node->inputs[0] = {relu_node->id, 0};
  REQUIRE_THROWS_WITH(bad.validate(), Catch::Contains("cycle"));
  relu_node->inputs[0] = {999, 0};
  REQUIRE_THROWS_WITH(bad.validate(), Catch::Contains(relu_node->name));
  REQUIRE_NOTHROW(g.validate());
}

TEST_CASE("trace turns a function into a graph that runs like the function", "[graph]") {
  Tensor w = rnd({4, 3}, 2, -1, 1, DType::f32).mark_variable("w");
  auto fn = [&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{softmax(matmul(in[0], w) * 2.0, -1)};
  };
  Tensor x = rnd({5, 4}, 3, -1, 1, DType::f32);
  TracedFunction f = trace(fn, {x});
  REQUIRE(f.input_names == std::vector<std::string>{"input_0"});
  Session sess(f.graph);
  REQUIRE_CLOSE(sess.run({{"input_0", x}}, {"output_0"})[0], fn({x})[0]);
  // Variables are captured by reference: an update is seen without retracing.
  w.fill_(0.5);
  REQUIRE_CLOSE(sess.run({{"input_0", x}}, {"output_0"})[0], fn({x})[0]);
}
