// distributed/ps/worker.h: tables split by key range over several servers,
// the consistency-bounded read cache, barriers, and clients that go on
// through a server restart. Servers and workers share this process over
// tcp://127.0.0.1.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include <ndflow/ndflow.h>

#include "distributed/ps/worker.h"
#include "format_test_util.h"
#include "ps_test_util.h"

using namespace ndflow;
using namespace ndflow::ps;
using namespace ndflow::ps::testing;
using namespace std::chrono_literals;

namespace {

std::vector<std::tuple<uint32_t, int64_t, int64_t>> shards_of(const TableLayout& l) {
  std::vector<std::tuple<uint32_t, int64_t, int64_t>> out;
  for (const Shard& s : l.shards) out.emplace_back(s.server, s.begin, s.end);
  return out;
}

std::vector<float> values(const Tensor& t) { return t.contiguous().to_vector<float>(); }

}  // namespace

TEST_CASE("ps layout: a large table is cut into one row range per server, small ones go whole to the least loaded",
          "[ps]") {
  LayoutPlanner p(3, 1000);
  using S = std::vector<std::tuple<uint32_t, int64_t, int64_t>>;
  CHECK(shards_of(p.place("emb", {100, 10})) == S{{0, 0, 33}, {1, 33, 66}, {2, 66, 100}});
  CHECK(p.bytes_per_server() == std::vector<int64_t>{1320, 1320, 1360});
  CHECK(shards_of(p.place("b1", {10})) == S{{0, 0, 10}});
  CHECK(shards_of(p.place("b2", {20})) == S{{1, 0, 20}});
  // Fewer rows than servers: whole, however large.
  CHECK(shards_of(p.place("wide", {2, 1000})) == S{{0, 0, 2}});
  CHECK(shards_of(p.place("scalar", {})) == S{{2, 0, 1}});
  // The same tables in the same order give the same layout in every process.
  LayoutPlanner again(3, 1000);
  CHECK(shards_of(again.place("emb", {100, 10})) == S{{0, 0, 33}, {1, 33, 66}, {2, 66, 100}});
  LayoutPlanner one(1, 0);
  CHECK(shards_of(one.place("emb", {100, 10})) == S{{0, 0, 100}});
  CHECK_THROWS_AS(LayoutPlanner(0, 0), ValueError);
}

TEST_CASE("ps worker: a table split over 2 servers takes pushes and answers pulls like one server", "[ps]") {
  LayoutPlanner plan(2, 0);
  const Tensor emb0 = arange(0.0, 15.0).reshape({5, 3});
  const Tensor w0 = arange(0.0, 4.0);
  TableLayout emb = plan.place("emb", {5, 3}), w = plan.place("w", {4});
  REQUIRE(emb.shards.size() == 2);
  REQUIRE(w.shards.size() == 2);
  std::vector<std::unique_ptr<Server>> servers;
  for (uint32_t s = 0; s < 2; ++s)
    servers.push_back(make_server(1, {{.name = "emb", .initial = shard_rows(emb0, emb.shards[s]).contiguous(),
                                       .sync = Sync::asp()},
                                      {.name = "w", .initial = shard_rows(w0, w.shards[s]).contiguous(),
                                       .sync = Sync::asp()}}));
  Worker worker({.servers = {servers[0]->endpoint(), servers[1]->endpoint()}, .secret = kSecret, .cache = false});
  worker.add_table({emb, Sync::asp()});
  worker.add_table({w, Sync::asp()});

  std::vector<float> want = values(emb0);
  worker.push("emb", filled({5, 3}, 1.f)).wait();
  for (float& v : want) v += 1;
  Tensor rows = Tensor::empty({3, 3}, DType::f32);
  for (int64_t i = 0; i < 9; ++i) rows.data<float>()[i] = float(i / 3 + 1);  // rows of 1s, 2s, 3s
  worker.push_rows("emb", ids_of({4, 0, 4}), rows).wait();
  for (int c = 0; c < 3; ++c) {
    want[12 + c] += 1 + 3;  // row 4: the 1s and the 3s
    want[0 + c] += 2;       // row 0
  }
  CHECK(values(worker.pull("emb").wait()) == want);
  std::vector<float> picked;
  for (int64_t r : {3, 0, 4, 1, 3})
    for (int c = 0; c < 3; ++c) picked.push_back(want[r * 3 + c]);
  CHECK(values(worker.pull_rows("emb", ids_of({3, 0, 4, 1, 3})).wait()) == picked);
  worker.push("w", filled({4}, 10.f)).wait();
  CHECK(values(worker.pull("w").wait()) == std::vector<float>{10, 11, 12, 13});

  // Each server holds exactly its row range.
  for (auto& s : servers) s->stop();
  CHECK(values(servers[0]->value("emb")) == std::vector<float>(want.begin(), want.begin() + 6));
  CHECK(values(servers[1]->value("emb")) == std::vector<float>(want.begin() + 6, want.end()));
  CHECK(values(servers[1]->value("w")) == std::vector<float>{12, 13});

  // Bad input is refused before anything is sent, naming the table.
  CHECK_THROWS_WITH(worker.push("emb", filled({4, 3}, 1.f)),
                    Catch::Contains("table 'emb'") && Catch::Contains("[5,3]"));
  CHECK_THROWS_WITH(worker.pull_rows("emb", ids_of({1, 7})), Catch::Contains("row id 7") && Catch::Contains("5 rows"));
  CHECK_THROWS_AS(worker.pull("nope"), NotFoundError);
}

