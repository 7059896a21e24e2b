// The parameter server's poll loop, handshake, clock table and updates (server.h).
#include "distributed/ps/server.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "distributed/ps/zmq_internal.h"
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow::ps {

namespace {

constexpr size_t kMaxDelayedPulls = 1 << 16;

struct Table {
  Tensor value;
  UpdateRule rule;
  Tensor lr;  // 0-d f32, for UpdateRule::sgd
  Sync sync;
  // BSP (= SSP(0)): the updates pushed at clock k wait here until every
  // worker has finished clock k, then go into `value` together. A read thus
  // sees exactly the state after the previous step, as synchronous training
  // has it, never a faster worker's update of the current step. SSP(s > 0)
  // and ASP apply each push at once: a read sees the freshest value (its own
  // updates included), which SSP bounds from below by waiting.
  std::map<int64_t, Tensor> pending;
};

struct WorkerState {
  int64_t clock = 0;
  uint64_t incarnation = 0;
  uint64_t last_seq = 0;  // highest push applied for this incarnation
};

// A connection that passed the handshake speaks for one worker incarnation.
struct Session {
  uint32_t worker;
  uint64_t incarnation;
};

// A pull that its consistency model does not allow yet.
struct Delayed {
  std::string identity;
  Message request;
};

// Comparing the secret in time independent of where it differs, so that
// timing does not reveal a prefix.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string peer_name(const std::string& identity) {
  std::string hex;
  for (unsigned char c : identity) hex += str_cat(std::hex, int(c >> 4), int(c & 15));
  return "connection 0x" + hex.substr(0, 16);
}

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  std::string endpoint;
  std::map<std::string, Table> tables;
  std::vector<WorkerState> workers;
  std::map<std::string, Session> sessions;  // by ZeroMQ routing identity
  std::vector<Delayed> delayed;
  ServerStats stats;

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
  void send_error(const std::string& identity, const Message& req, const std::string& why) {
    Message m{.type = MsgType::error, .request = req.request, .text = why.substr(0, kMaxText)};
    send(identity, m);
  }
  void reject(const std::string& identity, const Message& req, const std::string& why) {
    stats.rejected++;
    log(str_cat(where(), " rejected a message from ", peer_name(identity), ": ", why));
    send_error(identity, req, why);
  }

  std::string table_names() const {
    std::string names;
    for (const auto& [name, t] : tables) names += (names.empty() ? "'" : ", '") + name + "'";
    return names.empty() ? "none" : names;
  }

  int64_t slowest_clock() const {
    int64_t c = workers.empty() ? 0 : workers[0].clock;
    for (const WorkerState& w : workers) c = std::min(c, w.clock);
    return c;
  }
  bool may_read(const Table& t, int64_t clock) const {
    if (t.sync.kind == Sync::Kind::asp) return true;
    return slowest_clock() >= clock - t.sync.staleness;
  }

  void loop();
  void handle(std::vector<zmq::message_t>& frames);
  void handle_hello(const std::string& identity, const Message& m);
  void handle_push(const std::string& identity, const Message& m, Table& t, WorkerState& w);
  void answer_pull(const std::string& identity, const Message& m);
  void check_rows(const Message& m, const Table& t, const Tensor& ids) const;
  void retry_delayed();
  void commit_finished_clocks();
  void apply(Table& t, Tensor target, const Message& m, const Tensor& update);
};

void Server::Impl::loop() {
  std::vector<zmq::message_t> frames;
  while (!stopping.load()) {
    zmq::pollitem_t item{sock->handle(), 0, ZMQ_POLLIN, 0};
    // A short poll bounds how long stop() waits; the loop is otherwise idle.
    zmq::poll(&item, 1, std::chrono::milliseconds(20));
    while (!stopping.load() && detail::recv_frames(*sock, frames)) handle(frames);
  }
}

