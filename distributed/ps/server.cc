// The parameter server's poll loop, handshake, clock table and updates (server.h).
#include "distributed/ps/server.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/format.h"
#include "distributed/ps/server_internal.h"
#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow::ps {

namespace {

// Comparing the secret in time independent of where it differs, so that
// timing does not reveal a prefix.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

std::string peer_name(const std::string& identity) {
  std::string hex;
  for (unsigned char c : identity) hex += str_cat(std::hex, int(c >> 4), int(c & 15));
  return "connection 0x" + hex.substr(0, 16);
}

// Folds one clock's held-back gradient sum into the table: one optimizer
// step with the sum (accumulate and SGD are linear, so that equals one step
// per push). A non-linear rule steps only the touched rows (the non-zero
// rows of the sum) when the clock had row pushes only.
void commit(const Tensor& value, detail::TableOptimizer& opt, const Tensor& sum, bool dense) {
  if (dense || opt.linear() || value.rank() < 1) return opt.dense(value, sum);
  const std::vector<int64_t> rows = detail::nonzero_rows(sum);
  EagerScope eager;
  Tensor ids = Tensor::empty({int64_t(rows.size())}, DType::i64);
  std::copy(rows.begin(), rows.end(), ids.data<int64_t>());
  opt.rows(value, ids.data<int64_t>(), ids.numel(), index_select(sum, 0, ids));
}

// The table's value, safe to write in place. A dense pull reply shares the
// table's buffer instead of copying it (a 64 MB copy per pull cost as much
// as sending it); while such a reply is still being sent, the table moves to
// a copy before it changes, so the bytes on the wire never do.
Tensor& writable(Table& t) {
  if (t.value.impl_ptr().use_count() > 1 || t.value.impl()->storage.use_count() > 1) {
    EagerScope eager;
    t.value = t.value.clone();
  }
  return t.value;
}


void Server::Impl::loop() {
  ThreadCountScope threads(opt.update_threads);
  std::vector<zmq::message_t> frames;
  while (!stopping.load()) {
    zmq::pollitem_t item{sock->handle(), 0, ZMQ_POLLIN, 0};
    // A short poll bounds how long stop() waits; the loop is otherwise idle.
    zmq::poll(&item, 1, std::chrono::milliseconds(20));
    while (!stopping.load() && detail::recv_frames(*sock, frames)) handle(frames);
    check_heartbeats();
    take_new_tables();
  }
}

// Any message of a live session is a heartbeat; a worker that was declared
// dead and speaks again (it was only slow) is back in the clock table at its
// own clock.
void Server::Impl::heard_from(uint32_t worker) {
  WorkerState& w = workers[worker];
  w.heard = SteadyClock::now();
  if (!w.alive) {
    w.alive = true;
    log(str_cat(where(), " worker ", worker, " incarnation ", w.incarnation, " is alive again at clock ", w.clock,
                " and back in the clock table (raise ServerOptions::heartbeat_timeout / "
                "NDFLOW_PS_HEARTBEAT_TIMEOUT if its silences are expected)"));
  }
}

// Declares connected workers silent past the timeout dead: they leave the
// clock table, so clocks they held back commit and pulls waiting on them are
// answered.
void Server::Impl::check_heartbeats() {
  const auto now = SteadyClock::now();
  bool changed = false;
  for (size_t i = 0; i < workers.size(); ++i) {
    WorkerState& w = workers[i];
    if (!w.connected || !w.alive || now - w.heard < opt.heartbeat_timeout) continue;
    w.alive = false;
    changed = true;
    stats.workers_dead++;
    log(str_cat(where(), " worker ", i, " incarnation ", w.incarnation, " sent nothing for ",
                opt.heartbeat_timeout.count(), " ms: declared dead at clock ", w.clock,
                " and removed from the clock table (slowest clock now ", slowest_clock(),
                "); a restart of it rejoins"));
  }
  if (changed) clocks_advanced();
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
    return reject(identity, m,
                  str_cat("[ps] ", msg_type_name(m.type), " before a handshake: connect with ps::Client and the "
                          "job's secret (a Client handshakes again by itself when server ", endpoint,
                          " was restarted)"),
                  ErrorCode::no_session);
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
  heard_from(session.worker);

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
        stats.pulls_delayed++;
        return delay(identity, std::move(m));
      }
      case MsgType::barrier:
        if (m.clock != w.clock)
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " waits at a barrier at clock ", m.clock,
                                             " but the server has it at clock ", w.clock));
        if (may_answer(m))
          return send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
        return delay(identity, std::move(m));
      case MsgType::clock:
        if (m.clock == w.clock + 1) {
          w.clock = m.clock;
          clocks_advanced();
        } else if (m.clock > w.clock) {
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " jumps from clock ", w.clock, " to ", m.clock));
        }  // else: a replayed clock message, already counted
        return send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
      case MsgType::ping:
        return send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
      case MsgType::set_lr: {
        auto t = tables.find(m.table);
        if (t == tables.end())
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " set the learning rate of unknown table '",
                                             m.table, "' (this server has ", table_names(), ")"));
        const double lr = std::bit_cast<double>(m.value);
        if (t->second.opt.rule == UpdateRule::accumulate)
          return reject(identity, m, str_cat("[ps] table '", m.table, "' accumulates what workers push: it has no "
                                             "learning rate (set_lr is for tables with a server-side optimizer)"));
        if (!std::isfinite(lr) || lr < 0)
          return reject(identity, m, str_cat("[ps] worker ", m.worker, " set the learning rate of '", m.table,
                                             "' to ", lr, ": give a finite value >= 0"));
        {
          EagerScope eager;
          t->second.opt.lr.fill_(lr);  // held-back BSP clocks commit with it
        }
        return send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});
      }
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
    // Pulls its old process left waiting would be answered to nobody.
    std::erase_if(delayed, [&](const Delayed& d) {
      return d.request.worker == m.worker && d.request.incarnation < m.incarnation;
    });
    if (w.connected) {
      // It rejoins at its previous clock: the clock it had not finished is
      // done again (what its old process pushed stays applied, exactly once).
      // If it was declared dead and the others moved on meanwhile, it rejoins
      // at their slowest clock instead. Either way the slowest clock never
      // goes down, so nothing already committed or answered is undone.
      const int64_t was = w.clock;
      if (!w.alive && any_alive_except(m.worker)) w.clock = std::max(w.clock, slowest_clock(m.worker));
      stats.rejoins++;
      log(str_cat(where(), " worker ", m.worker, " rejoined as incarnation ", m.incarnation, " at clock ", w.clock,
                  " (its previous incarnation was at clock ", was, w.alive ? "" : ", declared dead", ")"));
    }
  } else if (m.clock > w.clock) {
    // The same process handshaking again, ahead of the clock this server
    // has for it: the server was restarted from a checkpoint, and the
    // worker resumes where it is (what it pushed since the checkpoint and
    // does not resend is lost: at most one checkpoint interval).
    log(str_cat(where(), " worker ", m.worker, " incarnation ", m.incarnation, " resumes at clock ", m.clock,
                " (this server had it at clock ", w.clock, ")"));
    w.clock = m.clock;
  }
  sessions[identity] = Session{m.worker, m.incarnation};
  w.connected = true;
  w.alive = true;
  heard_from(m.worker);
  clocks_advanced();  // its new clock may finish clocks others wait on
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

  // The ack goes out before the update is applied, so the worker's wait
  // overlaps the server's arithmetic. That is safe: this thread applies it
  // before it reads the next message, so every later pull, from anyone,
  // sees it; a crash in between loses no more than a crash after would.
  w.last_seq = m.seq;
  stats.pushes_applied++;
  send(identity, Message{.type = MsgType::reply, .request = m.request, .value = slowest_clock()});

  EagerScope eager;
  NoGradGuard no_grad;
  if (t.sync.kind == Sync::Kind::asp || t.sync.staleness > 0) {
    apply(t, writable(t), m, update);
  } else {
    // Held back until every worker has finished this clock (see Table::pending).
    auto [it, fresh] = t.pending.try_emplace(m.clock);
    if (fresh) it->second = zeros(t.value.shape(), DType::f32);
    detail::TableOptimizer sum;  // accumulates
    if (rows) sum.rows(it->second, m.tensors[0].data<int64_t>(), m.tensors[0].numel(), update);
    else sum.dense(it->second, update);
    if (!rows) t.dense_clocks.insert(m.clock);
  }
}

