// distributed/ps: the parameter server's wire format, exactness of pushes
// under BSP/SSP/ASP, SSP's staleness bound, exactly-once replays, the
// handshake, fuzzed messages and a dead server. Everything runs in one
// process: a server thread and worker threads over tcp://127.0.0.1.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <ndflow/ndflow.h>

#include "distributed/ps/client.h"
#include "distributed/ps/server.h"
#include "distributed/ps/wire.h"
#include "distributed/ps/zmq_internal.h"
#include "format_test_util.h"
#include "ps_test_util.h"

using namespace ndflow;
using namespace ndflow::ps;
using namespace ndflow::ps::testing;
using namespace std::chrono_literals;

namespace {

// A bare DEALER socket for what ps::Client never sends: replays, lies, garbage.
struct RawPeer {
  zmq::context_t ctx;
  zmq::socket_t s{ctx, zmq::socket_type::dealer};
  explicit RawPeer(const std::string& address) {
    s.set(zmq::sockopt::linger, 0);
    s.connect(address);
  }
  void send(const Message& m) { REQUIRE(detail::send_message(s, nullptr, m)); }
  void send_frames(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i)
      s.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  Message recv() {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, 3000ms);
    std::vector<zmq::message_t> frames;
    REQUIRE(detail::recv_frames(s, frames));
    return detail::decode_frames(frames, 0);
  }
  Message hello(uint32_t worker, uint64_t incarnation, const std::string& secret = kSecret) {
    send(Message{.type = MsgType::hello, .request = 1, .worker = worker, .incarnation = incarnation, .text = secret});
    return recv();
  }
};

Message push_msg(uint32_t worker, uint64_t incarnation, uint64_t seq, const std::string& table, Tensor t) {
  return Message{.type = MsgType::push_dense, .request = seq, .worker = worker, .incarnation = incarnation,
                 .seq = seq, .table = table, .tensors = {std::move(t)}};
}

}  // namespace

