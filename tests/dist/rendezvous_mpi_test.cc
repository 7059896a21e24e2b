// The MPI rendezvous under mpirun (run by tools/run_dist_tests.sh with 2 and
// 4 ranks): ring exchange of several sizes and dtypes, many keys in flight
// received out of order, recvs posted before and after their message, tag
// collisions (forced: the tag space is shrunk to a few tags), dtype/shape
// mismatches, misaddressed keys, a timeout naming the peer, and the CPU an
// idle progress thread takes. Exits non-zero on any rank's failure.
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <ndflow/ndflow.h>

#include "distributed/cluster.h"
#include "distributed/communicator.h"
#include "distributed/rendezvous.h"

using namespace ndflow;
using namespace ndflow::distributed;
using namespace std::chrono_literals;

namespace {

int g_rank = 0, g_failed = 0, g_passed = 0;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
    return;
  }
  ++g_failed;
  std::fprintf(stderr, "FAILED on rank %d: %s\n", g_rank, what.c_str());
}

RendezvousKey key(int src, int dst, const std::string& edge, int64_t step = 0) {
  return {str_cat("/worker:", src, "/cpu:0"), str_cat("/worker:", dst, "/cpu:0"), edge, step};
}

std::string message(std::exception_ptr e) {
  if (!e) return "(no error)";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  }
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Distinct values per sender and salt that every dtype (u8, bool) can hold.
Tensor pattern(DType dtype, const Shape& shape, int src, int salt) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = double((i * 7 + src * 13 + salt * 3) % 101);
  if (dtype == DType::boolean)
    for (double& x : v) x = std::fmod(x, 2.0);
  return tensor(v, shape).to(dtype);
}

bool same_values(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         a.to(DType::f64).to_vector<double>() == b.to(DType::f64).to_vector<double>();
}

struct Got {
  std::exception_ptr error;
  Tensor value;
};

std::future<Got> recv_async(Rendezvous& rv, const RendezvousKey& k, DType dtype, const Shape& shape) {
  auto p = std::make_shared<std::promise<Got>>();
  auto f = p->get_future();
  rv.recv(k, dtype, shape, [p](std::exception_ptr e, Tensor t) { p->set_value({e, t}); });
  return f;
}

std::future<std::exception_ptr> send_async(Rendezvous& rv, const RendezvousKey& k, const Tensor& t) {
  auto p = std::make_shared<std::promise<std::exception_ptr>>();
  auto f = p->get_future();
  rv.send(k, t, [p](std::exception_ptr e) { p->set_value(e); });
  return f;
}

template <typename T>
T wait(std::future<T>& f, const std::string& what) {
  if (f.wait_for(30s) != std::future_status::ready) {
    check(false, what + ": no callback within 30 s");
    std::fflush(stderr);
    abort_job("rendezvous_mpi_test: hung");
  }
  return f.get();
}

template <typename T>
T wait(std::future<T>&& f, const std::string& what) {
  return wait(f, what);
}

