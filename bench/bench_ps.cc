// Parameter-server throughput (distributed/ps, issue 7 §6): push and pull of
// dense tables of 1 KB to 64 MB (powers of 4) and of sparse rows (1000 rows
// of dim 64 out of a 100k-row table), 1 server and 2 workers (two client
// threads, one ps::Client each) over loopback TCP, against a raw ZeroMQ
// round trip of exactly the same payload bytes with the same thread layout
// (a ROUTER thread answering, two DEALER threads asking, each socket in its
// own context as ps::Server and ps::Client have it).
//
//   push       ndflow: push(t, grad).wait()           raw: N bytes ->, 8 bytes <-
//   pull       ndflow: pull(t).wait()                 raw: 8 bytes ->, N bytes <-
//   push+pull  ndflow: push then pull                 raw: N bytes ->, N bytes <- (an echo)
//
// Tables are ASP with the accumulate rule, so nothing ever waits on a clock;
// the clients present the job's secret in the usual handshake. The raw server
// replies without copying from a buffer it owns (zero-copy frames), the raw
// clients send theirs without copying too, as ps::Client does.
//
// Each size runs the six variants alternately, in a rotating order, for
// several rounds (BENCHMARKING.md); figures are from the best batch, "med" is
// the median over rounds of the push+pull ratio within a round. MB/s is
// payload bytes (tensor frames, not headers) moved by both workers together
// per second, 1 MB = 1e6 bytes; rows/s counts rows of 64 floats (dense tables
// are [N/256, 64]). The ratio is ndflow speed / raw speed (target >= 0.8 from
// 1 MB up). NOTE: push+pull is two round trips against the echo's one, so
// where latency dominates (below ~256 KB) its ratio is ~0.5 by construction;
// compare the push and pull columns there.
//
//   build/bench/bench_ps [--max-mb 64] [--rounds 7] [--batch-ms 40]
//   build/bench/bench_ps --only V [--only-kb K]   one variant (0..5 as in Variant), for strace -c / perf
#include <pthread.h>
#include <sys/resource.h>

#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include <ndflow/ndflow.h>

#include "bench_util.h"
#include "distributed/ps/client.h"
#include "distributed/ps/server.h"

using namespace ndflow_bench;
namespace ps = ndflow::ps;
using ndflow::Tensor;

namespace {

constexpr int kWorkers = 2;
constexpr int64_t kDim = 64;             // floats per row
constexpr int64_t kSparseRows = 100000;  // rows of the sparse table
constexpr int64_t kSparseK = 1000;       // rows per sparse push/pull
const char* const kSecret = "bench-ps-secret";

std::string human(size_t bytes) {
  if (bytes >= (size_t{1} << 20)) return fmt("%zu MB", bytes >> 20);
  return fmt("%zu KB", bytes >> 10);
}

// ---- the raw ZeroMQ peer -------------------------------------------------
// A request is one frame whose first 8 bytes say how many bytes to answer
// with; the answer is one frame of that many bytes from `reply_buf`, sent
// without a copy.
class RawServer {
 public:
  explicit RawServer(size_t max_reply) : reply_(max_reply, 1), sock_(ctx_, zmq::socket_type::router) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind("tcp://127.0.0.1:0");
    endpoint_ = sock_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] {
      ::pthread_setname_np(::pthread_self(), "bps-raw-server");  // for perf: the ps::Server thread keeps "bench_ps"
      loop();
    });
  }
  ~RawServer() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  void loop() {
    // The same shape as ps::Server's loop: poll, then drain.
    while (!stop_.load()) {
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(20));
      for (;;) {
        zmq::message_t id, req;
        if (!sock_.recv(id, zmq::recv_flags::dontwait)) break;
        (void)sock_.recv(req, zmq::recv_flags::none);
        uint64_t n = 0;
        std::memcpy(&n, req.data(), sizeof n);
        n = std::min<uint64_t>(n, reply_.size());
        sock_.send(id, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
        zmq::message_t rep(reply_.data(), n, [](void*, void*) {}, nullptr);
        sock_.send(rep, zmq::send_flags::dontwait);
      }
    }
  }
  std::vector<char> reply_;
  zmq::context_t ctx_;
  zmq::socket_t sock_;
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class RawClient {
 public:
  RawClient(const std::string& endpoint, size_t max_request)
      : buf_(std::max<size_t>(max_request, 8), 2), sock_(ctx_, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.connect(endpoint);
  }
  // Sends `up` bytes, waits for the `down` bytes of the answer.
  void round_trip(size_t up, size_t down) {
    up = std::max<size_t>(up, 8);
    uint64_t d = down;
    std::memcpy(buf_.data(), &d, sizeof d);
    zmq::message_t req(buf_.data(), up, [](void*, void*) {}, nullptr);
    sock_.send(req, zmq::send_flags::none);
    zmq::message_t rep;
    (void)sock_.recv(rep, zmq::recv_flags::none);
    if (rep.size() != down) {
      std::fprintf(stderr, "bench_ps: raw reply of %zu bytes, expected %zu\n", rep.size(), down);
      std::exit(1);
    }
  }

 private:
  std::vector<char> buf_;
  zmq::context_t ctx_;
  zmq::socket_t sock_;
};

