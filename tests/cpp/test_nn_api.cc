// The C++ nn API (nn/): module bookkeeping and state dicts, layer shapes and
// default inits (the optimizers: test_nn_optim.cc), eager against compiled (nn::Function) training steps, retracing rules, and
// the LSTM (shapes, PyTorch parameter names, a step-by-step reference,
// gradients against finite differences).
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "nn_test_util.h"
#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

std::shared_ptr<nn::Sequential> make_tiny_cnn() {
  return std::make_shared<nn::Sequential>(
      std::make_shared<nn::Conv2d>(1, 4, 3), std::make_shared<nn::ReLU>(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(4 * 3 * 3, 3));
}

std::vector<std::string> names_of(const nn::NamedTensors& ts) {
  std::vector<std::string> out;
  for (auto& [n, t] : ts) out.push_back(n);
  return out;
}

// A module with a buffer, a non-persistent buffer and a nested child.
struct Block : nn::Module {
  Block() : Module("Block") {
    fc = register_module("fc", std::make_shared<nn::Linear>(3, 2));
    scale = register_parameter("scale", ones({2}));
    count = register_buffer("count", zeros({}, DType::i64));
    scratch = register_buffer("scratch", zeros({2}), /*persistent=*/false);
  }
  Tensor forward(const Tensor& x) override { return (*fc)(x) * scale; }
  std::shared_ptr<nn::Linear> fc;
  Tensor scale, count, scratch;
};

}  // namespace

// ------------------------------------------------------------------ modules