void test_ring(Rendezvous& rv, int n) {
  const int to = (g_rank + 1) % n, from = (g_rank + n - 1) % n;
  struct Case {
    DType dtype;
    Shape shape;
  };
  const std::vector<Case> cases = {
      {DType::f32, {0}},      {DType::f32, {1}},         {DType::f32, {1 << 20}}, {DType::f64, {3, 5}},
      {DType::i64, {7}},      {DType::i32, {2, 2, 2}},   {DType::u8, {1000}},     {DType::bf16, {17}},
      {DType::f16, {4}},      {DType::boolean, {9}},     {DType::f32, {0, 4}},    {DType::f64, {}},
  };
  auto& comm = world();
  for (size_t c = 0; c < cases.size(); ++c) {
    const auto& [dtype, shape] = cases[c];
    const std::string what = str_cat("ring case ", c, " ", dtype_name(dtype), shape_str(shape));
    auto k_out = key(g_rank, to, str_cat("ring", c, ":0"), 1), k_in = key(from, g_rank, str_cat("ring", c, ":0"), 1);
    const bool recv_first = c % 2 == 0;
    std::future<Got> got;
    if (recv_first) got = recv_async(rv, k_in, dtype, shape);
    auto sent = send_async(rv, k_out, pattern(dtype, shape, g_rank, int(c)));
    check(wait(sent, what + " send") == nullptr, what + ": send failed");
    if (!recv_first) {
      comm.barrier();  // the message has been sent (and most likely arrived): the recv finds it stashed
      std::this_thread::sleep_for(20ms);
      got = recv_async(rv, k_in, dtype, shape);
    }
    Got g = wait(got, what);
    check(g.error == nullptr, what + ": " + message(g.error));
    if (!g.error) {
      check(g.value.is_contiguous(), what + ": not contiguous");
      check(same_values(g.value, pattern(dtype, shape, from, int(c))), what + ": wrong values");
    }
  }
  // A strided view is sent as a contiguous copy.
  Tensor base = pattern(DType::f32, {6, 5}, g_rank, 99);
  Tensor view = base.t().slice(0, 1, 5, 2);
  auto got = recv_async(rv, key(from, g_rank, "view:0", 1), DType::f32, view.shape());
  auto sent = send_async(rv, key(g_rank, to, "view:0", 1), view);
  check(wait(sent, "view send") == nullptr, "view send failed");
  Got g = wait(got, "view recv");
  check(g.error == nullptr && same_values(g.value, pattern(DType::f32, {6, 5}, from, 99).t().slice(0, 1, 5, 2)),
        "strided view: " + message(g.error));
}

// Many keys in flight, received in the reverse order of sending; with the tag
// space shrunk, most of them share tags with others of other sizes.
void test_many_out_of_order(Rendezvous& rv, int n) {
  const int to = (g_rank + 1) % n, from = (g_rank + n - 1) % n;
  constexpr int kKeys = 200;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::string> errors;
  auto on_recv = [&](int i) {
    return [&, i](std::exception_ptr e, Tensor t) {
      std::lock_guard lock(mu);
      if (e)
        errors.push_back(message(e));
      else if (!same_values(t, pattern(DType::f32, {i % 7 + 1, 3}, from, i)))
        errors.push_back(str_cat("key ", i, ": wrong values"));
      ++done;
      cv.notify_all();
    };
  };
  for (int i = kKeys - 1; i >= kKeys / 2; --i)  // half the recvs before anything is sent
    rv.recv(key(from, g_rank, str_cat("many", i, ":0"), 2), DType::f32, {i % 7 + 1, 3}, on_recv(i));
  std::atomic<int> send_errors{0};
  for (int i = 0; i < kKeys; ++i)
    rv.send(key(g_rank, to, str_cat("many", i, ":0"), 2), pattern(DType::f32, {i % 7 + 1, 3}, g_rank, i),
            [&](std::exception_ptr e) { send_errors += e != nullptr; });
  std::this_thread::sleep_for(10ms);
  for (int i = kKeys / 2 - 1; i >= 0; --i)
    rv.recv(key(from, g_rank, str_cat("many", i, ":0"), 2), DType::f32, {i % 7 + 1, 3}, on_recv(i));
  std::unique_lock lock(mu);
  check(cv.wait_for(lock, 30s, [&] { return done == kKeys; }), str_cat("many keys: only ", done, " arrived"));
  check(errors.empty(), "many keys: " + (errors.empty() ? "" : errors.front()));
  check(send_errors == 0, "many keys: send errors");
}