// ---- the work -----------------------------------------------------------
enum Variant { kNdPush, kRawPush, kNdPull, kRawPull, kNdBoth, kRawBoth, kNumVariants };
const char* const kVariantName[kNumVariants] = {"ndflow push", "raw push",      "ndflow pull",
                                                "raw pull",    "ndflow push+pull", "raw echo"};

struct Case {
  std::string label, table;
  bool sparse = false;
  size_t bytes = 0;     // payload of the values (dense table, or the k rows)
  size_t id_bytes = 0;  // sparse: the row ids
  int64_t rows = 0;     // rows moved per push or pull
};

// What one worker thread holds.
struct Worker {
  std::unique_ptr<ps::Client> client;
  std::unique_ptr<RawClient> raw;
  std::vector<Tensor> grads;  // per case: the dense update, or the rows
  Tensor ids;                 // sparse row ids
};

struct Job {
  const Case* c = nullptr;
  size_t case_index = 0;
  Variant v = kNdPush;
  int64_t calls = 0;
  bool quit = false;
};

void run_one(Worker& w, const Case& c, size_t ci, Variant v) {
  // The raw peer moves exactly the payload bytes of the ndflow call.
  const size_t up_push = c.bytes + c.id_bytes, up_pull = c.sparse ? c.id_bytes : 8;
  switch (v) {
    case kNdPush:
      (c.sparse ? w.client->push_rows(c.table, w.ids, w.grads[ci]) : w.client->push(c.table, w.grads[ci])).wait();
      break;
    case kNdPull:
      (c.sparse ? w.client->pull_rows(c.table, w.ids) : w.client->pull(c.table)).wait();
      break;
    case kNdBoth:
      run_one(w, c, ci, kNdPush);
      run_one(w, c, ci, kNdPull);
      break;
    case kRawPush: w.raw->round_trip(up_push, 8); break;
    case kRawPull: w.raw->round_trip(up_pull, c.bytes); break;
    case kRawBoth: w.raw->round_trip(up_push + (c.sparse ? c.id_bytes : 0), c.bytes); break;  // ids go up twice
    default: break;
  }
}

// Payload bytes one call of `v` moves, per worker.
double payload(const Case& c, Variant v) {
  const double one = double(c.bytes + c.id_bytes);  // a push: ids and rows up; a pull: ids up, rows down
  return (v == kNdBoth || v == kRawBoth) ? 2 * one : one;
}
double rows_moved(const Case& c, Variant v) {
  return (v == kNdBoth || v == kRawBoth) ? 2.0 * double(c.rows) : double(c.rows);
}

}  // namespace