TEST_CASE("ps wire: round trip keeps every field and tensor", "[ps]") {
  Message m{.type = MsgType::push_rows, .request = 42, .worker = 3, .incarnation = 7, .clock = 11, .seq = 9,
            .value = -1, .table = "emb/table.0", .tensors = {ids_of({4, 0, 4}), arange(0, 6).reshape({3, 2})}};
  Encoded e = encode(m);
  std::vector<Frame> payloads;
  for (const Tensor& t : e.payloads) payloads.push_back({t.raw_data(), t.nbytes(), t.impl_ptr()});
  Message d = decode(Frame{e.header.data(), e.header.size(), nullptr}, payloads);
  CHECK(d.type == m.type);
  CHECK(d.request == 42);
  CHECK(d.worker == 3);
  CHECK(d.incarnation == 7);
  CHECK(d.clock == 11);
  CHECK(d.seq == 9);
  CHECK(d.value == -1);
  CHECK(d.table == "emb/table.0");
  REQUIRE(d.tensors.size() == 2);
  CHECK(d.tensors[0].to_vector<int64_t>() == std::vector<int64_t>{4, 0, 4});
  CHECK(d.tensors[1].shape() == Shape{3, 2});
  CHECK(d.tensors[1].to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  // An owned, aligned frame is aliased, not copied.
  CHECK(d.tensors[1].raw_data() == e.payloads[1].raw_data());
}

TEST_CASE("ps wire: malformed messages are ValueErrors", "[ps]") {
  Message ok{.type = MsgType::push_dense, .seq = 1, .table = "w", .tensors = {zeros({4})}};
  Encoded e = encode(ok);
  const Tensor& p = e.payloads[0];
  auto dec = [&](std::vector<char> h, size_t payload_bytes = 16) {
    Frame pf{p.raw_data(), payload_bytes, nullptr};
    return decode(Frame{h.data(), h.size(), nullptr}, std::span<const Frame>(&pf, 1));
  };
  CHECK_NOTHROW(dec(e.header));
  CHECK_THROWS_WITH(dec(std::vector<char>(e.header.begin(), e.header.begin() + 8)), Catch::Contains("shorter"));
  CHECK_THROWS_WITH(dec(std::vector<char>(e.header.begin(), e.header.end() - 1)), Catch::Contains("length prefix"));
  CHECK_THROWS_WITH(dec(e.header, 12), Catch::Contains("needs 16 bytes"));
  auto h = e.header;
  h[0] ^= 1;
  CHECK_THROWS_WITH(dec(h), Catch::Contains("magic"));
  h = e.header;
  h[4] = 9;
  CHECK_THROWS_WITH(dec(h), Catch::Contains("wire version 9"));
  h = e.header;
  h[6] = 99;
  CHECK_THROWS_WITH(dec(h), Catch::Contains("unknown message type"));
  // The payload's dtype code sits right after the fixed part, six fields and both strings.
  h = e.header;
  const size_t dtype_at = 12 + 8 + 4 + 8 + 8 + 8 + 8 + 2 + 1 + 2;
  h[dtype_at] = 4;  // i32, as many bytes as f32: only the dtype rule can refuse it
  CHECK_THROWS_WITH(dec(h), Catch::Contains("tables are f32"));
  h[dtype_at] = 77;
  CHECK_THROWS_WITH(dec(h), Catch::Contains("dtype code 77"));
  h = e.header;
  int64_t huge = int64_t(1) << 62;
  std::memcpy(h.data() + dtype_at + 2, &huge, 8);
  CHECK_THROWS_WITH(dec(h), Catch::Contains("too large"));
  int64_t neg = -4;
  std::memcpy(h.data() + dtype_at + 2, &neg, 8);
  CHECK_THROWS_WITH(dec(h), Catch::Contains("negative dimension"));

  CHECK_THROWS_WITH(encode(Message{.type = MsgType::pull_dense, .table = "bad name!"}),
                    Catch::Contains("bad name!") && Catch::Contains("A-Za-z0-9"));
  CHECK_THROWS_WITH(encode(Message{.type = MsgType::pull_rows, .table = "e", .tensors = {zeros({2})}}),
                    Catch::Contains("1-d i64"));
  CHECK_THROWS_WITH(encode(Message{.type = MsgType::push_rows, .seq = 1, .table = "e",
                                   .tensors = {ids_of({1, 2}), zeros({3, 4})}}),
                    Catch::Contains("do not match 2 row ids"));
  CHECK_THROWS_WITH(encode(Message{.type = MsgType::hello}), Catch::Contains("secret"));
  CHECK(valid_table_name("layer1.weight"));
  CHECK_FALSE(valid_table_name(""));
  CHECK_FALSE(valid_table_name(std::string(kMaxTableName + 1, 'a')));
  CHECK_FALSE(valid_table_name("a b"));
}

TEST_CASE("ps wire: random bytes never crash the decoder", "[ps]") {
  std::mt19937 rng(7);
  Encoded e = encode(Message{.type = MsgType::push_rows, .seq = 1, .table = "emb",
                             .tensors = {ids_of({1, 3}), zeros({2, 5})}});
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<char> h = e.header;
    if (i % 2) {  // pure noise of random length
      h.resize(rng() % 200);
      for (char& c : h) c = static_cast<char>(rng());
    } else {      // a valid header with a few bytes changed or cut
      for (int k = 1 + rng() % 4; k > 0; --k) h[rng() % h.size()] = static_cast<char>(rng());
      if (rng() % 4 == 0) h.resize(rng() % h.size());
    }
    std::vector<char> a(e.payloads[0].nbytes()), b(e.payloads[1].nbytes());
    std::vector<Frame> payloads{{a.data(), a.size(), nullptr}, {b.data(), rng() % 3 ? b.size() : rng() % 64, nullptr}};
    try {
      decode(Frame{h.data(), h.size(), nullptr}, payloads);
      ++accepted;  // e.g. only the request id changed
    } catch (const ValueError&) {
    }
  }
  CHECK(accepted < 10000);
}

