// distributed/ps: server-side optimizers (momentum, adagrad, rmsprop, adam)
// against the same fused ops run locally, on dense and row pushes, their state
// in checkpoints, and the server's staleness and wait statistics.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>
#include <vector>

#include <ndflow/ndflow.h>

#include "distributed/ps/client.h"
#include "distributed/ps/server.h"
#include "format_test_util.h"
#include "ps_test_util.h"

using namespace ndflow;
using namespace ndflow::ps;
using namespace ndflow::ps::testing;
using namespace std::chrono_literals;

namespace {

// One worker drives a server-side optimizer for `steps` clocks with a
// gradient that depends on the pulled value; returns the final pulled value.
// The same loop runs locally with the fused op through `local_step`.
Tensor grad_of(const Tensor& w, int step) {
  EagerScope eager;
  NoGradGuard no_grad;
  Tensor g = w.clone();
  g.mul_(0.5);
  g.add_(filled(w.shape(), 0.3f - 0.1f * float(step)));
  return g;
}

void check_close(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  REQUIRE(x.size() == y.size());
  for (size_t i = 0; i < x.size(); ++i) CHECK(x[i] == Approx(y[i]).epsilon(1e-5).margin(1e-6));
}

}  // namespace

TEST_CASE("ps: server-side momentum, adagrad, rmsprop and adam equal the same optimizer run locally", "[ps]") {
  const Tensor init = [] {
    Tensor t = Tensor::empty({4, 3}, DType::f32);
    for (int i = 0; i < 12; ++i) t.data<float>()[i] = 0.25f * float(i) - 1.f;
    return t;
  }();
  OptimizerHyper hyper;
  hyper.weight_decay = 0.01;
  hyper.rmsprop_momentum = 0.5;
  hyper.centered = true;
  for (UpdateRule rule : {UpdateRule::momentum, UpdateRule::adagrad, UpdateRule::rmsprop, UpdateRule::adam}) {
    for (Sync sync : {Sync::bsp(), Sync::asp()}) {
      CAPTURE(int(rule), int(sync.kind));
      auto server = make_server(1, {{.name = "w", .initial = init, .rule = rule, .lr = 0.05, .sync = sync,
                                     .hyper = hyper}});
      Client c({.address = server->endpoint(), .secret = kSecret, .worker = 0});
      Tensor local = init.clone();
      Tensor s1 = zeros_like(local), s2 = zeros_like(local), s3 = zeros_like(local);
      Tensor step = zeros({}, DType::i64), lr = scalar(0.05);
      for (int k = 0; k < 6; ++k) {
        Tensor w = c.pull("w").wait();
        check_close(w, local);
        c.push("w", grad_of(w, k)).wait();
        c.clock();
        Tensor g = grad_of(local, k);
        NoGradGuard no_grad;
        switch (rule) {
          case UpdateRule::momentum: apply_momentum(local, g, s1, step, lr, {.weight_decay = 0.01}); break;
          case UpdateRule::adagrad: apply_adagrad(local, g, s1, step, lr, {.weight_decay = 0.01}); break;
          case UpdateRule::rmsprop:
            apply_rmsprop(local, g, s1, lr, {.weight_decay = 0.01, .momentum = 0.5, .centered = true}, s2, s3);
            break;
          default: apply_adam(local, g, s1, s2, step, lr, {.weight_decay = 0.01}); break;
        }
      }
      check_close(c.pull("w").wait(), local);
    }
  }
}