void Server::Impl::handle(std::vector<zmq::message_t>& frames) {
  const std::string identity = frames[0].to_string();
  Message m;
  try {
    m = detail::decode_frames(frames, 1);
  } catch (const ValueError& e) {
    return reject(identity, Message{}, e.what());
  }
  if (m.type == MsgType::hello) return handle_hello(identity, m);

  auto s = sessions.find(identity);
  if (s == sessions.end())
    return reject(identity, m, str_cat("[ps] ", msg_type_name(m.type),
                                       " before a handshake: connect with ps::Client and the job's secret"));
  const Session& session = s->second;
  WorkerState& w = workers[session.worker];
  if (m.worker != session.worker || m.incarnation != session.incarnation)
    return reject(identity, m, str_cat("[ps] ", msg_type_name(m.type), " claims worker ", m.worker, " incarnation ",
                                       m.incarnation, " on the connection of worker ", session.worker,
                                       " incarnation ", session.incarnation));
  if (session.incarnation != w.incarnation)
    return reject(identity, m, str_cat("[ps] worker ", session.worker, " incarnation ", session.incarnation,
                                       " was replaced by incarnation ", w.incarnation,
                                       "; is an old process of that worker still running?"));

  try {
    switch (m.type) {
      case MsgType::push_dense:
      case MsgType::push_rows: {
        auto t = tables.find(m.table);
        if (t == tables.end())
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " pushed to unknown table '", m.table,
                                             "' (this server has ", table_names(), ")"));
        return handle_push(identity, m, t->second, w);
      }
      case MsgType::pull_dense:
      case MsgType::pull_rows: {
        auto t = tables.find(m.table);
        if (t == tables.end())
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " pulled unknown table '", m.table,
                                             "' (this server has ", table_names(), ")"));
        if (m.clock != w.clock)
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " pulls '", m.table, "' at clock ", m.clock,
                                             " but the server has it at clock ", w.clock));
        if (m.type == MsgType::pull_rows) check_rows(m, t->second, m.tensors[0]);
        if (may_read(t->second, m.clock)) return answer_pull(identity, m);
        // Bounded, so that a runaway client cannot grow the server without limit.
        if (delayed.size() >= kMaxDelayedPulls)
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " pull of '", m.table, "': ",
                                             kMaxDelayedPulls, " pulls are already waiting for slower workers"));
        stats.pulls_delayed++;
        delayed.push_back({identity, std::move(m)});
        return;
      }
      case MsgType::clock:
        if (m.clock == w.clock + 1) {
          w.clock = m.clock;
          commit_finished_clocks();
          retry_delayed();
        } else if (m.clock > w.clock) {
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " jumps from clock ", w.clock, " to ", m.clock));
        }  // else: a replayed clock message, already counted
        return send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
      case MsgType::ping:
        return send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
      default:
        return reject(identity, m, str_cat("[ps] a worker may not send ", msg_type_name(m.type)));
    }
  } catch (const Error& e) {
    // Validation runs before any change, so a refused request leaves the tables as they were.
    reject(identity, m, e.what());
  }
}

void Server::Impl::handle_hello(const std::string& identity, const Message& m) {
  if (!same_secret(m.text, opt.secret)) {
    stats.refused++;
    sessions.erase(identity);
    log(str_cat(where(), " refused ", peer_name(identity), " (worker ", m.worker, "): wrong job secret"));
    return send_error(identity, m, str_cat("[ps] server ", endpoint, " refused the connection: wrong job secret "
                                           "(every worker must use the secret the job was started with)"));
  }
  if (m.worker >= workers.size())
    return reject(identity, m, str_cat("[ps] worker id ", m.worker, " is out of range: this server's job has ",
                                       workers.size(), " workers (ids 0..", workers.size() - 1, ")"));
  WorkerState& w = workers[m.worker];
  if (m.incarnation < w.incarnation)
    return reject(identity, m, str_cat("[ps] worker ", m.worker, " incarnation ", m.incarnation,
                                       " is older than incarnation ", w.incarnation, " already connected"));
  if (m.incarnation > w.incarnation) {
    // A restarted worker: its pushes are numbered afresh.
    w.incarnation = m.incarnation;
    w.last_seq = 0;
  }
  sessions[identity] = Session{m.worker, m.incarnation};
  // The reply tells a (re)joining worker the clock the server has for it.
  send(identity, Message{.type = MsgType::reply, .request = m.request, .clock = w.clock, .value = slowest_clock()});
}

void Server::Impl::check_rows(const Message& m, const Table& t, const Tensor& ids) const {
  NDF_CHECK(t.value.rank() >= 1, ShapeError, "[ps] table '", m.table, "' is a scalar and has no rows");
  const int64_t n = t.value.size(0);
  const int64_t* p = ids.data<int64_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    NDF_CHECK(p[i] >= 0 && p[i] < n, IndexError, "[ps] worker ", m.worker, " sent row id ", p[i], " (position ", i,
              ") for table '", m.table, "' of ", n, " rows");
}