TEST_CASE("modules name their parameters, buffers and children as PyTorch does", "[nn]") {
  auto mlp = make_mlp();
  CHECK(names_of(mlp->named_parameters()) ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(mlp->parameters().size() == 4);
  for (const Tensor& p : mlp->parameters()) {
    CHECK(p.is_variable());
    CHECK(p.requires_grad());
  }

  struct Outer : nn::Module {
    Outer() : Module("Outer") { block = register_module("block", std::make_shared<Block>()); }
    std::shared_ptr<Block> block;
  } outer;
  CHECK(names_of(outer.named_parameters()) ==
        std::vector<std::string>{"block.scale", "block.fc.weight", "block.fc.bias"});  // own first, as torch
  CHECK(names_of(outer.named_buffers()) == std::vector<std::string>{"block.count", "block.scratch"});
  // Module by module, parameters before buffers; non-persistent buffers left out.
  CHECK(names_of(outer.state_dict()) ==
        std::vector<std::string>{"block.scale", "block.count", "block.fc.weight", "block.fc.bias"});
  CHECK(outer.named_modules().size() == 3);
  CHECK(!outer.block->count.requires_grad());
  CHECK(outer.block->count.is_variable());

  outer.eval();
  CHECK(!outer.is_training());
  CHECK(!outer.block->fc->is_training());
  outer.train();
  CHECK(outer.block->fc->is_training());

  Block b;
  REQUIRE_THROWS_WITH(b.register_parameter("scale", ones({1})), Catch::Contains("already used"));
  REQUIRE_THROWS_WITH(b.register_parameter("a.b", ones({1})), Catch::Contains("no '.'"));
  REQUIRE_THROWS_AS(b.parameter("nope"), NotFoundError);
  CHECK(b.repr().find("(fc): Linear(in_features=3, out_features=2, bias=True)") != std::string::npos);

  // zero_grad drops every gradient.
  Tensor loss = sum(b(ones({4, 3})));
  loss.backward();
  CHECK(b.fc->weight.grad().defined());
  b.zero_grad();
  for (const Tensor& p : b.parameters()) CHECK(!p.grad().defined());
}

TEST_CASE("state_dict round trip copies into the existing Variables", "[nn]") {
  manual_seed(1);
  auto a = make_mlp();
  manual_seed(2);
  auto b = make_mlp();
  Tensor b_weight = b->parameters()[0];
  REQUIRE(!compare_tensors(a->parameters()[0], b_weight).empty());

  nn::StateDict sd;
  for (auto& [k, v] : a->state_dict()) sd.emplace_back(k, v.clone());
  auto r = b->load_state_dict(sd);
  CHECK(r.missing_keys.empty());
  CHECK(r.unexpected_keys.empty());
  for (size_t i = 0; i < 4; ++i) REQUIRE_CLOSE(b->parameters()[i], a->parameters()[i], 0, 0);
  CHECK(b->parameters()[0].same(b_weight));  // not rebound

  // Errors leave the model untouched: every entry is checked before any is written.
  nn::StateDict bad = sd;
  bad[0].second = sd[0].second + 1.0;
  bad[3].second = zeros({5});
  REQUIRE_THROWS_WITH(b->load_state_dict(bad), Catch::Contains("'2.bias' has shape [5]"));
  REQUIRE_CLOSE(b->parameters()[0], a->parameters()[0], 0, 0);
  nn::StateDict partial(sd.begin(), sd.begin() + 2);
  partial.emplace_back("extra", zeros({1}));
  REQUIRE_THROWS_WITH(b->load_state_dict(partial), Catch::Contains("missing keys [2.weight, 2.bias]"));
  auto loose = b->load_state_dict(partial, /*strict=*/false);
  CHECK(loose.missing_keys == std::vector<std::string>{"2.weight", "2.bias"});
  CHECK(loose.unexpected_keys == std::vector<std::string>{"extra"});
  // Loading a model's own state dict is a no-op.
  b->load_state_dict(b->state_dict());
  REQUIRE_CLOSE(b->parameters()[0], a->parameters()[0], 0, 0);
}

TEST_CASE("layers: shapes and PyTorch's default initialization", "[nn]") {
  manual_seed(0);
  nn::Linear fc(100, 50);
  double bound = 1.0 / std::sqrt(100.0);
  auto w = fc.weight.to_vector<float>();
  double mx = 0;
  for (float v : w) mx = std::max(mx, std::abs(static_cast<double>(v)));
  CHECK(mx <= bound);
  CHECK(mx > 0.95 * bound);  // uniform over the whole range
  CHECK(fc(zeros({7, 100})).shape() == Shape{7, 50});
  REQUIRE_THROWS_WITH(fc(zeros({7, 99})), Catch::Contains("expects 100 features"));

  nn::Conv2d conv(3, 8, {3, 5}, {.stride = 2, .padding = 1});
  CHECK(conv.weight.shape() == Shape{8, 3, 3, 5});
  auto cw = conv.weight.to_vector<float>();
  double cb = 1.0 / std::sqrt(3.0 * 3 * 5);
  for (float v : cw) REQUIRE(std::abs(v) <= cb);
  CHECK(conv(zeros({2, 3, 9, 9})).shape() == Shape{2, 8, 5, 4});
  CHECK(nn::MaxPool2d(2)(zeros({2, 3, 9, 9})).shape() == Shape{2, 3, 4, 4});
  nn::MaxPool2d dilated(2, 1, 0, false, 2);  // taps 2 apart: a 3x3 span
  CHECK(dilated(zeros({1, 1, 5, 5})).shape() == Shape{1, 1, 3, 3});
  CHECK(dilated.extra_repr().find(", dilation=2") != std::string::npos);
  CHECK(nn::AvgPool2d(3, 1, 1)(zeros({2, 3, 9, 9})).shape() == Shape{2, 3, 9, 9});
  CHECK(nn::Flatten()(zeros({2, 3, 4, 5})).shape() == Shape{2, 60});

  nn::Dropout drop(0.5);
  Tensor x = ones({1000});
  double kept = sum(drop(x)).item<double>() / 2;  // survivors are scaled by 2
  CHECK(kept > 400);
  CHECK(kept < 600);
  drop.eval();
  REQUIRE_CLOSE(drop(x), x, 0, 0);
}

// --------------------------------------------------------------- optimizers

namespace {

// Trains `make()` twice for 5 steps on the same data — eagerly and through
// nn::TrainStep's compiled graph — and compares the losses and parameters.
template <typename MakeModel, typename MakeOpt>
void eager_vs_compiled(MakeModel make, MakeOpt make_opt, const Tensor& x, const Tensor& y) {
  manual_seed(3);
  auto m_eager = make();
  auto m_graph = make();
  m_graph->load_state_dict(m_eager->state_dict());
  auto opt_eager = make_opt(m_eager->parameters());
  auto opt_graph = make_opt(m_graph->parameters());
  auto loss_of = [](nn::Module& m) {
    return [&m](const Tensor& xb, const Tensor& yb) { return cross_entropy(m(xb), yb); };
  };
  nn::TrainStep eager(loss_of(*m_eager), *opt_eager, /*compiled=*/false);
  nn::TrainStep graph(loss_of(*m_graph), *opt_graph, /*compiled=*/true);
  for (int t = 0; t < 5; ++t) {
    if (t == 3) {  // a scheduler's change reaches the compiled step without a retrace
      opt_eager->set_lr(opt_eager->lr() * 0.5);
      opt_graph->set_lr(opt_graph->lr() * 0.5);
    }
    double le = eager(x, y).template item<double>();
    double lg = graph(x, y).template item<double>();
    INFO("step " << t);
    REQUIRE(lg == Approx(le).epsilon(1e-5));
  }
  CHECK(graph.function()->trace_count() == 1);
  auto pe = m_eager->parameters(), pg = m_graph->parameters();
  for (size_t i = 0; i < pe.size(); ++i) REQUIRE_CLOSE(pg[i], pe[i], 1e-5, 1e-4);
  // The compiled step updated the optimizer's own slots as well.
  auto se = opt_eager->state_dict(), sg = opt_graph->state_dict();
  REQUIRE(se.size() == sg.size());
  for (size_t i = 0; i < se.size(); ++i) REQUIRE_CLOSE(sg[i].second, se[i].second, 1e-5, 1e-4);
}

}  // namespace

TEST_CASE("a compiled training step matches the eager one (MLP, SGD momentum)", "[nn][graph]") {
  Tensor x = rnd({16, 12}, 11, -1, 1, DType::f32);
  Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0}, {16});
  eager_vs_compiled([] { return make_mlp(); },
                    [](const std::vector<Tensor>& ps) {
                      return std::make_unique<optim::SGD>(ps, optim::SGD::Options{.lr = 0.1, .momentum = 0.9, .nesterov = true});
                    },
                    x, y);
}