TEST_CASE("ps: 4 workers x 20 clocks give the exact closed-form sums under BSP and SSP(2) and ASP", "[ps]") {
  constexpr int W = 4, C = 20, R = 16;
  for (Sync sync : {Sync::bsp(), Sync::ssp(2), Sync::asp()}) {
    INFO("staleness " << sync.staleness << " kind " << int(sync.kind));
    auto server = make_server(W, {{.name = "w", .initial = filled({8}, 1.f), .sync = sync},
                                  {.name = "emb", .initial = zeros({R, 3}), .sync = sync},
                                  {.name = "sgd", .initial = filled({4}, 100.f), .rule = UpdateRule::sgd,
                                   .lr = 0.5, .sync = sync}});
    std::vector<std::thread> threads;
    Failures failures;
    for (int w = 0; w < W; ++w) {
      threads.emplace_back([&, w] {
        try {
          Client c({.address = server->endpoint(), .secret = kSecret, .worker = uint32_t(w)});
          for (int clk = 0; clk < C; ++clk) {
            Handle pull = c.pull("w");                      // overlaps with the pushes below
            Tensor g = arange(0, 8) + float((w + 1) * (clk + 1));  // integer-valued: f32 sums stay exact
            Handle p1 = c.push("w", g);
            Handle p2 = c.push_rows("emb", ids_of({clk % R, (w + clk) % R}), filled({2, 3}, float(w + 1)));
            Handle p3 = c.push("sgd", filled({4}, 2.f));    // each push: -= 0.5 * 2
            pull.wait();
            p1.wait();
            p2.wait();
            p3.wait();
            c.clock();
          }
        } catch (const std::exception& e) {
          failures.add(e.what());
        }
      });
    }
    for (auto& t : threads) t.join();
    REQUIRE(failures.text() == "");
    server->stop();
    // Closed forms: sum over workers and clocks of ((w+1)(c+1) + i), plus the initial 1.
    std::vector<float> w_expect(8), emb_expect(R * 3, 0.f);
    for (int i = 0; i < 8; ++i) w_expect[i] = 1.f + float((W * (W + 1) / 2) * (C * (C + 1) / 2) + W * C * i);
    for (int w = 0; w < W; ++w)
      for (int clk = 0; clk < C; ++clk)
        for (int row : {clk % R, (w + clk) % R})
          for (int j = 0; j < 3; ++j) emb_expect[row * 3 + j] += float(w + 1);
    CHECK(server->value("w").to_vector<float>() == w_expect);
    CHECK(server->value("emb").to_vector<float>() == emb_expect);
    CHECK(server->value("sgd").to_vector<float>() == std::vector<float>(4, 100.f - W * C));
    CHECK(server->stats().pushes_applied == uint64_t(3 * W * C));
    CHECK(server->stats().rejected == 0);
  }
}