TEST_CASE("ps: row pushes step a server-side adam on the touched rows only, state rows included", "[ps]") {
  for (Sync sync : {Sync::bsp(), Sync::asp()}) {
    CAPTURE(int(sync.kind));
    auto server = make_server(1, {{.name = "e", .initial = filled({5, 2}, 1.f), .rule = UpdateRule::adam,
                                   .lr = 0.1, .sync = sync}});
    Client c({.address = server->endpoint(), .secret = kSecret, .worker = 0});
    // Rows 1 and 3 take 4 steps; row 4 one step (its own step count: bias correction of step 1).
    Tensor local = filled({2, 2}, 1.f), m = zeros({2, 2}), v = zeros({2, 2}), step = zeros({}, DType::i64);
    Tensor lone = filled({1, 2}, 1.f), lm = zeros({1, 2}), lv = zeros({1, 2}), lstep = zeros({}, DType::i64);
    Tensor lr = scalar(0.1);
    for (int k = 0; k < 4; ++k) {
      Tensor rows = c.pull_rows("e", ids_of({1, 3})).wait();
      check_close(rows, local);
      c.push_rows("e", ids_of({1, 3}), grad_of(rows, k)).wait();
      if (k == 2) c.push_rows("e", ids_of({4}), grad_of(lone, k)).wait();
      c.clock();
      Tensor g = grad_of(local, k);
      NoGradGuard no_grad;
      apply_adam(local, g, m, v, step, lr);
      if (k == 2) apply_adam(lone, grad_of(lone, k), lm, lv, lstep, lr);
    }
    Tensor all = c.pull("e").wait();
    check_close(all.slice(0, 1, 2), local.slice(0, 0, 1));
    check_close(all.slice(0, 3, 4), local.slice(0, 1, 2));
    check_close(all.slice(0, 4, 5), lone);
    CHECK(all.slice(0, 0, 1).to_vector<float>() == std::vector<float>{1.f, 1.f});
    CHECK(all.slice(0, 2, 3).to_vector<float>() == std::vector<float>{1.f, 1.f});
  }
}

TEST_CASE("ps: a server checkpoint keeps the optimizer state and a restored adam table continues exactly", "[ps]") {
  ndflow::testing::TempDir dir;
  const std::string path = dir / "server-0.ndf";
  auto options = [&] {
    return ServerOptions{.secret = kSecret, .num_workers = 1, .checkpoint_path = path, .restore = true,
                         .log = [](const std::string&) {}};
  };
  const TableSpec spec{.name = "w", .initial = filled({3}, 0.5f), .rule = UpdateRule::adam, .lr = 0.1};
  Tensor local = filled({3}, 0.5f), m = zeros({3}), v = zeros({3}), step = zeros({}, DType::i64), lr = scalar(0.1);
  auto run = [&](int from, int to) {
    Server s(options());
    s.add_table(spec);
    s.start();
    Client c({.address = s.endpoint(), .secret = kSecret, .worker = 0, .incarnation = uint64_t(from + 1)});
    CHECK(c.current_clock() == from);
    for (int k = from; k < to; ++k) {
      Tensor w = c.pull("w").wait();
      check_close(w, local);
      c.push("w", grad_of(w, k)).wait();
      c.clock();
      NoGradGuard no_grad;
      apply_adam(local, grad_of(local, k), m, v, step, lr);
    }
    check_close(c.pull("w").wait(), local);
    s.stop();  // writes the checkpoint
  };
  run(0, 3);
  Checkpoint saved = load_tensors(path);
  check_close(saved.find("opt/w/m"), m);
  check_close(saved.find("opt/w/v"), v);
  CHECK(saved.find("opt/w/step").to_vector<int64_t>() == std::vector<int64_t>{3});
  run(3, 7);  // restored: without the moments and step count the trajectory would differ

  // A checkpoint whose optimizer state does not fit the table's rule is refused.
  Server other(options());
  other.add_table({.name = "w", .initial = filled({3}, 0.5f), .rule = UpdateRule::momentum});
  CHECK_THROWS_WITH(other.start(), Catch::Contains("optimizer state 'opt/w/m'"));
  Server more(options());
  more.add_table({.name = "w", .initial = filled({3}, 0.5f), .rule = UpdateRule::adam, .hyper = {.amsgrad = true}});
  CHECK_THROWS_WITH(more.start(), Catch::Contains("has no optimizer state 'opt/w/max_v'"));
}

TEST_CASE("ps: server stats count pulls per observed staleness and the time each worker's pulls waited", "[ps]") {
  auto server = make_server(2, {{.name = "w", .initial = zeros({2}), .sync = Sync::ssp(1)}});
  Client fast({.address = server->endpoint(), .secret = kSecret, .worker = 0});
  Client slow({.address = server->endpoint(), .secret = kSecret, .worker = 1});
  fast.pull("w").wait();  // clock 0, slowest 0: staleness 0
  slow.pull("w").wait();
  fast.clock();
  fast.pull("w").wait();  // clock 1, slowest 0: staleness 1, allowed by SSP(1)
  fast.clock();
  Handle h = fast.pull("w");  // clock 2 needs the slow worker at clock 1
  std::this_thread::sleep_for(150ms);
  CHECK_FALSE(h.ready());
  slow.clock();
  h.wait();  // answered at slowest 1: staleness 1
  const ServerStats& st = server->stats();
  CHECK(st.staleness[0] == 2);
  CHECK(st.staleness[1] == 2);
  CHECK(st.pulls_delayed == 1);
  CHECK(st.num_workers == 2);
  CHECK(st.pull_wait_us[0] >= 100000);
  CHECK(st.pull_wait_us[1] == 0);
  // ASP lets a reader run arbitrarily far ahead; the last bin counts 16 and more.
  auto asp = make_server(2, {{.name = "a", .initial = zeros({1}), .sync = Sync::asp()}});
  Client ahead({.address = asp->endpoint(), .secret = kSecret, .worker = 0});
  for (int k = 0; k < 20; ++k) ahead.clock();
  ahead.pull("a").wait();
  CHECK(asp->stats().staleness[ServerStats::kStalenessBins - 1] == 1);
}