TEST_CASE("ps worker cache: SSP reads come from the cache while within s clocks, with the worker's own pushes", "[ps]") {
  auto server = make_server(2, {{.name = "w", .initial = zeros({3}), .sync = Sync::ssp(2)},
                                {.name = "b", .initial = zeros({2})},
                                {.name = "a", .initial = zeros({2}), .sync = Sync::asp()},
                                {.name = "s", .initial = zeros({2}), .rule = UpdateRule::sgd, .lr = 1.0,
                                 .sync = Sync::ssp(2)},
                                {.name = "e", .initial = zeros({4, 2}), .sync = Sync::ssp(2)}});
  auto make = [&](uint32_t id) {
    auto w = std::make_unique<Worker>(WorkerOptions{.servers = {server->endpoint()}, .secret = kSecret, .worker = id});
    LayoutPlanner plan(1, 0);
    w->add_table({plan.place("w", {3}), Sync::ssp(2)});
    w->add_table({plan.place("b", {2}), Sync::bsp()});
    w->add_table({plan.place("a", {2}), Sync::asp()});
    w->add_table({plan.place("s", {2}), Sync::ssp(2), UpdateRule::sgd});
    w->add_table({plan.place("e", {4, 2}), Sync::ssp(2)});
    return w;
  };
  auto A = make(0), B = make(1);

  SECTION("SSP(2), accumulate") {
    CHECK(values(A->pull("w").wait()) == std::vector<float>(3, 0.f));
    Pending hit = A->pull("w");
    CHECK(hit.ready());  // served at once
    CHECK(hit.slowest_clock() == 0);
    CHECK(A->cache_stats().hits == 1);
    CHECK(A->cache_stats().misses == 1);
    A->push("w", filled({3}, 1.f)).wait();
    CHECK(values(A->pull("w").wait()) == std::vector<float>(3, 1.f));  // read-my-writes
    B->push("w", filled({3}, 10.f)).wait();
    A->clock();
    A->clock();  // at clock 2, the cached value (slowest 0) still satisfies 0 >= 2 - 2
    CHECK(values(A->pull("w").wait()) == std::vector<float>(3, 1.f));
    CHECK(A->cache_stats().hits == 3);
    B->clock();
    A->clock();  // at clock 3 it needs slowest >= 1: the server answers, with B's push
    Pending fresh = A->pull("w");
    CHECK(values(fresh.wait()) == std::vector<float>(3, 11.f));
    CHECK(fresh.slowest_clock() == 1);
    CHECK(A->cache_stats().misses == 2);
    // Every read counted by staleness, the cached ones included: 0, 0, 0, 2, then 3 - 1.
    const auto& hist = A->cache_stats().staleness;
    CHECK(hist[0] == 3);
    CHECK(hist[2] == 2);
    // A barrier empties the cache: every earlier push is seen.
    B->push("w", filled({3}, 100.f)).wait();
    std::thread other([&] {
      B->clock();
      B->clock();  // B at 3
      B->barrier();
    });
    A->barrier();  // A at 4; B's barrier at 4 too
    other.join();
    CHECK(values(A->pull("w").wait()) == std::vector<float>(3, 111.f));
  }
  SECTION("BSP: a read at the same clock comes from the cache; own pushes wait for the clock's end") {
    A->pull("b").wait();
    A->push("b", filled({2}, 1.f)).wait();
    CHECK(values(A->pull("b").wait()) == std::vector<float>(2, 0.f));  // what the server would answer too
    CHECK(A->cache_stats().hits == 1);
    A->clock();
    B->clock();
    CHECK(values(A->pull("b").wait()) == std::vector<float>(2, 1.f));
    CHECK(A->cache_stats().misses == 2);
  }
  SECTION("ASP bypasses the cache; a server-side optimizer's table forgets what this worker pushed") {
    A->pull("a").wait();
    B->push("a", filled({2}, 5.f)).wait();
    CHECK(values(A->pull("a").wait()) == std::vector<float>(2, 5.f));
    CHECK(A->cache_stats().hits + A->cache_stats().misses == 0);
    A->pull("s").wait();
    A->push("s", filled({2}, 2.f)).wait();  // sgd, lr 1: s -= 2
    CHECK(values(A->pull("s").wait()) == std::vector<float>(2, -2.f));
    CHECK(A->cache_stats().misses == 2);
  }
  SECTION("rows: cached rows answer, only the missing ones are fetched") {
    A->pull_rows("e", ids_of({1, 2})).wait();
    CHECK(A->cache_stats().row_misses == 2);
    B->push_rows("e", ids_of({1, 3}), filled({2, 2}, 7.f)).wait();
    // Row 1 from the cache (B's push is within the bound), row 3 from the server.
    CHECK(values(A->pull_rows("e", ids_of({2, 1, 3})).wait()) == std::vector<float>{0, 0, 0, 0, 7, 7});
    CHECK(A->cache_stats().row_hits == 2);
    CHECK(A->cache_stats().row_misses == 3);
    A->push_rows("e", ids_of({1}), filled({1, 2}, 5.f)).wait();
    CHECK(values(A->pull_rows("e", ids_of({1})).wait()) == std::vector<float>{5, 5});
    CHECK(A->cache_stats().row_hits == 3);
  }
}