TEST_CASE("a compiled training step matches the eager one (tiny CNN, Adam)", "[nn][graph]") {
  Tensor x = rnd({6, 1, 8, 8}, 12, -1, 1, DType::f32);
  Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 2, 1, 0}, {6});
  eager_vs_compiled([] { return make_tiny_cnn(); },
                    [](const std::vector<Tensor>& ps) {
                      return std::make_unique<optim::Adam>(ps, optim::Adam::Options{.lr = 0.01, .weight_decay = 0.01});
                    },
                    x, y);
}

TEST_CASE("nn::Function retraces on new shapes, train/eval and optimizer settings", "[nn][graph]") {
  manual_seed(5);
  auto model = std::make_shared<nn::Sequential>(std::make_shared<nn::Linear>(4, 8), std::make_shared<nn::Dropout>(0.5),
                                                std::make_shared<nn::Linear>(8, 2));
  optim::SGD opt(model->parameters(), {.lr = 0.1});
  nn::FunctionOptions fetch;
  fetch.fetch_grads = true;
  nn::Function step(
      [&](const std::vector<Tensor>& in) {
        opt.zero_grad();
        Tensor loss = mse_loss((*model)(in[0]), in[1]);
        nn::backward(loss);
        opt.step();
        return std::vector<Tensor>{loss};
      },
      fetch);
  Tensor x = rnd({5, 4}, 1, -1, 1, DType::f32), y = rnd({5, 2}, 2, -1, 1, DType::f32);
  double l1 = step({x, y})[0].item<double>();
  double l2 = step({x, y})[0].item<double>();
  CHECK(step.trace_count() == 1);
  CHECK(l1 != l2);  // the parameters moved (and dropout drew a new mask)
  CHECK(model->parameters()[0].grad().defined());  // fetch_grads
  CHECK(!model->parameters()[0].grad().is_symbolic());
  step({rnd({3, 4}, 3, -1, 1, DType::f32), rnd({3, 2}, 4, -1, 1, DType::f32)});
  CHECK(step.trace_count() == 2);
  model->eval();
  step({x, y});
  CHECK(step.trace_count() == 3);
  model->train();
  step({x, y});
  CHECK(step.trace_count() == 3);  // the first trace is still valid
  opt.set_lr(0.01);
  step({x, y});
  CHECK(step.trace_count() == 3);
  opt.set_options(0, {.lr = 0.01, .momentum = 0.9});
  step({x, y});
  CHECK(step.trace_count() == 4);

  // A step that does not reset gradients cannot run over existing ones.
  nn::Function no_reset([&](const std::vector<Tensor>& in) {
    Tensor loss = mse_loss((*model)(in[0]), in[1]);
    nn::backward(loss);
    opt.step();
    return std::vector<Tensor>{loss};
  });
  opt.zero_grad();
  no_reset({x, y});
  model->parameters()[0].set_grad(zeros({8, 4}));
  REQUIRE_THROWS_WITH(no_reset({x, y}), Catch::Contains("Call zero_grad() inside the step"));
  // Eager gradients are untouched by tracing: the symbolic ones do not escape.
  CHECK(!model->parameters()[0].grad().is_symbolic());
}