// Worker 0 is slow; every worker pushes a one-hot count of its own clocks and
// measures, from the pulled data itself, how many clocks behind the slowest
// worker's updates are: that is the staleness of the read.
static int64_t max_staleness(Sync sync, int64_t* reported_max) {
  constexpr int W = 3, C = 10;
  auto server = make_server(W, {{.name = "count", .initial = zeros({W}), .sync = sync}});
  std::vector<std::thread> threads;
  std::atomic<int64_t> max_seen{0}, max_reported{0};
  Failures failures;
  for (int w = 0; w < W; ++w) {
    threads.emplace_back([&, w] {
      try {
        Client c({.address = server->endpoint(), .secret = kSecret, .worker = uint32_t(w)});
        Tensor one_hot = zeros({W});
        one_hot.data<float>()[w] = 1.f;
        for (int clk = 0; clk < C; ++clk) {
          Handle h = c.pull("count");
          auto v = h.wait().to_vector<float>();
          const int64_t slowest = int64_t(*std::min_element(v.begin(), v.end()));
          int64_t seen = clk - slowest, reported = clk - h.slowest_clock();
          for (int64_t m = max_seen; seen > m && !max_seen.compare_exchange_weak(m, seen);) {}
          for (int64_t m = max_reported; reported > m && !max_reported.compare_exchange_weak(m, reported);) {}
          if (w == 0) std::this_thread::sleep_for(15ms);
          c.push("count", one_hot).wait();
          c.clock();
        }
      } catch (const std::exception& e) {
        failures.add(e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(failures.text() == "");
  *reported_max = max_reported;
  return max_seen;
}

TEST_CASE("ps: with a slow worker SSP(s) reads reach staleness s and never more while BSP stays at 0", "[ps]") {
  int64_t reported = -1;
  CHECK(max_staleness(Sync::bsp(), &reported) == 0);
  CHECK(reported == 0);
  CHECK(max_staleness(Sync::ssp(0), &reported) == 0);
  CHECK(max_staleness(Sync::ssp(2), &reported) == 2);
  CHECK(reported == 2);
  CHECK(max_staleness(Sync::ssp(4), &reported) == 4);
  // ASP never waits: the fast workers run far ahead of the slow one.
  CHECK(max_staleness(Sync::asp(), &reported) > 4);
}

TEST_CASE("ps: a pull waiting on a slow worker outlives the silence timeout", "[ps]") {
  auto server = make_server(2, {{.name = "w", .initial = zeros({2})}});
  Client fast({.address = server->endpoint(), .secret = kSecret, .worker = 0, .timeout = 200ms});
  Client slow({.address = server->endpoint(), .secret = kSecret, .worker = 1, .timeout = 200ms});
  fast.push("w", filled({2}, 3.f)).wait();
  fast.clock();
  Handle h = fast.pull("w");  // BSP at clock 1: needs worker 1 at clock 1
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(h.ready());
  std::thread late([&] {
    std::this_thread::sleep_for(600ms);  // three times the timeout
    slow.clock();
  });
  auto t0 = std::chrono::steady_clock::now();
  CHECK(h.wait().to_vector<float>() == std::vector<float>{3.f, 3.f});
  CHECK(std::chrono::steady_clock::now() - t0 >= 400ms);
  late.join();
  CHECK(server->stats().pulls_delayed == 1);
}

TEST_CASE("ps: a replayed push is applied exactly once and a new incarnation starts afresh", "[ps]") {
  auto server = make_server(2, {{.name = "w", .initial = zeros({3})}});
  RawPeer a(server->endpoint());
  REQUIRE(a.hello(1, 5).type == MsgType::reply);
  for (uint64_t seq : {1, 1, 2, 1, 2}) {
    a.send(push_msg(1, 5, seq, "w", filled({3}, 10.f)));
    CHECK(a.recv().type == MsgType::reply);  // a replay is acknowledged, not refused
  }
  CHECK(server->stats().pushes_applied == 2);
  CHECK(server->stats().replays_ignored == 3);

  // The worker restarts as incarnation 6: sequence numbers begin again...
  RawPeer b(server->endpoint());
  REQUIRE(b.hello(1, 6).type == MsgType::reply);
  b.send(push_msg(1, 6, 1, "w", filled({3}, 1.f)));
  CHECK(b.recv().type == MsgType::reply);
  // ...and the old process can no longer push, nor rejoin.
  a.send(push_msg(1, 5, 3, "w", filled({3}, 100.f)));
  Message refused = a.recv();
  CHECK(refused.type == MsgType::error);
  CHECK_THAT(refused.text, Catch::Contains("replaced by incarnation 6"));
  CHECK_THAT(a.hello(1, 5).text, Catch::Contains("older than incarnation 6"));
  server->stop();
  CHECK(server->value("w").to_vector<float>() == std::vector<float>(3, 21.f));
}

TEST_CASE("ps: connections without the job's secret are refused", "[ps]") {
  auto server = make_server(2, {{.name = "w", .initial = filled({2}, 5.f)}});
  CHECK_THROWS_WITH(Client({.address = server->endpoint(), .secret = "guess", .worker = 0, .timeout = 2000ms}),
                    Catch::Contains("wrong job secret") && Catch::Contains(server->endpoint()));
  CHECK(server->stats().refused == 1);
  CHECK_THROWS_WITH(Client({.address = server->endpoint(), .secret = kSecret, .worker = 2, .timeout = 2000ms}),
                    Catch::Contains("worker id 2 is out of range"));
  // No handshake at all: every request is refused and nothing changes.
  RawPeer raw(server->endpoint());
  raw.send(push_msg(0, 1, 1, "w", filled({2}, 1.f)));
  CHECK_THAT(raw.recv().text, Catch::Contains("before a handshake"));
  // A wrong secret after a good handshake drops the session too.
  REQUIRE(raw.hello(0, 1).type == MsgType::reply);
  REQUIRE(raw.hello(0, 1, "wrong").type == MsgType::error);
  raw.send(push_msg(0, 1, 1, "w", filled({2}, 1.f)));
  CHECK_THAT(raw.recv().text, Catch::Contains("before a handshake"));

  Client good({.address = server->endpoint(), .secret = kSecret, .worker = 0});
  CHECK(good.pull("w").wait().to_vector<float>() == std::vector<float>{5.f, 5.f});
  CHECK_THROWS_WITH(good.push("nope", zeros({2})).wait(),
                    Catch::Contains("unknown table 'nope' (this server has 'w')") &&
                        Catch::Contains(server->endpoint()));
  CHECK_THROWS_WITH(good.push("w", zeros({3})).wait(), Catch::Contains("pushed shape [3] to table 'w' of shape [2]"));
  CHECK_THROWS_WITH(good.pull_rows("w", ids_of({0, 2})).wait(), Catch::Contains("row id 2"));
  // Zero rows are a valid (empty) request.
  CHECK(good.pull_rows("w", ids_of({})).wait().shape() == Shape{0});
  CHECK(good.push_rows("w", ids_of({}), zeros({0})).wait().defined() == false);
  CHECK(server->stats().pushes_applied == 1);  // the empty one
}

TEST_CASE("ps: fuzzed and mutated messages are rejected without changing server state", "[ps]") {
  auto server = make_server(1, {{.name = "w", .initial = arange(0, 6)}, {.name = "emb", .initial = zeros({4, 2})}});
  RawPeer raw(server->endpoint());
  REQUIRE(raw.hello(0, 1).type == MsgType::reply);  // authenticated: garbage reaches the deep checks too
  std::mt19937 rng(11);
  std::vector<Encoded> valid = {
      encode(push_msg(0, 1, 1, "w", arange(0, 6))),
      encode(Message{.type = MsgType::push_rows, .worker = 0, .incarnation = 1, .seq = 1, .table = "emb",
                     .tensors = {ids_of({3, 0}), filled({2, 2}, 1.f)}}),
      encode(Message{.type = MsgType::pull_rows, .worker = 0, .incarnation = 1, .table = "emb",
                     .tensors = {ids_of({1})}})};
  auto bytes = [](const Tensor& t) { return std::string(static_cast<const char*>(t.raw_data()), t.nbytes()); };
  int sent = 0;
  for (int i = 0; i < 1500; ++i) {
    std::vector<std::string> frames;
    if (i % 3 == 0) {
      for (int f = 1 + rng() % 3; f > 0; --f) {
        std::string s(rng() % 100, '\0');
        for (char& c : s) c = static_cast<char>(rng());
        frames.push_back(s);
      }
    } else {
      const Encoded& e = valid[rng() % valid.size()];
      frames.push_back(std::string(e.header.begin(), e.header.end()));
      for (const Tensor& t : e.payloads) frames.push_back(bytes(t));
      std::string& target = frames[rng() % frames.size()];
      if (rng() % 3 == 0 || target.empty()) target.resize(target.empty() ? 3 : rng() % target.size());
      else for (int k = 1 + rng() % 3; k > 0; --k) target[rng() % target.size()] = static_cast<char>(rng());
    }
    // Only what this process's own decoder refuses is sent: a mutation that
    // stays valid (say, of the request id) would be a legitimate push.
    std::vector<Frame> payloads;
    for (size_t f = 1; f < frames.size(); ++f) payloads.push_back({frames[f].data(), frames[f].size(), nullptr});
    try {
      decode(Frame{frames[0].data(), frames[0].size(), nullptr}, payloads);
      continue;
    } catch (const ValueError&) {
    }
    raw.send_frames(frames);
    CHECK(raw.recv().type == MsgType::error);
    ++sent;
  }
  // Well-formed but wrong for this server: out-of-range rows, wrong shapes, unknown tables, clock jumps.
  std::vector<Message> lies = {
      Message{.type = MsgType::push_rows, .worker = 0, .incarnation = 1, .seq = 1, .table = "emb",
              .tensors = {ids_of({0, 4}), filled({2, 2}, 1.f)}},
      Message{.type = MsgType::push_rows, .worker = 0, .incarnation = 1, .seq = 1, .table = "emb",
              .tensors = {ids_of({-1}), filled({1, 2}, 1.f)}},
      Message{.type = MsgType::push_rows, .worker = 0, .incarnation = 1, .seq = 1, .table = "emb",
              .tensors = {ids_of({0}), filled({1, 3}, 1.f)}},
      push_msg(0, 1, 1, "w", zeros({7})),
      push_msg(0, 1, 1, "other", zeros({6})),
      push_msg(1, 1, 1, "w", zeros({6})),  // speaks for another worker
      push_msg(0, 1, 0, "w", zeros({6})),  // no sequence number
      Message{.type = MsgType::clock, .worker = 0, .incarnation = 1, .clock = 5},
      Message{.type = MsgType::pull_dense, .worker = 0, .incarnation = 1, .clock = 3, .table = "w"},
      Message{.type = MsgType::reply, .worker = 0, .incarnation = 1},
  };
  for (const Message& m : lies) {
    raw.send(m);
    Message r = raw.recv();
    CHECK(r.type == MsgType::error);
    ++sent;
  }
  CHECK(sent > 500);
  CHECK(server->stats().rejected == uint64_t(sent));
  CHECK(server->stats().pushes_applied == 0);
  server->stop();
  CHECK(server->value("w").to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4, 5});
  CHECK(server->value("emb").to_vector<float>() == std::vector<float>(8, 0.f));
}

TEST_CASE("ps: a dead server makes the waiting call fail within the timeout naming the server", "[ps]") {
  auto server = make_server(1, {{.name = "w", .initial = zeros({2})}});
  const std::string address = server->endpoint();
  Client c({.address = address, .secret = kSecret, .worker = 0, .timeout = 300ms});
  c.push("w", filled({2}, 1.f)).wait();
  server->stop();  // as if the process died: the socket closes, nothing answers
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_AS(c.pull("w").wait(), TimeoutError);
  auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 300ms);
  CHECK(took < 1500ms);
  CHECK_THROWS_WITH(c.clock(), Catch::Contains("server " + address) && Catch::Contains("300 ms"));
  // Nobody listening at all: the handshake times out the same way.
  server.reset();
  CHECK_THROWS_WITH(Client({.address = address, .secret = kSecret, .worker = 0, .timeout = 200ms}),
                    Catch::Contains(address) && Catch::Contains("the handshake"));
}

TEST_CASE("ps: a silent worker leaves the clock table, and it comes back when it speaks again or restarts", "[ps]") {
  std::vector<std::string> logged;
  std::mutex log_mu;
  Server server({.secret = kSecret, .num_workers = 2, .heartbeat_timeout = 300ms, .log = [&](const std::string& m) {
                   std::lock_guard<std::mutex> lock(log_mu);
                   logged.push_back(m);
                 }});
  server.add_table({.name = "w", .initial = zeros({2})});  // BSP
  server.start();
  // timeout 200 ms: while a pull waits, the live worker pings every ~100 ms and so stays alive.
  Client live({.address = server.endpoint(), .secret = kSecret, .worker = 0, .timeout = 200ms});
  RawPeer quiet(server.endpoint());
  REQUIRE(quiet.hello(1, 1).type == MsgType::reply);
  quiet.send(push_msg(1, 1, 1, "w", filled({2}, 4.f)));  // at clock 0, held back until clock 0 finishes
  REQUIRE(quiet.recv().type == MsgType::reply);
  live.push("w", filled({2}, 1.f)).wait();
  live.clock();
  auto t0 = std::chrono::steady_clock::now();
  // BSP at clock 1 needs worker 1 at clock 1; it never clocks, and is declared dead instead.
  CHECK(live.pull("w").wait().to_vector<float>() == std::vector<float>{5.f, 5.f});
  CHECK(std::chrono::steady_clock::now() - t0 >= 250ms);
  CHECK(server.stats().workers_dead == 1);
  {
    std::lock_guard<std::mutex> lock(log_mu);
    REQUIRE(logged.size() == 1);
    CHECK_THAT(logged[0], Catch::Contains("worker 1 incarnation 1 sent nothing for 300 ms: declared dead at clock 0"));
  }

  // It speaks again (it was only slow): back in the clock table at its own clock 0, so BSP waits for it again.
  quiet.send(Message{.type = MsgType::ping, .request = 9, .worker = 1, .incarnation = 1});
  REQUIRE(quiet.recv().type == MsgType::reply);
  live.push("w", filled({2}, 2.f)).wait();
  live.clock();
  Handle waiting = live.pull("w");  // at clock 2
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(waiting.ready());

  // Silent again, it is declared dead again, and the pull is answered.
  CHECK(waiting.wait().to_vector<float>() == std::vector<float>{7.f, 7.f});
  CHECK(server.stats().workers_dead == 2);

  // Restarted while dead: it rejoins at the slowest clock of the others (2), not at its old clock 0.
  Client back({.address = server.endpoint(), .secret = kSecret, .worker = 1, .incarnation = 2, .timeout = 200ms});
  CHECK(back.current_clock() == 2);
  CHECK(server.stats().rejoins == 1);
  back.push("w", filled({2}, 10.f)).wait();  // the new incarnation's pushes count
  back.clock();
  live.clock();
  CHECK(live.pull("w").wait().to_vector<float>() == std::vector<float>{17.f, 17.f});
  CHECK(back.ping() == 3);
  // Restarted while alive: it rejoins at its previous clock.
  back.push("w", filled({2}, 100.f)).wait();
  Client again({.address = server.endpoint(), .secret = kSecret, .worker = 1, .incarnation = 3, .timeout = 200ms});
  CHECK(again.current_clock() == 3);
  CHECK(server.stats().rejoins == 2);
  again.push("w", filled({2}, 1000.f)).wait();
  // The old process cannot speak for the worker any more.
  quiet.send(Message{.type = MsgType::ping, .request = 10, .worker = 1, .incarnation = 1});
  CHECK_THAT(quiet.recv().text, Catch::Contains("replaced by incarnation 3"));
  server.stop();
  CHECK(server.value("w").to_vector<float>() == std::vector<float>{1117.f, 1117.f});
  CHECK_THROWS_WITH(Server({.secret = kSecret, .heartbeat_timeout = 0ms, .log = {}}), Catch::Contains("heartbeat_timeout"));
}

TEST_CASE("ps: a server checkpoints every K clocks and on stop, and a restarted server resumes from it", "[ps]") {
  ndflow::testing::TempDir dir;
  const std::string path = dir / "server-0.ndf";
  auto options = [&](bool restore) {
    return ServerOptions{.secret = kSecret, .num_workers = 2, .checkpoint_path = path, .checkpoint_every = 2,
                         .restore = restore, .log = [](const std::string&) {}};
  };
  std::vector<TableSpec> specs = {{.name = "w", .initial = zeros({2})},  // BSP: held-back updates are saved too
                                  {.name = "a", .initial = zeros({3}), .sync = Sync::asp()}};
  {
    Server first(options(true));  // no checkpoint yet: starts from the initial values
    for (const TableSpec& t : specs) first.add_table(t);
    first.start();
    Client c0({.address = first.endpoint(), .secret = kSecret, .worker = 0});
    Client c1({.address = first.endpoint(), .secret = kSecret, .worker = 1});
    for (int clk = 0; clk < 3; ++clk) {
      for (Client* c : {&c0, &c1}) {
        c->push("w", filled({2}, 1.f)).wait();
        c->push("a", filled({3}, 1.f)).wait();
        c->clock();
      }
    }
    CHECK(first.stats().checkpoints == 1);  // at slowest clock 2
    c0.push("w", filled({2}, 5.f)).wait();  // clock 3, held back
    first.stop();                           // the last checkpoint
    CHECK(first.stats().checkpoints == 2);
  }
  Checkpoint saved = load_tensors(path);
  CHECK(saved.find("workers").to_vector<int64_t>() == std::vector<int64_t>{3, 1, 7, 3, 1, 6});
  CHECK(saved.find("pending/w/3").to_vector<float>() == std::vector<float>{5.f, 5.f});

  Server second(options(true));
  for (const TableSpec& t : specs) second.add_table(t);
  second.start();
  // The old incarnation's pushes are still known: a replay is ignored.
  RawPeer old(second.endpoint());
  REQUIRE(old.hello(0, 1).type == MsgType::reply);
  old.send(push_msg(0, 1, 7, "w", filled({2}, 100.f)));
  REQUIRE(old.recv().type == MsgType::reply);
  CHECK(second.stats().replays_ignored == 1);
  // Restarted workers continue at the checkpoint's clocks.
  Client c0({.address = second.endpoint(), .secret = kSecret, .worker = 0, .incarnation = 2});
  Client c1({.address = second.endpoint(), .secret = kSecret, .worker = 1, .incarnation = 2});
  CHECK(c0.current_clock() == 3);
  CHECK(c1.current_clock() == 3);
  CHECK(second.stats().rejoins == 1);  // worker 0 replaces the old process above, at its clock
  c1.push("w", filled({2}, 2.f)).wait();
  c0.clock();
  c1.clock();
  CHECK(c0.pull("w").wait().to_vector<float>() == std::vector<float>{13.f, 13.f});
  CHECK(c1.pull("a").wait().to_vector<float>() == std::vector<float>{6.f, 6.f, 6.f});
  second.stop();

  // A checkpoint that does not fit the tables is refused, naming the file and the table.
  Server wrong_shape(options(true));
  wrong_shape.add_table({.name = "w", .initial = zeros({4})});
  wrong_shape.add_table({.name = "a", .initial = zeros({3})});
  CHECK_THROWS_WITH(wrong_shape.start(), Catch::Contains(path) && Catch::Contains("'value/w' has shape [2], table 'w' of this server [4]"));
  CHECK(wrong_shape.value("w").to_vector<float>() == std::vector<float>(4, 0.f));  // left as it was
  Server missing(options(true));
  for (const TableSpec& t : specs) missing.add_table(t);
  missing.add_table({.name = "b", .initial = zeros({1})});
  CHECK_THROWS_WITH(missing.start(), Catch::Contains("has no table 'b'"));
  Server fewer(options(true));
  fewer.add_table(specs[0]);
  CHECK_THROWS_WITH(fewer.start(), Catch::Contains("'value/a', which is no table of this server"));
}
