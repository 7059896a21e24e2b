// distributed/rendezvous: keys, the timeout setting, the in-process
// rendezvous (send/recv in either order, many threads, dtype/shape checks,
// timeouts, abort, reset, copies) and the MPI wire header's validation. The
// MPI transport itself is tested under mpirun by tests/dist/rendezvous_mpi_test.cc.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <ndflow/ndflow.h>

#include "distributed/rendezvous.h"
#include "distributed/rendezvous_internal.h"

using namespace ndflow;
using namespace ndflow::distributed;
using namespace std::chrono_literals;

namespace {

RendezvousKey key(const std::string& edge, int64_t step = 0) {
  return {"/worker:0/cpu:0", "/worker:0/cpu:1", edge, step};
}

struct RecvResult {
  std::exception_ptr error;
  Tensor value;
};

// Posts a recv and returns a future of what its callback got.
std::future<RecvResult> recv_async(Rendezvous& rv, const RendezvousKey& k, DType dtype, const Shape& shape) {
  auto promise = std::make_shared<std::promise<RecvResult>>();
  auto fut = promise->get_future();
  rv.recv(k, dtype, shape, [promise](std::exception_ptr e, Tensor t) { promise->set_value({e, t}); });
  return fut;
}

std::exception_ptr send_sync(Rendezvous& rv, const RendezvousKey& k, const Tensor& t) {
  std::exception_ptr out;
  int calls = 0;
  rv.send(k, t, [&](std::exception_ptr e) {  // the in-process send calls back before returning
    out = e;
    ++calls;
  });
  REQUIRE(calls == 1);
  return out;
}

std::string message(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  }
}

