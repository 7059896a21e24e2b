// Internals of the parameter server shared by its files: server.cc (the
// poll loop, handshake, clock table and updates) and server_checkpoint.cc
// (checkpoints). Not installed.
#pragma once

#include <chrono>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "distributed/ps/server.h"
#include "distributed/ps/server_update.h"
#include "distributed/ps/zmq_internal.h"

namespace ndflow::ps {

inline constexpr size_t kMaxDelayedPulls = 1 << 16;

struct Table {
  Tensor value;
  detail::TableOptimizer opt;  // the update rule with its state
  Sync sync;
  // BSP (= SSP(0)): the updates pushed at clock k wait here until every
  // worker has finished clock k, then go into `value` together. A read thus
  // sees exactly the state after the previous step, as synchronous training
  // has it, never a faster worker's update of the current step. SSP(s > 0)
  // and ASP apply each push at once: a read sees the freshest value (its own
  // updates included), which SSP bounds from below by waiting.
  std::map<int64_t, Tensor> pending;
  // The clocks in `pending` that took a dense push. A clock of row pushes
  // only steps a non-linear optimizer on the rows it touched (see commit()).
  std::set<int64_t> dense_clocks;
};

using SteadyClock = std::chrono::steady_clock;


struct WorkerState {
  int64_t clock = 0;
  uint64_t incarnation = 0;
  uint64_t last_seq = 0;  // highest push applied for this incarnation
  // A worker is in the clock table while alive. One that has not connected
  // yet counts as alive at clock 0 (it is still starting); one that has
  // connected is declared dead after ServerOptions::heartbeat_timeout of
  // silence.
  bool connected = false;
  bool alive = true;
  SteadyClock::time_point heard{};
};

// A connection that passed the handshake speaks for one worker incarnation.
struct Session {
  uint32_t worker;
  uint64_t incarnation;
};

// A table add_table() hands to the running poll thread; `done` gets "" or the error.
struct NewTable {
  std::string name;
  Table table;
  std::promise<std::string> done;
};

// A pull that its consistency model does not allow yet.
struct Delayed {
  std::string identity;
  Message request;
  SteadyClock::time_point since;
};

// "connection 0x…": a ZeroMQ routing identity, for logs.
std::string peer_name(const std::string& identity);
// The table's value, safe to write in place (see server.cc).
Tensor& writable(Table& t);
// Folds one clock's held-back gradient sum into a table (see server.cc).
void commit(const Tensor& value, detail::TableOptimizer& opt, const Tensor& sum, bool dense);

struct Server::Impl {
  ServerOptions opt;
  std::string endpoint;
  std::map<std::string, Table> tables;
  std::vector<WorkerState> workers;
  std::map<std::string, Session> sessions;  // by ZeroMQ routing identity
  std::vector<Delayed> delayed;
  ServerStats stats;
  int64_t checkpointed_at = 0;  // the slowest clock at the last checkpoint
  std::mutex adding_mu;
  bool loop_owns_tables = false;  // between start() and stop(); under adding_mu
  std::vector<NewTable> adding;   // tables added meanwhile, for the poll thread

  zmq::context_t ctx;
  std::unique_ptr<zmq::socket_t> sock;
  std::thread thread;
  std::atomic<bool> stopping{false};

  std::string where() const { return str_cat("[ps.server ", endpoint, "]"); }
  void log(const std::string& msg) const {
    if (opt.log) opt.log(msg);
    else std::cerr << msg << std::endl;
  }

  void send(const std::string& identity, const Message& m) {
    // NOTE: never block the loop on one slow or vanished client: ROUTER drops
    // messages to unknown peers and to peers over their high-water mark.
    try {
      detail::send_message(*sock, &identity, m, zmq::send_flags::dontwait);
    } catch (const std::exception& e) {
      log(str_cat(where(), " could not send ", msg_type_name(m.type), " to ", peer_name(identity), ": ", e.what()));
    }
  }
  void send_error(const std::string& identity, const Message& req, const std::string& why,
                  ErrorCode code = ErrorCode::other) {
    Message m{.type = MsgType::error, .request = req.request, .value = int64_t(code), .text = why.substr(0, kMaxText)};
    send(identity, m);
  }
  void reject(const std::string& identity, const Message& req, const std::string& why,
              ErrorCode code = ErrorCode::other) {
    stats.rejected++;
    log(str_cat(where(), " rejected a message from ", peer_name(identity), ": ", why));
    send_error(identity, req, why, code);
  }

  std::string table_names() const {
    std::string names;
    for (const auto& [name, t] : tables) names += (names.empty() ? "'" : ", '") + name + "'";
    return names.empty() ? "none" : names;
  }

  // The slowest clock of the live workers, leaving out `except` (when no
  // worker is live: the fastest clock, so that nothing waits).
  int64_t slowest_clock(int64_t except = -1) const {
    int64_t c = INT64_MAX, fastest = 0;
    for (size_t i = 0; i < workers.size(); ++i) {
      fastest = std::max(fastest, workers[i].clock);
      if (workers[i].alive && int64_t(i) != except) c = std::min(c, workers[i].clock);
    }
    return c == INT64_MAX ? fastest : c;
  }
  bool any_alive_except(uint32_t w) const {
    for (size_t i = 0; i < workers.size(); ++i)
      if (workers[i].alive && i != w) return true;
    return false;
  }
  bool may_read(const Table& t, int64_t clock) const {
    if (t.sync.kind == Sync::Kind::asp) return true;
    return slowest_clock() >= clock - t.sync.staleness;
  }
  // Whether a delayed pull or barrier may be answered now.
  bool may_answer(const Message& m) const {
    return m.type == MsgType::barrier ? slowest_clock() >= m.clock : may_read(tables.at(m.table), m.clock);
  }
  void delay(const std::string& identity, Message m);

  void loop();
  void handle(std::vector<zmq::message_t>& frames);
  void handle_hello(const std::string& identity, const Message& m);
  void handle_push(const std::string& identity, const Message& m, Table& t, WorkerState& w);
  void answer_pull(const std::string& identity, const Message& m);
  void check_rows(const Message& m, const Table& t, const Tensor& ids) const;
  void retry_delayed();
  void commit_finished_clocks();
  void heard_from(uint32_t worker);
  void save_checkpoint();
  void restore_checkpoint();
  void clocks_advanced() {
    commit_finished_clocks();
    retry_delayed();
    if (!opt.checkpoint_path.empty() && opt.checkpoint_every > 0 &&
        slowest_clock() >= checkpointed_at + opt.checkpoint_every)
      save_checkpoint();
  }
  void check_heartbeats();
  void take_new_tables();
  void apply(Table& t, Tensor target, const Message& m, const Tensor& update);
};

}  // namespace ndflow::ps