void test_errors(Rendezvous& rv, int n) {
  // dtype/shape mismatch: the error names the key and both.
  if (g_rank == 0) {
    auto s = send_async(rv, key(0, 1, "mm:0", 3), pattern(DType::f32, {4}, 0, 0));
    check(wait(s, "mismatch send") == nullptr, "mismatch send failed");
    auto g = recv_async(rv, key(1, 0, "mt:0", 3), DType::f32, {2});
    std::string m = message(wait(g, "type mismatch").error);
    check(contains(m, key(1, 0, "mt:0", 3).str()) && contains(m, "i32[2]") && contains(m, "f32[2]"),
          "type mismatch message: " + m);
  } else if (g_rank == 1) {
    auto g = recv_async(rv, key(0, 1, "mm:0", 3), DType::f32, {5});
    std::string m = message(wait(g, "shape mismatch").error);
    check(contains(m, key(0, 1, "mm:0", 3).str()) && contains(m, "f32[4]") && contains(m, "f32[5]"),
          "shape mismatch message: " + m);
    auto s = send_async(rv, key(1, 0, "mt:0", 3), pattern(DType::i32, {2}, 1, 0));
    check(wait(s, "mismatch send") == nullptr, "mismatch send failed");
  }
  // Misaddressed keys are refused at once.
  auto self = send_async(rv, key(g_rank, g_rank, "self:0"), pattern(DType::f32, {1}, 0, 0));
  std::string m = message(wait(self, "self send"));
  check(contains(m, "make_local_rendezvous"), "send to self: " + m);
  m = message(wait(send_async(rv, key(g_rank, n, "far:0"), pattern(DType::f32, {1}, 0, 0)), "far send"));
  check(contains(m, str_cat(n, " ranks")), "send to a rank outside the job: " + m);
  m = message(wait(send_async(rv, key((g_rank + 1) % n, g_rank, "wrong:0"), Tensor::empty({1})), "not mine"));
  check(contains(m, "this process is rank"), "send from another worker's device: " + m);
  auto r = recv_async(rv, key(g_rank, g_rank, "self:0"), DType::f32, {1});
  m = message(wait(r, "self recv").error);
  check(contains(m, "make_local_rendezvous"), "recv from self: " + m);
}

void test_timeout(Rendezvous& rv) {
  if (g_rank != 0) return;  // rank 1 never sends this key
  rv.set_timeout(0.3);
  auto k = key(1, 0, "never:0", 4);
  auto start = std::chrono::steady_clock::now();
  auto g = recv_async(rv, k, DType::f32, {2});
  Got got = wait(g, "timeout");
  auto waited = std::chrono::steady_clock::now() - start;
  rv.set_timeout(20);
  std::string m = message(got.error);
  bool is_timeout = false;
  try {
    std::rethrow_exception(got.error);
  } catch (const TimeoutError&) {
    is_timeout = true;
  } catch (...) {
  }
  check(is_timeout, "timeout: not a TimeoutError: " + m);
  check(waited >= 300ms && waited < 3s, str_cat("timeout after ", waited / 1ms, " ms, expected ~300"));
  check(contains(m, k.str()) && contains(m, "worker 1") && contains(m, "MPI rank 1"), "timeout message: " + m);
}

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void test_idle_cpu() {
  std::this_thread::sleep_for(100ms);  // let the backoff reach its longest sleep
  const double before = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(1s);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double pct = 100.0 * (cpu_seconds() - before) / wall;
  std::printf("rank %d: idle process CPU with the progress thread running: %.2f%%\n", g_rank, pct);
  check(pct < 10.0, str_cat("idle CPU ", pct, "% (expected near 0)"));
}

}  // namespace

int main() {
  // Shrink the tag space so that many keys share a tag (the payloads must
  // still pair with their own headers). Read when the rendezvous is made.
  ::setenv("NDFLOW_RENDEZVOUS_TAG_MODULUS", "3", 1);
  init();
  g_rank = rank();
  const int n = world_size();
  if (n < 2) {
    std::printf("rendezvous_mpi_test: needs at least 2 ranks (run under mpirun -np 2); skipped\n");
    return 0;
  }
  auto rv = mpi_rendezvous();
  rv->set_timeout(20);
  auto& comm = world();
  const auto start = std::chrono::steady_clock::now();
  test_ring(*rv, n);
  comm.barrier();
  test_many_out_of_order(*rv, n);
  comm.barrier();
  test_errors(*rv, n);
  comm.barrier();
  test_timeout(*rv);
  comm.barrier();
  test_idle_cpu();
  comm.barrier();

  Tensor failures = tensor(std::vector<int64_t>{g_failed}, {1});
  comm.allreduce(failures);
  const int64_t total = failures.to_vector<int64_t>()[0];
  if (g_rank == 0)
    std::printf("rendezvous_mpi_test: %d ranks, %d checks passed on rank 0, %lld failed on all ranks, %.1f s\n", n,
                g_passed, static_cast<long long>(total),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  rv.reset();
  finalize();  // stops the progress thread (pre-finalize hook), then MPI_Finalize
  return total == 0 ? 0 : 1;
}
