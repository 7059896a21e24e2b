// A worker's view of the whole parameter-server job: one Client per server,
// where each table lives (whole on one server, or split by rows into
// key ranges over every server), and a cache that serves the reads the
// table's consistency model allows without asking the servers.
//
//   LayoutPlanner plan(servers.size(), /*split_bytes=*/1 << 20);
//   Worker w({.servers = servers, .secret = secret, .worker = rank});
//   w.add_table({plan.place("emb", {100000, 64}), Sync::ssp(3)});   // split over every server
//   Pending p = w.pull("emb");        // in flight; p.wait() assembles the shards
//   w.push("emb", grad).wait();
//   w.clock();
//
// Every process plans the same layout from the same tables in the same
// order, so servers (which add the shards they own, shard_rows()) and
// workers agree without talking. A Worker, like a Client, belongs to one
// thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/ps/client.h"
#include "distributed/ps/server.h"

namespace ndflow::ps {

// Rows [begin, end) of a table's axis 0, held by one server.
struct Shard {
  uint32_t server = 0;
  int64_t begin = 0;
  int64_t end = 0;
};

struct TableLayout {
  std::string name;
  Shape shape;
  std::vector<Shard> shards;  // in row order; one shard holds the whole table
};

// Places tables as ps-lite and MXNet's KVStore do: a table of at least
// `split_bytes` (and at least one row per server) is cut into one
// contiguous row range per server, so that its traffic and its updates
// spread over all of them; a smaller one goes whole to the server holding
// the fewest bytes so far (splitting a bias vector would only add messages).
class NDF_EXPORT LayoutPlanner {
 public:
  LayoutPlanner(uint32_t num_servers, int64_t split_bytes);
  TableLayout place(const std::string& name, const Shape& shape);
  const std::vector<int64_t>& bytes_per_server() const { return load_; }

 private:
  uint32_t num_servers_;
  int64_t split_bytes_;
  std::vector<int64_t> load_;
};

// The rows of `full` that `shard` covers (a view, contiguous when `full` is).
NDF_EXPORT Tensor shard_rows(const Tensor& full, const Shard& shard);

struct WorkerTable {
  TableLayout layout;
  Sync sync = Sync::bsp();
  UpdateRule rule = UpdateRule::accumulate;
};

struct WorkerOptions {
  std::vector<std::string> servers;  // endpoints, indexed by Shard::server
  std::string secret;
  uint32_t worker = 0;
  uint64_t incarnation = 1;
  std::chrono::milliseconds timeout{10000};
  // The read cache (Petuum's process cache): a pull at clock c is served
  // from a value fetched when the slowest worker was at clock k whenever
  // k >= c - staleness, with this worker's own pushes since applied to it
  // (read-my-writes), exactly what the server would have been allowed to
  // answer. ASP tables bypass it (they have no bound to serve from).
  bool cache = true;
  int64_t cache_rows = int64_t(1) << 20;  // rows kept per table for pull_rows (least recently used out); 0: none
};

struct CacheStats {
  uint64_t hits = 0, misses = 0;          // whole-table pulls
  uint64_t row_hits = 0, row_misses = 0;  // rows of pull_rows
  // Every whole-table read this worker was given, cached or not, per
  // staleness (its clock minus the slowest clock the value reflects), as
  // ServerStats::staleness bins them; the servers see only the misses.
  std::array<uint64_t, ServerStats::kStalenessBins> staleness{};
};

// A push or pull in flight, possibly to several servers.
class NDF_EXPORT Pending {
 public:
  Pending() = default;
  Pending(Pending&&) noexcept = default;
  Pending& operator=(Pending&&) noexcept = default;
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  // The pulled tensor (undefined for a push) once every server answered;
  // throws the first server's error.
  Tensor wait();
  bool ready();
  // The slowest clock any of its servers had when answering (or the cached
  // value's): the read saw every update of clocks below it.
  int64_t slowest_clock() const { return slowest_; }

 private:
  friend class Worker;
  std::vector<Handle> parts_;
  std::function<Tensor(std::vector<Tensor>&, int64_t slowest)> finish_;
  Tensor result_;
  int64_t slowest_ = 0;
  bool done_ = false;
  std::exception_ptr error_;
};

struct WorkerState;

class NDF_EXPORT Worker {
 public:
  // Connects to every server (see Client).
  explicit Worker(WorkerOptions options);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void add_table(WorkerTable table);
  bool has_table(const std::string& name) const;

  // As Client's, for a table wherever it lives. Keep `grad` and `rows`
  // unmodified until the push is waited for (they are sent without copies).
  Pending push(const std::string& table, const Tensor& grad);
  Pending push_rows(const std::string& table, const Tensor& ids, const Tensor& rows);
  Pending pull(const std::string& table);
  Pending pull_rows(const std::string& table, const Tensor& ids);
  // Sets the learning rate of the table's server-side optimizer on every
  // server holding a shard of it.
  Pending set_lr(const std::string& table, double lr);
  // Ends this worker's clock on every server (in parallel); waits for them.
  void clock();
  // clock(), then waits until every live worker has reached this clock;
  // the cache is emptied, so later pulls see every update pushed before.
  void barrier();
  int64_t current_clock() const;
  CacheStats cache_stats() const;
  // Handshakes with restarted servers so far (see Client::rehandshakes()).
  uint64_t reconnects() const;

 private:
  std::shared_ptr<WorkerState> s_;
};

}  // namespace ndflow::ps