template <typename E>
bool is(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

TEST_CASE("rendezvous keys: string form and workers", "[rendezvous]") {
  RendezvousKey k{"/worker:2/cpu:0", "/worker:13/cpu:1", "matmul:0", 7};
  CHECK(k.str() == "/worker:2/cpu:0;/worker:13/cpu:1;matmul:0;7");
  CHECK(k.src_worker() == 2);
  CHECK(k.dst_worker() == 13);
  RendezvousKey local{"cpu:0", "/worker:1", "^init", 0};
  CHECK(local.src_worker() == 0);
  CHECK(local.dst_worker() == 1);
  RendezvousKey bad{"/worker:x/cpu:0", "cpu:0", "a:0", 0};
  REQUIRE_THROWS_WITH(bad.src_worker(), Catch::Contains("/worker:x/cpu:0"));
  REQUIRE_THROWS_AS((RendezvousKey{"/worker:-1/cpu:0", "", "", 0}.src_worker()), ValueError);
  CHECK(RendezvousKey{"/worker:4", "", "", 0}.src_worker() == 4);
}

TEST_CASE("rendezvous timeout comes from NDFLOW_RENDEZVOUS_TIMEOUT", "[rendezvous]") {
  ::unsetenv("NDFLOW_RENDEZVOUS_TIMEOUT");
  CHECK(default_rendezvous_timeout() == 60.0);
  ::setenv("NDFLOW_RENDEZVOUS_TIMEOUT", "2.5", 1);
  CHECK(default_rendezvous_timeout() == 2.5);
  CHECK(make_local_rendezvous()->timeout() == 2.5);
  for (const char* bad : {"abc", "-1", "0", "5s", "inf"}) {
    ::setenv("NDFLOW_RENDEZVOUS_TIMEOUT", bad, 1);
    REQUIRE_THROWS_AS(default_rendezvous_timeout(), ValueError);
    REQUIRE_THROWS_WITH(default_rendezvous_timeout(), Catch::Contains("NDFLOW_RENDEZVOUS_TIMEOUT"));
  }
  ::unsetenv("NDFLOW_RENDEZVOUS_TIMEOUT");
}

TEST_CASE("local rendezvous: send before recv and recv before send", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  Tensor a = tensor(std::vector<float>{1.f, 2.f, 3.f, 4.f}, {2, 2});
  REQUIRE(send_sync(*rv, key("a:0"), a) == nullptr);
  auto got = recv_async(*rv, key("a:0"), DType::f32, {2, 2}).get();
  REQUIRE(got.error == nullptr);
  CHECK(got.value.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  CHECK(got.value.impl()->storage != a.impl()->storage);  // a copy, owned by the receiver

  auto pending = recv_async(*rv, key("b:0", 1), DType::i64, {3});
  CHECK(pending.wait_for(0ms) == std::future_status::timeout);
  REQUIRE(send_sync(*rv, key("b:0", 1), tensor(std::vector<int64_t>{5, 6, 7}, {3})) == nullptr);
  got = pending.get();
  REQUIRE(got.error == nullptr);
  CHECK(got.value.to_vector<int64_t>() == std::vector<int64_t>{5, 6, 7});

  // A scalar and an empty tensor travel too.
  REQUIRE(send_sync(*rv, key("s:0"), tensor(std::vector<double>{3.5}, {})) == nullptr);
  CHECK(recv_async(*rv, key("s:0"), DType::f64, {}).get().value.item<double>() == 3.5);
  REQUIRE(send_sync(*rv, key("e:0"), Tensor::empty({0, 3})) == nullptr);
  CHECK(recv_async(*rv, key("e:0"), DType::f32, {0, 3}).get().value.shape() == Shape{0, 3});
}

TEST_CASE("local rendezvous: many keys from several threads", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  constexpr int kThreads = 4, kPerThread = 300;
  std::mutex mu;
  std::condition_variable cv;
  int received = 0, wrong = 0;
  auto on_recv = [&](int64_t want) {
    return [&, want](std::exception_ptr e, Tensor t) {
      std::lock_guard lock(mu);
      if (e || t.item<int64_t>() != want) ++wrong;
      ++received;
      cv.notify_all();
    };
  };
  std::vector<std::thread> threads;
  std::atomic<int> send_errors{0};
  for (int th = 0; th < kThreads; ++th) {
    // Even threads send, odd ones receive, over interleaved keys: both orders happen.
    threads.emplace_back([&, th] {
      for (int i = 0; i < kPerThread; ++i) {
        const int64_t id = (th / 2) * kPerThread + i;
        auto k = key(str_cat("n", id, ":0"), id);
        if (th % 2 == 0)
          rv->send(k, tensor(std::vector<int64_t>{id}, {}), [&](std::exception_ptr e) { send_errors += e != nullptr; });
        else
          rv->recv(k, DType::i64, {}, on_recv(id));
      }
    });
  }
  for (auto& t : threads) t.join();
  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, 10s, [&] { return received == kThreads / 2 * kPerThread; }));
  CHECK(wrong == 0);
  CHECK(send_errors == 0);
}

TEST_CASE("local rendezvous: dtype and shape mismatches name the key and both", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  REQUIRE(send_sync(*rv, key("x:0"), Tensor::empty({2, 3})) == nullptr);
  auto got = recv_async(*rv, key("x:0"), DType::f64, {2, 3}).get();
  REQUIRE(is<TypeError>(got.error));
  CHECK_THAT(message(got.error), Catch::Contains(key("x:0").str()) && Catch::Contains("f32[2,3]") &&
                                     Catch::Contains("f64[2,3]"));
  auto pending = recv_async(*rv, key("y:0"), DType::f32, {3, 2});
  REQUIRE(send_sync(*rv, key("y:0"), Tensor::empty({2, 3})) == nullptr);
  got = pending.get();
  REQUIRE(is<ShapeError>(got.error));
  CHECK_THAT(message(got.error), Catch::Contains("f32[2,3]") && Catch::Contains("f32[3,2]"));
  // One message per key: a second send or a second waiting recv is an error, not a silent overwrite.
  REQUIRE(send_sync(*rv, key("z:0"), Tensor::empty({1})) == nullptr);
  CHECK_THAT(message(send_sync(*rv, key("z:0"), Tensor::empty({1}))), Catch::Contains("sent twice"));
  auto first = recv_async(*rv, key("w:0"), DType::f32, {1});
  CHECK_THAT(message(recv_async(*rv, key("w:0"), DType::f32, {1}).get().error), Catch::Contains("two recvs"));
}