// One step of the table's rule on target, densely or on the pushed rows.
void Server::Impl::apply(Table& t, Tensor target, const Message& m, const Tensor& update) {
  if (m.type != MsgType::push_rows) return t.opt.dense(target, update);
  t.opt.rows(target, m.tensors[0].data<int64_t>(), m.tensors[0].numel(), update);
}

// Folds the held-back updates of every clock all workers have finished, one
// optimizer step per clock with the sum of the clock's pushes (see commit()).
void Server::Impl::commit_finished_clocks() {
  const int64_t done = slowest_clock();  // clocks 0 .. done-1 are finished everywhere
  EagerScope eager;
  NoGradGuard no_grad;
  for (auto& [name, t] : tables) {
    while (!t.pending.empty() && t.pending.begin()->first < done) {
      const int64_t clock = t.pending.begin()->first;
      commit(writable(t), t.opt, t.pending.begin()->second, t.dense_clocks.count(clock) > 0);
      t.pending.erase(t.pending.begin());
      t.dense_clocks.erase(clock);
    }
  }
}

void Server::Impl::answer_pull(const std::string& identity, const Message& m) {
  const Table& t = tables.at(m.table);
  Tensor out;
  if (m.type == MsgType::pull_dense) {
    // The table's own buffer: a later write moves the table to a copy first
    // while this reply may still be sending it (see writable()).
    out = t.value;
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
  const int64_t slowest = slowest_clock();
  const int64_t stale = std::clamp<int64_t>(m.clock - slowest, 0, ServerStats::kStalenessBins - 1);
  stats.staleness[size_t(stale)]++;
  send(identity, Message{.type = MsgType::reply, .request = m.request, .clock = m.clock, .value = slowest,
                         .table = m.table, .tensors = {out}});
}

void Server::Impl::delay(const std::string& identity, Message m) {
  // Bounded, so that a runaway client cannot grow the server without limit.
  if (delayed.size() >= kMaxDelayedPulls)
    return reject(identity, m, str_cat("[ps] worker ", m.worker, " ", msg_type_name(m.type), " '", m.table, "': ",
                                       kMaxDelayedPulls, " requests are already waiting for slower workers"));
  delayed.push_back({identity, std::move(m), SteadyClock::now()});
}

void Server::Impl::retry_delayed() {
  // Answer in arrival order; a request that must still wait keeps its place.
  std::vector<Delayed> still;
  for (Delayed& d : delayed) {
    if (!may_answer(d.request)) {
      still.push_back(std::move(d));
    } else if (d.request.type == MsgType::barrier) {
      send(d.identity, Message{.type = MsgType::reply, .request = d.request.request, .value = slowest_clock()});
    } else {
      const auto waited = std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - d.since);
      stats.pull_wait_us[d.request.worker] += uint64_t(waited.count());
      answer_pull(d.identity, d.request);
    }
  }
  delayed = std::move(still);
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  NDF_CHECK(!options.secret.empty() && options.secret.size() <= kMaxText, ValueError,
            "[ps.server] needs the job's secret (1..", kMaxText, " bytes) in ServerOptions::secret");
  NDF_CHECK(options.num_workers >= 1 && options.num_workers <= kMaxWorkers, ValueError,
            "[ps.server] num_workers must be 1..", kMaxWorkers, ", got ", options.num_workers);
  impl_->opt = std::move(options);
  NDF_CHECK(impl_->opt.heartbeat_timeout.count() > 0, ValueError, "[ps.server] heartbeat_timeout must be positive, got ",
            impl_->opt.heartbeat_timeout.count(), " ms");
  NDF_CHECK(impl_->opt.update_threads >= 1, ValueError, "[ps.server] update_threads must be >= 1, got ",
            impl_->opt.update_threads);
  impl_->workers.resize(impl_->opt.num_workers);
  impl_->stats.num_workers = impl_->opt.num_workers;
  impl_->stats.pull_wait_us = std::make_unique<std::atomic<uint64_t>[]>(impl_->opt.num_workers);
}