// -------------------------------------------------------------------- LSTM

TEST_CASE("LSTM: PyTorch parameter names, shapes and options", "[nn][lstm]") {
  nn::LSTM lstm(4, 6, {.num_layers = 2, .bidirectional = true});
  CHECK(names_of(lstm.named_parameters()) ==
        std::vector<std::string>{"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                 "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse",
                                 "bias_hh_l0_reverse", "weight_ih_l1", "weight_hh_l1", "bias_ih_l1",
                                 "bias_hh_l1", "weight_ih_l1_reverse", "weight_hh_l1_reverse",
                                 "bias_ih_l1_reverse", "bias_hh_l1_reverse"});
  CHECK(lstm.parameter("weight_ih_l0").shape() == Shape{24, 4});
  CHECK(lstm.parameter("weight_ih_l1").shape() == Shape{24, 12});
  CHECK(lstm.parameter("weight_hh_l1_reverse").shape() == Shape{24, 6});
  double bound = 1 / std::sqrt(6.0);
  for (const Tensor& p : lstm.parameters())
    for (float v : p.to_vector<float>()) REQUIRE(std::abs(v) <= bound);

  auto r = lstm(rnd({5, 3, 4}, 1, -1, 1, DType::f32));
  CHECK(r.output.shape() == Shape{5, 3, 12});
  CHECK(r.h.shape() == Shape{4, 3, 6});
  CHECK(r.c.shape() == Shape{4, 3, 6});

  nn::LSTM bf(4, 6, {.batch_first = true});
  auto rb = bf(rnd({3, 5, 4}, 1, -1, 1, DType::f32));
  CHECK(rb.output.shape() == Shape{3, 5, 6});
  CHECK(rb.h.shape() == Shape{1, 3, 6});
  CHECK(bf(rnd({5, 4}, 1, -1, 1, DType::f32)).output.shape() == Shape{5, 6});  // unbatched
  CHECK(bf.forward(rnd({3, 5, 4}, 1, -1, 1, DType::f32)).shape() == Shape{3, 5, 6});
  REQUIRE_THROWS_WITH(bf(zeros({3, 5, 7})), Catch::Contains("input_size is 4"));
  REQUIRE_THROWS_WITH(lstm(zeros({5, 3, 4}), zeros({2, 3, 6})), Catch::Contains("h0 must have shape [4,3,6]"));
}