TEST_CASE("local rendezvous: a recv that waits too long fails naming key and peer", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  rv->set_timeout(0.1);
  RendezvousKey k{"/worker:3/cpu:0", "/worker:3/cpu:1", "late:0", 4};
  auto start = std::chrono::steady_clock::now();
  auto slow = recv_async(*rv, k, DType::f32, {1});
  rv->set_timeout(0.05);  // an earlier deadline posted later must wake the timer first
  auto fast = recv_async(*rv, key("early:0"), DType::f32, {1});
  auto got = fast.get();
  CHECK(std::chrono::steady_clock::now() - start < 100ms + 500ms);
  REQUIRE(is<TimeoutError>(got.error));
  got = slow.get();
  auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 100ms);
  CHECK(waited < 2s);
  REQUIRE(is<TimeoutError>(got.error));
  CHECK_THAT(message(got.error), Catch::Contains(k.str()) && Catch::Contains("worker 3") &&
                                     Catch::Contains("/worker:3/cpu:0") &&
                                     Catch::Contains("NDFLOW_RENDEZVOUS_TIMEOUT"));
  // A message that comes after its recv timed out waits for a later recv.
  REQUIRE(send_sync(*rv, k, tensor(std::vector<float>{1.f}, {1})) == nullptr);
  CHECK(recv_async(*rv, k, DType::f32, {1}).get().error == nullptr);
}

TEST_CASE("local rendezvous: abort fails pending and later calls, reset recovers", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  auto pending = recv_async(*rv, key("p:0"), DType::f32, {1});
  REQUIRE(send_sync(*rv, key("unmatched:0"), tensor(std::vector<float>{1.f}, {1})) == nullptr);
  rv->abort(std::make_exception_ptr(CancelledError("step 3 failed: boom")));
  auto got = pending.get();
  CHECK_THAT(message(got.error), Catch::Contains("boom"));
  CHECK_THAT(message(recv_async(*rv, key("later:0"), DType::f32, {1}).get().error), Catch::Contains("boom"));
  CHECK_THAT(message(send_sync(*rv, key("later:0"), tensor(std::vector<float>{1.f}, {1}))), Catch::Contains("boom"));

  rv->reset();
  REQUIRE(send_sync(*rv, key("q:0"), tensor(std::vector<float>{2.f}, {1})) == nullptr);
  got = recv_async(*rv, key("q:0"), DType::f32, {1}).get();
  REQUIRE(got.error == nullptr);
  CHECK(got.value.item<float>() == 2.f);
  // The message sent before the abort is gone: this recv waits (and is cancelled by reset).
  auto stale = recv_async(*rv, key("unmatched:0"), DType::f32, {1});
  CHECK(stale.wait_for(20ms) == std::future_status::timeout);
  rv->reset();
  REQUIRE(is<CancelledError>(stale.get().error));
}

TEST_CASE("local rendezvous: destroying it cancels waiting recvs", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  auto pending = recv_async(*rv, key("d:0"), DType::f32, {1});
  rv.reset();
  auto got = pending.get();
  REQUIRE(is<CancelledError>(got.error));
  CHECK_THAT(message(got.error), Catch::Contains(key("d:0").str()));

  // The last reference may go away inside a callback run by the timer thread.
  auto owned = make_local_rendezvous();
  owned->set_timeout(0.02);
  std::promise<void> fired;
  Rendezvous* raw = owned.get();
  raw->recv(key("self:0"), DType::f32, {1}, [keep = std::move(owned), &fired](std::exception_ptr, Tensor) mutable {
    keep.reset();
    fired.set_value();
  });
  REQUIRE(fired.get_future().wait_for(5s) == std::future_status::ready);
}