TEST_CASE("ps worker: without the cache every pull reaches the servers", "[ps]") {
  auto server = make_server(1, {{.name = "w", .initial = zeros({2}), .sync = Sync::ssp(3)}});
  Worker w({.servers = {server->endpoint()}, .secret = kSecret, .cache = false});
  w.add_table({LayoutPlanner(1, 0).place("w", {2}), Sync::ssp(3)});
  w.pull("w").wait();
  Pending p = w.pull("w");
  p.wait();
  CHECK(w.cache_stats().hits + w.cache_stats().misses == 0);
}

TEST_CASE("ps client: a restarted server is handshaken with again, unanswered requests are resent", "[ps]") {
  ndflow::testing::TempDir dir;
  const std::string path = dir / "server-0.ndf", older = dir / "older.ndf";
  std::vector<std::string> logged;
  auto options = [&](const std::string& address) {
    return ServerOptions{.address = address, .secret = kSecret, .num_workers = 1, .checkpoint_path = path,
                         .checkpoint_every = 1, .restore = true,
                         .log = [&](const std::string& m) { logged.push_back(m); }};
  };
  auto first = std::make_unique<Server>(options("tcp://127.0.0.1:0"));
  first->add_table({.name = "w", .initial = zeros({2})});
  first->start();
  const std::string address = first->endpoint();
  Client c({.address = address, .secret = kSecret, .worker = 0, .timeout = 5000ms});
  c.push("w", filled({2}, 1.f)).wait();
  c.clock();  // checkpoint at clock 1: w = 1
  std::filesystem::copy_file(path, older);
  c.push("w", filled({2}, 2.f)).wait();
  c.clock();  // clock 2: w = 3, then the server dies having checkpointed clock 2 ...
  first->stop();
  first.reset();
  std::filesystem::copy_file(older, path, std::filesystem::copy_options::overwrite_existing);  // ... or not
  Handle queued = c.push("w", filled({2}, 4.f));  // sent while no server listens

  Server second(options(address));
  second.add_table({.name = "w", .initial = zeros({2})});
  second.start();
  queued.wait();
  CHECK(c.rehandshakes() == 1);
  CHECK(c.current_clock() == 2);  // the worker's clock, not the checkpoint's
  c.clock();
  // The clock-1 push is lost with the checkpoint interval; the rest counts once.
  CHECK(values(c.pull("w").wait()) == std::vector<float>{5.f, 5.f});
  bool resumed = false;
  for (const std::string& m : logged) resumed |= m.find("worker 0 incarnation 1 resumes at clock 2") != std::string::npos;
  CHECK(resumed);
  second.stop();
}

