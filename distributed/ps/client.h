// A worker's connection to one parameter server (server.h). Pushes and pulls
// return at once with a Handle; the request travels while the worker keeps
// computing, and Handle::wait() collects the reply. A server that stays
// silent past the timeout makes the waiting call throw TimeoutError naming
// it — never a hang; one that was restarted (from its checkpoint) is
// handshaken with again and sent what was unanswered, and the worker goes
// on. One Client belongs to one thread.
//
//   Client c({.address = server.endpoint(), .secret = job_secret, .worker = 1});
//   Handle w = c.pull("w");          // under SSP(s): waits for the slowest worker's clock >= mine - s
//   ... compute the gradient ...
//   c.push("w", grad).wait();        // do not modify grad before its push completes
//   c.clock();                       // end of this step
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace ndflow::ps {

struct ClientOptions {
  std::string address;        // the server's endpoint, e.g. "tcp://127.0.0.1:41237"
  std::string secret;         // the job's secret
  uint32_t worker = 0;        // this worker's id, 0..num_workers-1
  uint64_t incarnation = 1;   // larger for each restart of the same worker
  // How long the server may stay completely silent. A pull that waits on a
  // slower worker is not silence: the client pings, and a live server answers.
  std::chrono::milliseconds timeout{10000};
};

struct ClientState;

// The pending reply of one push or pull.
class NDF_EXPORT Handle {
 public:
  Handle() = default;
  ~Handle();  // an unwaited reply is discarded on arrival (its error, if any, surfaces at the next call)
  Handle(Handle&&) noexcept = default;
  Handle& operator=(Handle&&) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  // Waits for the reply and returns the pulled tensor (undefined for a push).
  // Throws the server's error, or TimeoutError if the server went silent.
  Tensor wait();
  // Whether the reply is in (receives what has arrived; never blocks).
  bool ready();
  // The slowest worker's clock when the server answered (after wait()): a
  // pull at clock c saw every update from clocks < slowest_clock(), so its
  // staleness is c - slowest_clock().
  int64_t slowest_clock() const { return slowest_; }

 private:
  friend class Client;
  void abandon();
  Handle(std::shared_ptr<ClientState> s, uint64_t request) : s_(std::move(s)), request_(request) {}
  std::shared_ptr<ClientState> s_;
  uint64_t request_ = 0;
  Tensor result_;
  int64_t slowest_ = 0;
  bool done_ = false;
};

class NDF_EXPORT Client {
 public:
  // Connects and handshakes; throws ValueError if the server refuses (wrong
  // secret, bad worker id) and TimeoutError if it does not answer.
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Adds `grad` (f32, the table's shape) to the table, or takes an SGD step
  // with it, as the table's rule says. NOTE: grad is sent without a copy;
  // leave it unmodified until the handle's wait() returns.
  Handle push(const std::string& table, const Tensor& grad);
  // The same for rows: ids (i64 [k]) and rows (f32 [k, ...table.shape[1:]]).
  Handle push_rows(const std::string& table, const Tensor& ids, const Tensor& rows);
  // Sets the learning rate of the table's server-side optimizer (a
  // schedule's next value); refused for an accumulating table.
  Handle set_lr(const std::string& table, double lr);
  // The whole table, or rows `ids` of it, once the table's consistency model
  // allows a read at this worker's clock.
  Handle pull(const std::string& table);
  Handle pull_rows(const std::string& table, const Tensor& ids);
  // Ends this worker's current clock (one step); waits for the server's ack.
  void clock();
  // The same without waiting: current_clock() moves on at once.
  Handle clock_async();
  // Answered once every live worker's clock is >= this worker's (call
  // clock() first to wait for everyone to finish the current step).
  Handle barrier();
  // A heartbeat: asks the server for the slowest live clock and waits for
  // the answer. Any request keeps a worker alive; a worker that may stay
  // quiet longer than the server's heartbeat_timeout (a long step) pings from
  // a second Client (same worker id and incarnation) on another thread.
  int64_t ping();
  // This worker's clock: the number of clock() calls (or the server's count on rejoin).
  int64_t current_clock() const;
  const std::string& address() const;
  // Times this client found its server restarted (it answered "no
  // session") and handshook again, resending what was unanswered.
  uint64_t rehandshakes() const;

 private:
  std::shared_ptr<ClientState> s_;
};

}  // namespace ndflow::ps