void Server::Impl::handle_push(const std::string& identity, const Message& m, Table& t, WorkerState& w) {
  NDF_CHECK(m.seq >= 1, ValueError, "[ps] worker ", m.worker, " push to '", m.table, "' without a sequence number");
  // Every check happens before any write, so a bad push changes nothing.
  const bool rows = m.type == MsgType::push_rows;
  const Tensor& update = rows ? m.tensors[1] : m.tensors[0];
  if (rows) {
    check_rows(m, t, m.tensors[0]);
    const Shape& ts = t.value.shape();
    NDF_CHECK(update.rank() == t.value.rank() && std::equal(ts.begin() + 1, ts.end(), update.shape().begin() + 1),
              ShapeError, "[ps] worker ", m.worker, " pushed rows of shape ", update.shape(), " to table '", m.table,
              "' of shape ", ts, " (rows must be [k", ts.size() > 1 ? ", ...table.shape[1:]]" : "]", ")");
  } else {
    NDF_CHECK(update.shape() == t.value.shape(), ShapeError, "[ps] worker ", m.worker, " pushed shape ",
              update.shape(), " to table '", m.table, "' of shape ", t.value.shape());
  }
  // Exactly once: a client numbers its pushes 1, 2, ... per incarnation and
  // sends them in order over one connection, so anything not above the last
  // applied number is a replay.
  if (m.seq <= w.last_seq) {
    stats.replays_ignored++;
    return send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
  }

  EagerScope eager;
  NoGradGuard no_grad;
  if (t.sync.kind == Sync::Kind::asp || t.sync.staleness > 0) {
    apply(t, t.value, m, update);
  } else {
    // Held back until every worker has finished this clock (see Table::pending).
    auto [it, fresh] = t.pending.try_emplace(m.clock);
    if (fresh) it->second = zeros(t.value.shape(), DType::f32);
    Table sum{it->second, UpdateRule::accumulate, t.lr, t.sync, {}};
    apply(sum, it->second, m, update);
  }
  w.last_seq = m.seq;
  stats.pushes_applied++;
  send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
}

// target (+)= update, densely or by rows, by the table's rule.
void Server::Impl::apply(Table& t, Tensor target, const Message& m, const Tensor& update) {
  if (m.type != MsgType::push_rows) {
    if (t.rule == UpdateRule::sgd) apply_sgd(target, update, t.lr);
    else target.add_(update);
    return;
  }
  const int64_t* ids = m.tensors[0].data<int64_t>();
  const int64_t k = m.tensors[0].numel();
  if (t.rule == UpdateRule::sgd) {
    // Row by row, in order, so that a repeated id gets both steps (as a dense push of their sum would).
    for (int64_t i = 0; i < k; ++i)
      apply_sgd(target.slice(0, ids[i], ids[i] + 1), update.slice(0, i, i + 1), t.lr);
  } else {
    const int64_t width = k ? update.numel() / k : 0;
    float* dst = target.data<float>();
    const float* src = update.data<float>();
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < width; ++j) dst[ids[i] * width + j] += src[i * width + j];
  }
}

// Folds the held-back updates of every clock all workers have finished.
// SGD is linear in the gradient, so one step with the clock's summed
// gradients equals the steps taken one push at a time.
void Server::Impl::commit_finished_clocks() {
  const int64_t done = slowest_clock();  // clocks 0 .. done-1 are finished everywhere
  EagerScope eager;
  NoGradGuard no_grad;
  for (auto& [name, t] : tables) {
    while (!t.pending.empty() && t.pending.begin()->first < done) {
      Tensor sum = t.pending.begin()->second;
      if (t.rule == UpdateRule::sgd) apply_sgd(t.value, sum, t.lr);
      else t.value.add_(sum);
      t.pending.erase(t.pending.begin());
    }
  }
}

void Server::Impl::answer_pull(const std::string& identity, const Message& m) {
  const Table& t = tables.at(m.table);
  Tensor out;
  if (m.type == MsgType::pull_dense) {
    // NOTE: a snapshot, not the table itself: the reply leaves asynchronously
    // and later pushes would otherwise change the bytes while they are sent.
    out = t.value.clone();
  } else {
    const Tensor& ids = m.tensors[0];
    Shape shape = t.value.shape();
    shape[0] = ids.numel();
    out = Tensor::empty(shape, DType::f32);
    const int64_t width = t.value.size(0) ? t.value.numel() / t.value.size(0) : 0;
    const float* src = t.value.data<float>();
    float* dst = out.data<float>();
    for (int64_t i = 0; i < ids.numel(); ++i)
      std::memcpy(dst + i * width, src + ids.data<int64_t>()[i] * width, width * sizeof(float));
  }
  send(identity, Message{.type = MsgType::reply, .request = m.request, .clock = m.clock, .value = slowest_clock(),
                         .table = m.table, .tensors = {out}});
}