TEST_CASE("local rendezvous: non-contiguous sends arrive contiguous, sender buffer is free", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  Tensor base = arange(0, 24, 1).reshape({2, 3, 4});
  Tensor view = base.permute({2, 0, 1}).slice(0, 1, 4, 2);  // [2,2,3], strided
  REQUIRE_FALSE(view.is_contiguous());
  auto pending = recv_async(*rv, key("v:0"), DType::f32, view.shape());
  REQUIRE(send_sync(*rv, key("v:0"), view) == nullptr);
  auto got = pending.get();
  REQUIRE(got.error == nullptr);
  CHECK(got.value.is_contiguous());
  CHECK(got.value.to_vector<float>() == view.to_vector<float>());
  Tensor bcast = tensor(std::vector<float>{1.f, 2.f}, {2, 1}).expand({2, 3});  // zero strides
  REQUIRE(send_sync(*rv, key("b:0"), bcast) == nullptr);
  CHECK(recv_async(*rv, key("b:0"), DType::f32, {2, 3}).get().value.to_vector<float>() ==
        std::vector<float>{1, 1, 1, 2, 2, 2});

  // Once done ran, the sender may overwrite its buffer.
  Tensor src = tensor(std::vector<float>{1.f, 2.f, 3.f}, {3});
  rv->send(key("m:0"), src, [&](std::exception_ptr e) {
    REQUIRE(e == nullptr);
    src.fill_(-1.0);
  });
  CHECK(src.to_vector<float>() == std::vector<float>{-1, -1, -1});
  CHECK(recv_async(*rv, key("m:0"), DType::f32, {3}).get().value.to_vector<float>() ==
        std::vector<float>{1, 2, 3});
}

TEST_CASE("local rendezvous: unsendable tensors fail through done", "[rendezvous]") {
  auto rv = make_local_rendezvous();
  CHECK_THAT(message(send_sync(*rv, key("u:0"), Tensor())), Catch::Contains("undefined") &&
                                                                 Catch::Contains(key("u:0").str()));
}

TEST_CASE("MPI wire header: round trip, and every malformed field is refused", "[rendezvous]") {
  namespace d = ndflow::distributed::detail;
  const std::string k = key("w:0", 9).str();
  auto bytes = d::encode_header(k, DType::i32, {2, 3}, 24);
  auto h = d::decode_header(bytes, 1);
  CHECK(h.key == k);
  CHECK(h.dtype == DType::i32);
  CHECK(h.shape == Shape{2, 3});
  CHECK(h.payload_bytes == 24);
  CHECK(d::decode_header(d::encode_header(k, DType::f64, {}, 8), 1).shape.empty());
  CHECK(d::key_devices(k).first == "/worker:0/cpu:0");
  CHECK(d::key_devices(k).second == "/worker:0/cpu:1");
  CHECK(d::key_devices("no separators").first.empty());
  CHECK(d::key_hash("") == 1469598103934665603ull);  // FNV-1a offset basis: the same everywhere

  auto refused = [&](std::vector<char> b, const std::string& why) {
    REQUIRE_THROWS_AS(d::decode_header(b, 3), ValueError);
    REQUIRE_THROWS_WITH(d::decode_header(b, 3), Catch::Contains("from rank 3") && Catch::Contains(why));
  };
  auto with = [&](size_t offset, std::vector<unsigned char> patch) {
    auto b = bytes;
    for (size_t i = 0; i < patch.size(); ++i) b[offset + i] = static_cast<char>(patch[i]);
    return b;
  };
  refused(std::vector<char>(bytes.begin(), bytes.begin() + 10), "shorter than the fixed part");
  refused(with(0, {0, 0, 0, 0}), "bad magic");
  refused(with(4, {9, 0}), "wire version 9");
  refused(with(6, {200}), "dtype code 200");
  refused(with(7, {40}), "40 dims");
  refused(with(7, {3}), "imply another size");                // ndim no longer fits the length
  refused(with(8, {0xff, 0xff, 0, 0}), "key of 65535 bytes");
  refused(with(16, {25}), "payload of 25 bytes for i32[2,3]");  // not dims x dtype size
  refused(with(24, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), "negative dim");
  auto huge = d::encode_header(k, DType::f64, {int64_t(1) << 40, int64_t(1) << 40}, 0);
  refused(huge, "overflows");
  bytes.push_back('x');
  refused(bytes, "imply another size");
}