Server::~Server() { stop(); }

void Server::add_table(const TableSpec& spec) {
  NDF_CHECK(valid_table_name(spec.name), ValueError, "[ps.server] bad table name '", spec.name,
            "': use 1..", kMaxTableName, " characters of [A-Za-z0-9_.:/-]");
  NDF_CHECK(spec.initial.defined() && !spec.initial.is_symbolic() && spec.initial.device().is_cpu() &&
                spec.initial.dtype() == DType::f32,
            TypeError, "[ps.server] table '", spec.name, "' needs an eager f32 CPU tensor as its initial value");
  NDF_CHECK(spec.sync.staleness >= 0, ValueError, "[ps.server] table '", spec.name, "': negative staleness ",
            spec.sync.staleness);
  EagerScope eager;
  NoGradGuard no_grad;
  Tensor initial = spec.initial.detach().clone();
  Table table{initial, detail::TableOptimizer::make(spec.name, initial, spec.rule, spec.lr, spec.hyper), spec.sync, {}, {}};
  std::future<std::string> added;
  {
    std::lock_guard<std::mutex> lock(impl_->adding_mu);
    if (!impl_->loop_owns_tables) {
      NDF_CHECK(!impl_->tables.count(spec.name), ValueError, "[ps.server] table '", spec.name, "' added twice");
      impl_->tables[spec.name] = std::move(table);
      return;
    }
    // The poll thread owns the tables: it takes the new one between messages.
    impl_->adding.push_back({spec.name, std::move(table), {}});
    added = impl_->adding.back().done.get_future();
  }
  const std::string error = added.get();
  NDF_CHECK(error.empty(), ValueError, error);
}