TEST_CASE("LSTM matches a step-by-step reference and finite differences", "[nn][lstm]") {
  const int64_t T = 3, N = 2, I = 2, H = 3;
  manual_seed(7);
  nn::LSTM lstm(I, H, {.dtype = DType::f64});
  Tensor x = rnd({T, N, I}, 21);
  Tensor h0 = rnd({1, N, H}, 22), c0 = rnd({1, N, H}, 23);
  auto r = lstm(x, h0, c0);

  // Reference on plain doubles: gates i, f, g, o stacked in the weight rows.
  auto wi = lstm.parameter("weight_ih_l0").to_vector<double>(), wh = lstm.parameter("weight_hh_l0").to_vector<double>();
  auto bi = lstm.parameter("bias_ih_l0").to_vector<double>(), bh = lstm.parameter("bias_hh_l0").to_vector<double>();
  auto xv = x.to_vector<double>();
  auto h = h0.to_vector<double>(), c = c0.to_vector<double>();
  auto sig = [](double v) { return 1 / (1 + std::exp(-v)); };
  std::vector<double> out;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> hn(N * H), cn(N * H);
    for (int64_t n = 0; n < N; ++n) {
      std::vector<double> gate(4 * H);
      for (int64_t r4 = 0; r4 < 4 * H; ++r4) {
        double s = bi[r4] + bh[r4];
        for (int64_t k = 0; k < I; ++k) s += wi[r4 * I + k] * xv[(t * N + n) * I + k];
        for (int64_t k = 0; k < H; ++k) s += wh[r4 * H + k] * h[n * H + k];
        gate[r4] = s;
      }
      for (int64_t j = 0; j < H; ++j) {
        double ig = sig(gate[j]), fg = sig(gate[H + j]), gg = std::tanh(gate[2 * H + j]), og = sig(gate[3 * H + j]);
        cn[n * H + j] = fg * c[n * H + j] + ig * gg;
        hn[n * H + j] = og * std::tanh(cn[n * H + j]);
      }
    }
    h = hn;
    c = cn;
    out.insert(out.end(), h.begin(), h.end());
  }
  REQUIRE_CLOSE(r.output, tensor(out, {T, N, H}), 1e-12, 1e-10);
  REQUIRE_CLOSE(r.h, tensor(h, {1, N, H}), 1e-12, 1e-10);
  REQUIRE_CLOSE(r.c, tensor(c, {1, N, H}), 1e-12, 1e-10);

  // Gradients with respect to the inputs and states...
  gradcheck([&](const std::vector<Tensor>& in) {
    auto res = lstm(in[0], in[1], in[2]);
    return sum(res.output * 0.7) + sum(res.h * res.c);
  }, {x.clone().set_requires_grad(), h0.clone().set_requires_grad(), c0.clone().set_requires_grad()});

  // ...and to every weight, by central differences on a few elements.
  Tensor proj = rnd({T, N, H}, 24);
  auto objective = [&] { return sum(lstm(x, h0, c0).output * proj); };
  Tensor loss = objective();
  lstm.zero_grad();
  loss.backward();
  for (auto& [name, p] : lstm.named_parameters()) {
    Tensor g = p.grad();
    REQUIRE(g.defined());
    auto gv = g.to_vector<double>();
    for (int64_t k : {int64_t{0}, p.numel() / 2, p.numel() - 1}) {
      double* d = p.data<double>();
      double keep = d[k], eps = 1e-6;
      NoGradGuard ng;
      d[k] = keep + eps;
      double fp = objective().item<double>();
      d[k] = keep - eps;
      double fm = objective().item<double>();
      d[k] = keep;
      INFO(name << "[" << k << "]");
      REQUIRE(gv[static_cast<size_t>(k)] == Approx((fp - fm) / (2 * eps)).margin(1e-7).epsilon(1e-5));
    }
  }

  // The same LSTM traced into a graph gives the same result.
  nn::Function f([&](const std::vector<Tensor>& in) {
    auto res = lstm(in[0], in[1], in[2]);
    return std::vector<Tensor>{res.output, res.h, res.c};
  });
  auto fo = f({x, h0, c0});
  REQUIRE_CLOSE(fo[0], r.output, 1e-12, 1e-10);
  REQUIRE_CLOSE(fo[2], r.c, 1e-12, 1e-10);
}

