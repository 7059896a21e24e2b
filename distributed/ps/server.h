// A parameter server (DESIGN.md §7, issue 7): owns named f32 tables, applies
// the workers' pushes (accumulate, or a server-side optimizer step: SGD,
// momentum, Adagrad, RMSprop, Adam, with the optimizer state owned by the
// server; server_update.cc), answers pulls
// as the table's consistency model allows, over a ZeroMQ ROUTER socket. One
// thread polls the socket and owns all state, so nothing needs a lock.
//
//   Server s({.secret = job_secret, .num_workers = 4});       // loopback, ephemeral port
//   s.add_table({.name = "w", .initial = zeros({10, 4}), .sync = Sync::ssp(2)});
//   s.start();                      // s.endpoint(): "tcp://127.0.0.1:41237"
//   ...                             // workers connect with ps::Client
//   s.stop();
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace ndflow::ps {

// Consistency of reads (Ho et al., "More Effective Distributed ML via a Stale
// Synchronous Parallel Parameter Server", NIPS 2013): a pull by a worker at
// clock c is answered once every live worker's clock is >= c - staleness, so
// it sees every update from clocks <= c - staleness - 1. BSP is SSP(0); ASP
// never waits. Replies are delayed, never dropped. A BSP read sees exactly
// the updates of the clocks every worker has finished (a clock's updates are
// applied together once the slowest worker finishes it), so BSP takes the
// steps of synchronous data parallelism; SSP(s > 0) and ASP reads see the
// freshest value, the reader's own updates included.
struct Sync {
  enum class Kind : uint8_t { bsp, ssp, asp };
  Kind kind = Kind::bsp;
  int64_t staleness = 0;
  static Sync bsp() { return {Kind::bsp, 0}; }
  static Sync ssp(int64_t s) { return {Kind::ssp, s}; }
  static Sync asp() { return {Kind::asp, 0}; }
};

// How a push changes a table. Every rule but accumulate treats the pushed
// tensor as a gradient and takes one step of the optimizer with the fused
// update op of the same name (ops/api.h, torch.optim semantics); the server
// owns the optimizer state (velocity, accumulators, moments, step counts),
// per table, and checkpoints it with the table.
enum class UpdateRule : uint8_t {
  accumulate,  // table += update (the worker runs its own optimizer)
  sgd,         // table -= lr * grad, with the fused apply_sgd op
  momentum,    // apply_momentum (torch.optim.SGD with momentum)
  adagrad,     // apply_adagrad
  rmsprop,     // apply_rmsprop
  adam,        // apply_adam (AdamW with decoupled_weight_decay)
};

// The optimizers' hyperparameters besides lr, with torch.optim's defaults;
// each rule reads the ones it has. eps < 0 takes the rule's own default
// (1e-10 for adagrad, 1e-8 for rmsprop and adam).
struct OptimizerHyper {
  double momentum = 0.9;   // momentum; rmsprop's momentum is rmsprop_momentum
  double dampening = 0;
  bool nesterov = false;
  double alpha = 0.99;     // rmsprop
  double rmsprop_momentum = 0;
  bool centered = false;   // rmsprop
  double lr_decay = 0;     // adagrad
  double initial_accumulator_value = 0;  // adagrad
  double beta1 = 0.9, beta2 = 0.999;  // adam
  bool amsgrad = false;
  bool decoupled_weight_decay = false;  // adam: AdamW
  double eps = -1;
  double weight_decay = 0;
};

struct TableSpec {
  std::string name;   // see valid_table_name() in wire.h
  Tensor initial;     // f32, copied; its shape is the table's. Rows are along axis 0.
  UpdateRule rule = UpdateRule::accumulate;
  double lr = 0.01;   // for every rule but accumulate
  Sync sync = Sync::bsp();
  OptimizerHyper hyper{};
};

struct ServerOptions {
  // Loopback by default: exposing the server takes an explicit address
  // (e.g. "tcp://10.0.0.5:7000"). Port 0 picks a free port; see endpoint().
  std::string address = "tcp://127.0.0.1:0";
  std::string secret;        // the job's secret; every connection must present it
  uint32_t num_workers = 1;  // workers 0..num_workers-1 make up the clock table
  int64_t max_message_bytes = int64_t(1) << 31;  // larger frames are dropped by ZeroMQ
  // A worker that has connected and then sends nothing at all (on any of its
  // connections: requests, pings) for this long is declared dead and leaves
  // the clock table, so BSP/SSP readers stop waiting for it. Any later
  // message from it, or a new incarnation's handshake, brings it back.
  std::chrono::milliseconds heartbeat_timeout{30000};
  // Checkpoints of the tables, the BSP updates held back and the clock table
  // go to this .ndf file (written to a temporary file, fsynced, renamed) every
  // `checkpoint_every` clocks of the slowest worker (0: only on stop()) and on
  // stop(). Empty: no checkpoints.
  std::string checkpoint_path{};
  int64_t checkpoint_every = 0;
  // start() restores from checkpoint_path if that file exists (a restarted
  // server); the tables added must match it.
  bool restore = false;
  // Intra-op threads the poll thread's updates may use. 1 by default: a
  // thread team woken for every push costs more than it saves while
  // ZeroMQ's I/O threads need the cores (a 4 MB accumulate took 0.45 ms with
  // 2 threads, 0.23 ms with 1, on 2 busy cores in bench_ps). Raise it for
  // large tables on many cores.
  int update_threads = 1;
  // Where rejected messages and refused handshakes are reported (stderr by default).
  std::function<void(const std::string&)> log;
};

// Counters, readable from any thread while the server runs.
struct ServerStats {
  std::atomic<uint64_t> rejected{0};         // malformed or invalid messages
  std::atomic<uint64_t> refused{0};          // handshakes with a wrong secret
  std::atomic<uint64_t> pushes_applied{0};
  std::atomic<uint64_t> replays_ignored{0};  // pushes already applied (exactly-once)
  std::atomic<uint64_t> pulls_delayed{0};    // pulls that had to wait for a slower worker
  std::atomic<uint64_t> workers_dead{0};     // times a silent worker was declared dead
  std::atomic<uint64_t> rejoins{0};          // new incarnations of a worker that had connected before
  std::atomic<uint64_t> checkpoints{0};      // checkpoints written
  // Observed staleness: pulls answered per staleness, the reader's clock
  // minus the slowest live clock when answered (what Handle::slowest_clock()
  // tells the reader), for 0 .. kStalenessBins-2, the last bin counting every
  // staleness >= kStalenessBins-1 (a reader behind the slowest counts as 0).
  static constexpr int kStalenessBins = 17;
  std::array<std::atomic<uint64_t>, kStalenessBins> staleness{};
  // Per worker (num_workers of them): microseconds its pulls were held back
  // waiting for slower workers, summed over its incarnations.
  std::unique_ptr<std::atomic<uint64_t>[]> pull_wait_us;
  uint32_t num_workers = 0;
};

class NDF_EXPORT Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();  // stops the server if it runs
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Adds a table, before start() or while running (the poll thread takes it
  // within one poll interval; this call waits). Throws ValueError on a bad
  // spec or a name already taken.
  void add_table(const TableSpec& spec);
  // Restores from the checkpoint if asked to (ValueError naming the file and
  // table if it does not fit), binds the socket (throws ValueError naming the
  // address if it cannot) and starts the poll thread.
  void start();
  // Stops the poll thread and closes the socket; pending pulls are dropped
  // with the connection (their clients time out naming this server). Writes
  // a last checkpoint when checkpoint_path is set.
  void stop();
  bool running() const;
  // The bound address with the actual port, e.g. "tcp://127.0.0.1:41237".
  const std::string& endpoint() const;
  // A copy of a table's value with every update pushed so far, including
  // those a BSP table still holds back for clocks some worker has not
  // finished; only while the server is stopped (the poll thread owns the
  // tables while it runs; read them through a Client then).
  Tensor value(const std::string& table) const;
  const ServerStats& stats() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ndflow::ps