TEST_CASE("ps worker: barrier returns once every live worker has reached the clock", "[ps]") {
  auto server = make_server(2, {{.name = "w", .initial = zeros({1}), .sync = Sync::asp()}});
  Worker A({.servers = {server->endpoint()}, .secret = kSecret, .worker = 0});
  Worker B({.servers = {server->endpoint()}, .secret = kSecret, .worker = 1});
  std::atomic<bool> b_clocked{false};
  std::thread slow([&] {
    std::this_thread::sleep_for(200ms);
    b_clocked = true;
    B.clock();
  });
  const auto t0 = std::chrono::steady_clock::now();
  A.barrier();
  CHECK(b_clocked.load());
  CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
  CHECK(A.current_clock() == 1);
  slow.join();
}

// Three workers, worker 0 slow, each pushing a value computed from what it
// pulled: the reads, per worker and clock, are the trajectory.
static std::vector<std::vector<float>> trajectory(Sync sync) {
  constexpr int W = 3, C = 8;
  auto server = make_server(W, {{.name = "x", .initial = filled({2}, 1.f), .sync = sync}});
  std::vector<std::vector<float>> reads(W);
  std::vector<std::thread> threads;
  Failures failures;
  for (int w = 0; w < W; ++w) {
    threads.emplace_back([&, w] {
      try {
        Worker worker({.servers = {server->endpoint()}, .secret = kSecret, .worker = uint32_t(w)});
        worker.add_table({LayoutPlanner(1, 0).place("x", {2}), sync});
        for (int c = 0; c < C; ++c) {
          std::vector<float> v = values(worker.pull("x").wait());
          reads[w].insert(reads[w].end(), v.begin(), v.end());
          if (w == 0) std::this_thread::sleep_for(10ms);
          Tensor step = Tensor::empty({2}, DType::f32);
          step.data<float>()[0] = 0.5f * v[1] + float(w + 1);
          step.data<float>()[1] = 0.25f * v[0] - float(c);
          worker.push("x", step).wait();
          worker.clock();
        }
      } catch (const std::exception& e) {
        failures.add(e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(failures.text() == "");
  return reads;
}

TEST_CASE("ps: SSP(0) takes the same trajectory as BSP, whatever the timing", "[ps]") {
  const auto bsp = trajectory(Sync::bsp());
  CHECK(trajectory(Sync::ssp(0)) == bsp);
  CHECK(trajectory(Sync::bsp()) == bsp);  // and BSP itself is deterministic
  CHECK(trajectory(Sync::ssp(2)) != bsp);  // while SSP(2) lets fast workers read ahead
}

TEST_CASE("ps worker: a rejoining worker whose servers disagree on its clock continues at the latest", "[ps]") {
  auto s0 = make_server(1, {{.name = "a", .initial = zeros({2})}});
  auto s1 = make_server(1, {{.name = "b", .initial = zeros({2})}});
  {
    Client only_first({.address = s0->endpoint(), .secret = kSecret, .worker = 0});
    for (int c = 0; c < 3; ++c) only_first.clock();  // as if s1 had been restored from before these clocks
  }
  Worker w({.servers = {s0->endpoint(), s1->endpoint()}, .secret = kSecret, .worker = 0, .incarnation = 2});
  LayoutPlanner plan(2, 1 << 20);
  w.add_table({plan.place("a", {2}), Sync::bsp()});
  w.add_table({plan.place("b", {2}), Sync::bsp()});
  REQUIRE(w.current_clock() == 3);
  CHECK(values(w.pull("a").wait()) == std::vector<float>{0, 0});
  CHECK(values(w.pull("b").wait()) == std::vector<float>{0, 0});  // s1 has it at clock 3 too, or it would refuse
  w.push("b", filled({2}, 1.f)).wait();
  w.clock();
  CHECK(values(w.pull("b").wait()) == std::vector<float>{1, 1});
}

TEST_CASE("ps server: tables can be added while it runs, and a name is still taken only once", "[ps]") {
  auto server = make_server(1, {{.name = "first", .initial = zeros({1}), .sync = Sync::asp()}});
  Client c({.address = server->endpoint(), .secret = kSecret, .worker = 0});
  c.push("first", filled({1}, 1.f)).wait();
  CHECK_THROWS_WITH(c.pull("later").wait(), Catch::Contains("unknown table 'later'"));
  server->add_table({.name = "later", .initial = filled({2}, 3.f), .sync = Sync::asp()});
  c.push("later", filled({2}, 1.f)).wait();
  CHECK(values(c.pull("later").wait()) == std::vector<float>{4.f, 4.f});
  CHECK_THROWS_WITH(server->add_table({.name = "first", .initial = zeros({1})}), Catch::Contains("added twice"));
  server->stop();
  CHECK(values(server->value("later")) == std::vector<float>{4.f, 4.f});
  CHECK(values(server->value("first")) == std::vector<float>{1.f});
}

TEST_CASE("ps worker: a failed request fails again on a second wait instead of hanging", "[ps]") {
  auto server = make_server(1, {{.name = "w", .initial = zeros({2}), .rule = UpdateRule::sgd}});
  Worker w({.servers = {server->endpoint()}, .secret = kSecret, .timeout = 2000ms});
  w.add_table({LayoutPlanner(1, 0).place("w", {2}), Sync::bsp(), UpdateRule::sgd});
  Pending p = w.set_lr("w", -1.0);
  CHECK_THROWS_WITH(p.wait(), Catch::Contains("finite value >= 0"));
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(p.wait(), Catch::Contains("finite value >= 0"));
  CHECK(std::chrono::steady_clock::now() - t0 < 100ms);
  CHECK(p.ready());
}

TEST_CASE("ps worker cache: a full row cache drops the least recently used row", "[ps]") {
  auto server = make_server(1, {{.name = "e", .initial = zeros({6, 2}), .sync = Sync::ssp(3)}});
  Worker w({.servers = {server->endpoint()}, .secret = kSecret, .cache_rows = 2});
  w.add_table({LayoutPlanner(1, 0).place("e", {6, 2}), Sync::ssp(3)});
  auto pull = [&](std::vector<int64_t> ids) { w.pull_rows("e", ids_of(std::move(ids))).wait(); };
  pull({0, 1});  // 2 misses; the cache holds 0, 1
  pull({0});     // hit: 0 is now the most recent
  pull({2});     // miss: 1, the least recently used, makes room
  pull({0});     // hit
  CHECK(w.cache_stats().row_hits == 2);
  pull({1});     // miss: it was dropped
  CHECK(w.cache_stats().row_misses == 4);
  CHECK(w.cache_stats().row_hits == 2);
}