// ----------------------------------------------------- norm and embedding

TEST_CASE("BatchNorm2d: torch's names, statistics, and compiled steps that update them", "[nn][norm]") {
  nn::BatchNorm2d bn(3);
  CHECK(names_of(bn.state_dict()) ==
        std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  CHECK(bn.parameters().size() == 2);

  Tensor x = rnd({4, 3, 5, 5}, 31, -1, 3, DType::f32);
  Tensor y = bn(x);
  // Training: normalized with the batch statistics; running stats moved by momentum 0.1.
  Tensor m = mean(x, {0, 2, 3});
  Tensor v = var(x, {0, 2, 3}, false, 1);
  REQUIRE_CLOSE(bn.running_mean, m * 0.1, 1e-5, 1e-4);
  REQUIRE_CLOSE(bn.running_var, v * 0.1 + 0.9, 1e-5, 1e-4);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);
  REQUIRE_CLOSE(mean(y, {0, 2, 3}), zeros({3}), 1e-5, 0);
  bn.eval();
  Tensor ye = bn(x);
  Tensor expect = (x - reshape(bn.running_mean, {1, 3, 1, 1})) / sqrt(reshape(bn.running_var, {1, 3, 1, 1}) + 1e-5);
  REQUIRE_CLOSE(ye, expect, 1e-5, 1e-4);
  CHECK(bn.num_batches_tracked.item<int64_t>() == 1);

  // momentum = nullopt: the plain average of the batch statistics.
  nn::BatchNorm2d avg(3, {.momentum = std::nullopt});
  Tensor x2 = rnd({4, 3, 5, 5}, 32, -2, 1, DType::f32);
  avg(x);
  avg(x2);
  REQUIRE_CLOSE(avg.running_mean, (m + mean(x2, {0, 2, 3})) * 0.5, 1e-5, 1e-4);

  // A CNN with batch norm: eager and compiled steps give the same losses,
  // parameters and running statistics.
  auto make = [] {
    return std::make_shared<nn::Sequential>(std::make_shared<nn::Conv2d>(1, 4, 3), std::make_shared<nn::BatchNorm2d>(4),
                                            std::make_shared<nn::ReLU>(), std::make_shared<nn::Flatten>(),
                                            std::make_shared<nn::Linear>(4 * 6 * 6, 3));
  };
  Tensor xb = rnd({6, 1, 8, 8}, 12, -1, 1, DType::f32);
  Tensor yb = tensor(std::vector<int64_t>{0, 1, 2, 2, 1, 0}, {6});
  auto me = make(), mg = make();
  mg->load_state_dict(me->state_dict());
  optim::SGD oe(me->parameters(), {.lr = 0.05, .momentum = 0.9}), og(mg->parameters(), {.lr = 0.05, .momentum = 0.9});
  auto loss_of = [](nn::Module& model) {
    return [&model](const Tensor& a, const Tensor& b) { return cross_entropy(model(a), b); };
  };
  nn::TrainStep se(loss_of(*me), oe, false), sg(loss_of(*mg), og, true);
  for (int t = 0; t < 4; ++t) REQUIRE(sg(xb, yb).item<double>() == Approx(se(xb, yb).item<double>()).epsilon(1e-5));
  auto de = me->state_dict(), dg = mg->state_dict();
  REQUIRE(de.size() == dg.size());
  for (size_t i = 0; i < de.size(); ++i) {
    INFO(de[i].first);
    REQUIRE_CLOSE(dg[i].second, de[i].second, 1e-5, 1e-4);
  }
  CHECK(mg->child("1")->buffer("num_batches_tracked").item<int64_t>() == 4);
}