TEST_CASE("ps: set_lr gives a server-side rule a schedule, survives a checkpoint, and is refused where it cannot apply",
          "[ps]") {
  ndflow::testing::TempDir dir;
  const std::string path = dir / "server-0.ndf";
  auto options = [&] {
    return ServerOptions{.secret = kSecret, .num_workers = 1, .checkpoint_path = path, .restore = true,
                         .log = [](const std::string&) {}};
  };
  const std::vector<TableSpec> specs = {{.name = "w", .initial = zeros({2}), .rule = UpdateRule::sgd, .lr = 1.0, .sync = Sync::asp()},
                                        {.name = "acc", .initial = zeros({2})}};
  {
    Server s(options());
    for (const TableSpec& t : specs) s.add_table(t);
    s.start();
    Client c({.address = s.endpoint(), .secret = kSecret, .worker = 0});
    c.push("w", filled({2}, 1.f)).wait();  // lr 1: -1
    c.set_lr("w", 0.5).wait();
    c.push("w", filled({2}, 1.f)).wait();  // lr 0.5: -1.5
    c.clock();
    CHECK(c.pull("w").wait().to_vector<float>() == std::vector<float>{-1.5f, -1.5f});
    CHECK_THROWS_WITH(c.set_lr("acc", 0.1).wait(), Catch::Contains("'acc' accumulates"));
    CHECK_THROWS_WITH(c.set_lr("w", std::nan("")).wait(), Catch::Contains("give a finite value >= 0"));
    CHECK_THROWS_WITH(c.set_lr("w", -1).wait(), Catch::Contains("give a finite value >= 0"));
    CHECK_THROWS_WITH(c.set_lr("nope", 1).wait(), Catch::Contains("unknown table 'nope'"));
    s.stop();
  }
  CHECK(load_tensors(path).find("opt/w/lr").to_vector<float>() == std::vector<float>{0.5f});
  Server s(options());
  for (const TableSpec& t : specs) s.add_table(t);
  s.start();
  Client c({.address = s.endpoint(), .secret = kSecret, .worker = 0, .incarnation = 2});
  c.push("w", filled({2}, 2.f)).wait();  // the restored lr 0.5, not the spec's 1.0
  c.clock();
  CHECK(c.pull("w").wait().to_vector<float>() == std::vector<float>{-2.5f, -2.5f});
}

TEST_CASE("ps: adagrad's initial_accumulator_value starts the server's accumulator as torch.optim.Adagrad does", "[ps]") {
  const Tensor init = filled({3}, 0.5f);
  auto server = make_server(1, {{.name = "w", .initial = init, .rule = UpdateRule::adagrad, .lr = 0.1,
                                 .sync = Sync::asp(), .hyper = {.initial_accumulator_value = 0.3}}});
  Client c({.address = server->endpoint(), .secret = kSecret, .worker = 0});
  Tensor local = init.clone(), accum = filled({3}, 0.3f), step = zeros({}, DType::i64), lr = scalar(0.1);
  for (int k = 0; k < 4; ++k) {
    Tensor w = c.pull("w").wait();
    c.push("w", grad_of(w, k)).wait();
    NoGradGuard no_grad;
    apply_adagrad(local, grad_of(local, k), accum, step, lr);
  }
  check_close(c.pull("w").wait(), local);
  CHECK_THROWS_WITH(make_server(1, {{.name = "x", .initial = init, .rule = UpdateRule::adagrad,
                                     .hyper = {.initial_accumulator_value = -1}}}),
                    Catch::Contains("initial_accumulator_value must be >= 0"));
}