void Server::Impl::retry_delayed() {
  // Answer in arrival order; a pull that must still wait keeps its place.
  std::vector<Delayed> still;
  for (Delayed& d : delayed) {
    if (may_read(tables.at(d.request.table), d.request.clock)) answer_pull(d.identity, d.request);
    else still.push_back(std::move(d));
  }
  delayed = std::move(still);
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  NDF_CHECK(!options.secret.empty() && options.secret.size() <= kMaxText, ValueError,
            "[ps.server] needs the job's secret (1..", kMaxText, " bytes) in ServerOptions::secret");
  NDF_CHECK(options.num_workers >= 1 && options.num_workers <= kMaxWorkers, ValueError,
            "[ps.server] num_workers must be 1..", kMaxWorkers, ", got ", options.num_workers);
  impl_->opt = std::move(options);
  impl_->workers.resize(impl_->opt.num_workers);
}

Server::~Server() { stop(); }

void Server::add_table(const TableSpec& spec) {
  NDF_CHECK(!running(), ValueError, "[ps.server] add table '", spec.name, "' before start()");
  NDF_CHECK(valid_table_name(spec.name), ValueError, "[ps.server] bad table name '", spec.name,
            "': use 1..", kMaxTableName, " characters of [A-Za-z0-9_.:/-]");
  NDF_CHECK(!impl_->tables.count(spec.name), ValueError, "[ps.server] table '", spec.name, "' added twice");
  NDF_CHECK(spec.initial.defined() && !spec.initial.is_symbolic() && spec.initial.device().is_cpu() &&
                spec.initial.dtype() == DType::f32,
            TypeError, "[ps.server] table '", spec.name, "' needs an eager f32 CPU tensor as its initial value");
  NDF_CHECK(spec.sync.staleness >= 0, ValueError, "[ps.server] table '", spec.name, "': negative staleness ",
            spec.sync.staleness);
  EagerScope eager;
  NoGradGuard no_grad;
  impl_->tables[spec.name] = Table{spec.initial.detach().clone(), spec.rule, scalar(spec.lr), spec.sync};
}

void Server::start() {
  Impl& s = *impl_;
  NDF_CHECK(!running(), ValueError, "[ps.server ", s.endpoint, "] already running");
  s.sock = std::make_unique<zmq::socket_t>(s.ctx, zmq::socket_type::router);
  s.sock->set(zmq::sockopt::linger, 0);
  s.sock->set(zmq::sockopt::maxmsgsize, s.opt.max_message_bytes);
  try {
    s.sock->bind(s.opt.address);
  } catch (const zmq::error_t& e) {
    s.sock.reset();
    fail<ValueError>("[ps.server] cannot bind ", s.opt.address, ": ", e.what(),
                     " (is the port in use? port 0 picks a free one)");
  }
  s.endpoint = s.sock->get(zmq::sockopt::last_endpoint);
  s.stopping = false;
  // The socket moves to the poll thread; thread creation is the memory barrier ZeroMQ asks for.
  s.thread = std::thread([&s] {
    try {
      s.loop();
    } catch (const std::exception& e) {
      s.log(str_cat(s.where(), " poll loop stopped: ", e.what()));
    }
  });
}

void Server::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.stopping = true;
  s.thread.join();
  s.sock.reset();
  s.sessions.clear();
  s.delayed.clear();
}

bool Server::running() const { return impl_->thread.joinable(); }
const std::string& Server::endpoint() const { return impl_->endpoint; }
const ServerStats& Server::stats() const { return impl_->stats; }

Tensor Server::value(const std::string& table) const {
  NDF_CHECK(!running(), ValueError, "[ps.server ", impl_->endpoint, "] value('", table,
            "') while running: stop() first or pull it with a Client");
  auto t = impl_->tables.find(table);
  NDF_CHECK(t != impl_->tables.end(), NotFoundError, "[ps.server] no table '", table, "'");
  EagerScope eager;
  NoGradGuard no_grad;
  Tensor v = t->second.value.clone();
  for (auto& [clock, sum] : t->second.pending) {  // updates of clocks not every worker finished
    if (t->second.rule == UpdateRule::sgd) apply_sgd(v, sum, t->second.lr);
    else v.add_(sum);
  }
  return v;
}

}  // namespace ndflow::ps