TEST_CASE("LayerNorm and Embedding layers", "[nn][norm]") {
  nn::LayerNorm ln({4});
  CHECK(names_of(ln.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  Tensor x = rnd({3, 4}, 41, -2, 2, DType::f32);
  Tensor mu = mean(x, {1}, true);
  REQUIRE_CLOSE(ln(x), (x - mu) / sqrt(var(x, {1}, true, 0) + 1e-5), 1e-5, 1e-4);

  manual_seed(0);
  nn::Embedding emb(10, 3, /*padding_idx=*/-1);
  CHECK(*emb.padding_idx == 9);
  REQUIRE_CLOSE(emb.weight.slice(0, 9, 10), zeros({1, 3}), 0, 0);
  Tensor idx = tensor(std::vector<int64_t>{1, 9, 1, 4}, {2, 2});
  Tensor out = emb(idx);
  CHECK(out.shape() == Shape{2, 2, 3});
  sum(out).backward();
  auto g = emb.weight.grad();
  REQUIRE_CLOSE(g.slice(0, 1, 2), full({1, 3}, 2.0), 0, 0);
  REQUIRE_CLOSE(g.slice(0, 9, 10), zeros({1, 3}), 0, 0);  // the padding row gets no gradient
  REQUIRE_CLOSE(g.slice(0, 0, 1), zeros({1, 3}), 0, 0);

  auto frozen = nn::Embedding::from_pretrained(emb.weight);
  CHECK(!frozen->weight.requires_grad());
  REQUIRE_CLOSE(frozen->weight, emb.weight, 0, 0);
  CHECK(!frozen->weight.same(emb.weight));
}

TEST_CASE("optimizers add update nodes in a hand-built graph", "[nn][graph]") {
  manual_seed(9);
  auto model = make_mlp();
  auto twin = make_mlp();
  twin->load_state_dict(model->state_dict());
  optim::Adam opt(model->parameters(), {.lr = 0.01});
  optim::Adam twin_opt(twin->parameters(), {.lr = 0.01});
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {8, 12});
    Tensor y = g.placeholder("y", {8}, DType::i64);
    Tensor loss = cross_entropy((*model)(x), y);
    nn::backward(loss);  // symbolic: .grad() of the parameters are graph tensors now
    CHECK(model->parameters()[0].grad().is_symbolic());
    opt.step();
    g.mark_output("loss", loss);
  }
  REQUIRE_THROWS_WITH(opt.step(), Catch::Contains("left over from a graph"));
  opt.zero_grad();
  std::vector<std::string> targets;
  for (const Node* n : g.nodes())
    if (n->op->has_side_effects()) targets.push_back(n->name);
  CHECK(targets.size() == 4);
  Session sess(g);
  Tensor x = rnd({8, 12}, 5, -1, 1, DType::f32);
  Tensor y = tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1}, {8});
  for (int t = 0; t < 3; ++t) {
    double lg = sess.run({{"x", x}, {"y", y}}, {"loss"}, targets)[0].item<double>();
    twin_opt.zero_grad();
    Tensor le = cross_entropy((*twin)(x), y);
    le.backward();
    twin_opt.step();
    REQUIRE(lg == Approx(le.item<double>()).epsilon(1e-5));
  }
  REQUIRE_CLOSE(model->parameters()[2], twin->parameters()[2], 1e-5, 1e-4);
}