// Tables added while the server runs (add_table); a checkpoint restored at
// start() knew nothing of them, and the next one includes them.
void Server::Impl::take_new_tables() {
  std::lock_guard<std::mutex> lock(adding_mu);
  if (adding.empty()) return;
  for (NewTable& n : adding) {
    if (tables.count(n.name)) {
      n.done.set_value(str_cat("[ps.server] table '", n.name, "' added twice"));
      continue;
    }
    tables[n.name] = std::move(n.table);
    n.done.set_value("");
  }
  adding.clear();
}

void Server::start() {
  Impl& s = *impl_;
  NDF_CHECK(!running(), ValueError, "[ps.server ", s.endpoint, "] already running");
  if (s.opt.restore && !s.opt.checkpoint_path.empty()) {
    if (std::filesystem::exists(s.opt.checkpoint_path)) s.restore_checkpoint();
    else s.log(str_cat("[ps.server] no checkpoint ", s.opt.checkpoint_path, " to restore: starting from the initial values"));
  }
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
  {
    std::lock_guard<std::mutex> lock(s.adding_mu);
    s.loop_owns_tables = true;
  }
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
  {
    std::lock_guard<std::mutex> lock(s.adding_mu);
    s.loop_owns_tables = false;
  }
  s.take_new_tables();  // handed over while the loop was ending
  s.sock.reset();
  if (!s.opt.checkpoint_path.empty()) s.save_checkpoint();
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
  detail::TableOptimizer opt = t->second.opt.clone();
  for (auto& [clock, sum] : t->second.pending)  // updates of clocks not every worker finished
    commit(v, opt, sum, t->second.dense_clocks.count(clock) > 0);
  return v;
}

}  // namespace ndflow::ps