int main(int argc, char** argv) {
  // Like tools/ndflow-launch: OpenMP threads that are idle must sleep, not
  // spin, with 5 busy threads (server, 2 clients, ZeroMQ I/O) on 2 cores.
  // libgomp reads this at load time, hence the re-exec.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    ::setenv("OMP_WAIT_POLICY", "passive", 1);
    ::execv("/proc/self/exe", argv);
  }
  init_bench_process();
  size_t max_mb = 64;
  int rounds = 7;
  int only = -1;        // diagnostic: run one variant only (for strace/perf), no table
  size_t only_kb = 0;   // diagnostic: only the dense case of this many KB
  double batch_s = 0.04;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--max-mb")) max_mb = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--only")) only = std::clamp(std::atoi(argv[i + 1]), 0, int(kNumVariants) - 1);
    else if (!std::strcmp(argv[i], "--only-kb")) only_kb = size_t(std::max(1, std::atoi(argv[i + 1])));
    else if (!std::strcmp(argv[i], "--batch-ms")) batch_s = std::max(1, std::atoi(argv[i + 1])) * 1e-3;
  }
  const double t_start = now_s();

  // The cases.
  std::vector<Case> cases;
  for (size_t bytes = 1024; bytes <= (max_mb << 20); bytes *= 4)
    cases.push_back({human(bytes), fmt("dense_%zu", bytes), false, bytes, 0, int64_t(bytes / (kDim * 4))});
  cases.push_back({fmt("%lldx%lld rows", (long long)kSparseK, (long long)kDim), "sparse", true,
                   size_t(kSparseK * kDim * 4), size_t(kSparseK * 8), kSparseK});
  size_t max_bytes = 0;
  for (auto& c : cases) max_bytes = std::max(max_bytes, c.bytes + c.id_bytes);

  // The server and its tables (ASP, accumulate: nobody waits on a clock).
  ps::ServerOptions sopt;  // loopback, ephemeral port
  sopt.secret = kSecret;
  sopt.num_workers = kWorkers;
  sopt.log = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
  ps::Server server(std::move(sopt));
  for (auto& c : cases) {
    Tensor init = c.sparse ? ndflow::zeros({kSparseRows, kDim}, ndflow::DType::f32)
                           : ndflow::zeros({c.rows, kDim}, ndflow::DType::f32);
    server.add_table({.name = c.table, .initial = init, .rule = ps::UpdateRule::accumulate, .sync = ps::Sync::asp()});
  }
  server.start();
  RawServer raw_server(max_bytes);

  // The workers: connect (handshake with the secret) on their own threads.
  std::vector<Worker> workers(kWorkers);
  Job job;
  std::barrier<> start(kWorkers + 1), done(kWorkers + 1);
  std::vector<std::thread> threads;
  for (int wi = 0; wi < kWorkers; ++wi) {
    threads.emplace_back([&, wi] {
      Worker& w = workers[wi];
      ::pthread_setname_np(::pthread_self(), fmt("bps-worker%d", wi).c_str());
      try {
        w.client = std::make_unique<ps::Client>(
            ps::ClientOptions{.address = server.endpoint(), .secret = kSecret, .worker = uint32_t(wi)});
        w.raw = std::make_unique<RawClient>(raw_server.endpoint(), max_bytes);
        std::mt19937_64 rng(1234 + wi);
        std::vector<int64_t> perm(kSparseRows);
        for (int64_t i = 0; i < kSparseRows; ++i) perm[i] = i;
        std::shuffle(perm.begin(), perm.end(), rng);
        w.ids = Tensor::empty({kSparseK}, ndflow::DType::i64);
        std::memcpy(w.ids.raw_data(), perm.data(), kSparseK * sizeof(int64_t));
        for (auto& c : cases) {
          // Zeros: the accumulated tables stay zero and every float normal.
          w.grads.push_back(ndflow::zeros({c.sparse ? kSparseK : c.rows, kDim}, ndflow::DType::f32));
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_ps: worker %d: %s\n", wi, e.what());
        std::_Exit(1);
      }
      for (;;) {
        start.arrive_and_wait();
        if (job.quit) break;
        try {
          for (int64_t i = 0; i < job.calls; ++i) run_one(w, *job.c, job.case_index, job.v);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "bench_ps: worker %d, %s of %s: %s\n", wi, kVariantName[job.v], job.c->label.c_str(),
                       e.what());
          std::_Exit(1);
        }
        done.arrive_and_wait();
      }
    });
  }
  // Minor page faults per call and worker (whole process: server, clients,
  // ZeroMQ) in the latest batch of each variant: fresh buffers fault in.
  double faults[kNumVariants] = {};
  // Seconds per call of one batch (both workers run `calls` calls at once).
  auto batch = [&](size_t ci, Variant v, int64_t calls) {
    job.c = &cases[ci];
    job.case_index = ci;
    job.v = v;
    job.calls = calls;
    rusage ru0{}, ru1{};
    ::getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s();
    start.arrive_and_wait();
    done.arrive_and_wait();
    const double dt = now_s() - t0;
    ::getrusage(RUSAGE_SELF, &ru1);
    faults[v] = double(ru1.ru_minflt - ru0.ru_minflt) / double(calls * kWorkers);
    return dt / double(calls);
  };

  std::printf("== parameter server push/pull, 1 server x %d workers over loopback TCP (ZeroMQ %d.%d.%d), "
              "ASP + accumulate,\n   vs a raw ZeroMQ DEALER/ROUTER round trip of the same bytes; best of %d "
              "alternated batches; OMP_WAIT_POLICY=%s\n",
              kWorkers, ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH, rounds, std::getenv("OMP_WAIT_POLICY"));
  std::printf("   MB/s: payload of both workers together (1e6 B); ratio = ndflow / raw speed (target >= 0.8 "
              "from 1 MB); med: median over rounds of the push+pull ratio\n");
  std::printf("   flt: minor page faults per call and worker, whole process, ndflow/raw (4 KB pages)\n");
  std::printf("%-15s | %9s %9s %5s | %9s %9s %5s | %9s %9s %5s %5s | %11s | %13s %13s\n", "size", "push", "raw",
              "ratio", "pull", "raw", "ratio", "push+pull", "echo", "ratio", "med", "rows/s p+p", "flt push",
              "flt pull");

  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    if (only_kb && (c.sparse || c.bytes != only_kb << 10)) continue;
    if (only >= 0) {
      // Diagnostic: one variant, fixed work, so that a tracer's counts divide by it.
      const int64_t n = std::max<int64_t>(1, int64_t((64 << 20) / (c.bytes + c.id_bytes + 4096)));
      batch(ci, Variant(only), 1);
      const double t = batch(ci, Variant(only), n);
      std::printf("only %-16s %-15s %lld calls x %d workers: %.1f us/call, %.1f MB/s\n", kVariantName[only],
                  c.label.c_str(), (long long)n, kWorkers, t * 1e6, kWorkers * payload(c, Variant(only)) / t * 1e-6);
      continue;
    }
    // Warm up every variant (pages, connections), then size the batches
    // from ndflow's push+pull: about batch_s of it.
    for (int v = 0; v < kNumVariants; ++v) batch(ci, Variant(v), 1);
    double t1 = batch(ci, kNdBoth, 2);
    const int64_t calls = std::clamp<int64_t>(int64_t(batch_s / std::max(t1, 1e-7)), 1, 20000);
    double best[kNumVariants];
    std::fill(best, best + kNumVariants, 1e30);
    std::vector<double> paired;
    for (int r = 0; r < rounds; ++r) {
      double t[kNumVariants];
      for (int k = 0; k < kNumVariants; ++k) {
        const int v = (r + k) % kNumVariants;
        t[v] = batch(ci, Variant(v), calls);
        best[v] = std::min(best[v], t[v]);
      }
      paired.push_back(t[kRawBoth] / t[kNdBoth]);
    }
    std::sort(paired.begin(), paired.end());
    auto mbs = [&](Variant v) { return kWorkers * payload(c, v) / best[v] * 1e-6; };
    auto ratio = [&](Variant nd, Variant raw) { return best[raw] / best[nd]; };
    const double rows_s = kWorkers * rows_moved(c, kNdBoth) / best[kNdBoth];
    std::printf("%-15s | %9.1f %9.1f %5.2f | %9.1f %9.1f %5.2f | %9.1f %9.1f %5.2f %5.2f | %11.3g | %6.0f/%-6.0f "
                "%6.0f/%-6.0f\n", c.label.c_str(),
                mbs(kNdPush), mbs(kRawPush), ratio(kNdPush, kRawPush), mbs(kNdPull), mbs(kRawPull),
                ratio(kNdPull, kRawPull), mbs(kNdBoth), mbs(kRawBoth), ratio(kNdBoth, kRawBoth),
                paired[paired.size() / 2], rows_s, faults[kNdPush], faults[kRawPush], faults[kNdPull],
                faults[kRawPull]);
    summary("ps push+pull", fmt("%s, 1 server x %d workers", c.label.c_str(), kWorkers),
            fmt("%.0f MB/s, %.3g rows/s", mbs(kNdBoth), rows_s), fmt("%.0f MB/s (raw zmq echo)", mbs(kRawBoth)),
            fmt("%.2fx speed", ratio(kNdBoth, kRawBoth)));
  }

  job.quit = true;
  start.arrive_and_wait();
  for (auto& th : threads) th.join();
  workers.clear();  // clients close before the server stops
  server.stop();
  std::printf("bench_ps: %.1f s\n", now_s() - t_start);
  return 0;
}
