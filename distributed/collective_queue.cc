// The plan-ordered queue of graph collectives (collective_queue.h): plan
// numbering and registry, the plan check, and the communication thread.
#include "distributed/collective_queue.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "distributed/cluster.h"

namespace ndflow::distributed {

namespace {

using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------ registry
std::mutex g_registry_mu;
std::map<int64_t, std::weak_ptr<CollectivePlan>> g_plans;
int64_t g_next_key = 1;

// One step with collectives at a time in this process (collective_queue.h).
std::timed_mutex g_step_mu;

std::string ranks_str(const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ", ") + std::to_string(r);
  return "[" + s + "]";
}

uint64_t fnv1a(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Polls `req` until it completes (true) or `timeout_s` passes (false),
// answering other ranks' progress queries meanwhile. Spins (yielding) for a
// millisecond — most collectives of a step finish in that time — then sleeps
// with a growing backoff capped at 1 ms so that a waiting rank leaves the
// cores to the others.
bool poll(Communicator& comm, Communicator::Request& req, double timeout_s, const std::atomic<int64_t>& progress) {
  const Clock::time_point t0 = Clock::now();
  const auto limit = std::chrono::duration<double>(timeout_s);
  Clock::time_point served = t0;
  auto nap = std::chrono::microseconds(20);
  while (!req.test()) {
    Clock::time_point now = Clock::now();
    // NOTE: MPI's nonblocking collectives progress only inside MPI calls
    // (Open MPI's libnbc), so the first millisecond keeps testing.
    if (now - t0 < std::chrono::milliseconds(1)) {
      std::this_thread::yield();
      continue;
    }
    if (now - t0 > limit) return false;
    if (now - served > std::chrono::milliseconds(5)) {
      comm.serve_progress(progress.load(std::memory_order_relaxed));
      served = now;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
  }
  return true;
}

// Which ranks have not issued operation `seq` of this process's sequence
// (plan checks and collectives, counted alike on every rank).
std::string missing_ranks(Communicator& comm, int64_t seq, double timeout_s) {
  std::vector<int64_t> p = comm.query_progress(seq + 1, std::min(2.0, std::max(0.5, timeout_s / 2)));
  std::vector<int> behind, silent;
  for (int r = 0; r < static_cast<int>(p.size()); ++r) {
    if (p[static_cast<size_t>(r)] < 0) silent.push_back(r);
    else if (p[static_cast<size_t>(r)] <= seq) behind.push_back(r);
  }
  std::string s;
  if (!behind.empty()) s += str_cat("rank(s) ", ranks_str(behind), " have not reached it");
  if (!silent.empty())
    s += str_cat(s.empty() ? "" : "; ", "rank(s) ", ranks_str(silent),
                 " did not answer a progress query (stalled outside ndflow's graph collectives, or gone)");
  if (s.empty()) s = "every rank reports having reached it (a transport problem?)";
  return s;
}

// ------------------------------------------------------ the comm thread
// Two threads: the worker issues the step's collectives in plan order, each
// a blocking call of the backend (its tuned algorithms; MPI's nonblocking
// collectives measured 6-20x slower for 1 MB with 4 ranks on 2 cores, as
// they progress only while tested); the watchdog answers other ranks'
// progress queries and fails a collective that runs past the timeout. A
// blocking call cannot be cancelled: after a timeout the worker stays inside
// it (holding its buffers) and the queue fails everything from then on; the
// job is expected to end (the Python excepthook aborts it).
class CommThread {
 public:
  static CommThread& get() {
    // NOTE: never destroyed: the pre-finalize hook and atexit stop it, and
    // either may run after static destructors.
    static CommThread* t = [] {
      auto* c = new CommThread();
      add_pre_finalize_hook([c] { c->stop(); });
      std::atexit([] { get().stop(); });
      return c;
    }();
    return *t;
  }

  std::atomic<int64_t> progress{0};  // operations issued by this process (plan checks too)

  void begin(CollectivePlan* plan, int64_t step, const std::atomic<bool>* cancelled, double timeout_s) {
    std::lock_guard lock(mu_);
    if (poison_) std::rethrow_exception(poison_);
    plan_ = plan;
    step_ = step;
    cancelled_ = cancelled;
    timeout_s_ = timeout_s;
    pending_.assign(plan->size(), std::nullopt);
    next_ = 0;
    step_failed_ = nullptr;
  }

  void end() {
    std::lock_guard lock(mu_);
    plan_ = nullptr;
    cancelled_ = nullptr;
  }

  void submit(CollectivePlan* plan, int64_t index, CollectiveWork w) {
    std::exception_ptr error;
    {
      std::lock_guard lock(mu_);
      if (poison_) error = poison_;
      else if (step_failed_) error = step_failed_;
      else if (plan != plan_ || index < 0 || index >= static_cast<int64_t>(pending_.size()) ||
               pending_[static_cast<size_t>(index)] || static_cast<size_t>(index) < next_)
        error = std::make_exception_ptr(InternalError(str_cat(
            "graph collective #", index, " of a plan of ", plan->size(),
            " was submitted outside its step, or twice")));
      else pending_[static_cast<size_t>(index)] = std::move(w);
    }
    if (error) return w.done(error);
    cv_.notify_all();
  }

  void stop() {
    bool stuck;
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      stuck = in_flight_.has_value();
    }
    cv_.notify_all();
    // NOTE: a worker stuck in a timed-out collective never returns; leave it.
    if (stuck) worker_.detach();
    else if (worker_.joinable()) worker_.join();
    if (watchdog_.joinable()) watchdog_.join();
  }

 private:
  // The collective the worker is inside of, for the watchdog.
  struct InFlight {
    int64_t seq = 0;
    Clock::time_point start;
    double timeout_s = 60;
    std::string what;  // for the message
    AsyncDone done;
    bool finished = false;  // done was called (by the worker or the watchdog)
  };

  // NOTE: world() is made here, on the calling thread, not on the new ones:
  // creating it is collective over MPI_COMM_WORLD, so it must happen at the
  // same point of the program on every rank.
  CommThread() : comm_(world()), worker_([this] { work_loop(); }), watchdog_([this] { watch_loop(); }) {}

  void work_loop() {
    std::unique_lock lock(mu_);
    while (!stopped_) {
      const bool cancelled = cancelled_ && cancelled_->load(std::memory_order_acquire);
      if (plan_ && !step_failed_ && (cancelled || poison_)) {
        // NOTE: a cancelled step skips the kernels of collectives not yet
        // ready; those after them that were submitted would wait forever.
        step_failed_ = poison_ ? poison_ : std::make_exception_ptr(CancelledError(str_cat(
            "graph collective not issued: step ", step_, " was cancelled by an earlier error")));
        std::vector<AsyncDone> failed;
        for (auto& p : pending_)
          if (p) {
            failed.push_back(std::move(p->done));
            p.reset();
          }
        std::exception_ptr error = step_failed_;
        lock.unlock();
        for (AsyncDone& d : failed) d(error);
        lock.lock();
        continue;
      }
      if (plan_ && !step_failed_ && next_ < pending_.size() && pending_[next_]) {
        CollectiveWork w = std::move(*pending_[next_]);
        pending_[next_].reset();
        const size_t k = next_++;
        const Node& n = plan_->node(k);
        in_flight_ = InFlight{progress.fetch_add(1, std::memory_order_relaxed), Clock::now(), timeout_s_,
                              str_cat("[", n.op->name(), "] graph collective #", k, " (node '", n.name, "', ",
                                      dtype_name(w.buffer.dtype()), shape_str(w.buffer.shape()), ") of step ",
                                      step_),
                              w.done, false};
        lock.unlock();
        std::exception_ptr error = run(w);
        lock.lock();
        const bool first = !in_flight_->finished;
        in_flight_.reset();
        if (first) {
          lock.unlock();
          w.done(error);
          lock.lock();
        }
        continue;
      }
      cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
  }

  // Runs one collective; the error, if it failed.
  std::exception_ptr run(const CollectiveWork& w) {
    try {
      const DType dtype = w.buffer.dtype();
      switch (w.kind) {
        case CollectiveWork::Kind::AllReduce:
          comm_.allreduce_unchecked(w.buffer.raw_data(), w.buffer.numel(), dtype, w.op);
          break;
        case CollectiveWork::Kind::Broadcast:
          comm_.broadcast_unchecked(w.buffer.raw_data(), w.buffer.numel(), dtype, w.root);
          break;
        case CollectiveWork::Kind::AllGather:
          comm_.allgather_unchecked(w.send.raw_data(), w.buffer.raw_data(), w.send.numel(), dtype);
          break;
      }
      size_t at = 0;
      auto* base = static_cast<const std::byte*>(w.buffer.raw_data());
      for (const Tensor& out : w.unpack) {
        std::memcpy(out.raw_data(), base + at, out.nbytes());
        at += out.nbytes();
      }
      return nullptr;
    } catch (...) {
      return std::current_exception();
    }
  }

  void watch_loop() {
    std::unique_lock lock(mu_);
    while (!stopped_) {
      if (in_flight_ && !in_flight_->finished &&
          Clock::now() - in_flight_->start > std::chrono::duration<double>(in_flight_->timeout_s)) {
        InFlight f = *in_flight_;
        in_flight_->finished = true;  // the worker must not complete it as well
        lock.unlock();
        std::string msg = str_cat(f.what, " did not complete within ", f.timeout_s, " s on rank ", comm_.rank(),
                                  " of ", comm_.size(), ": ", missing_ranks(comm_, f.seq, f.timeout_s),
                                  ". Raise NDFLOW_COLLECTIVE_TIMEOUT (seconds) if that rank is only slow.");
        auto error = std::make_exception_ptr(TimeoutError(msg));
        lock.lock();
        poison_ = error;
        lock.unlock();
        f.done(error);
        cv_.notify_all();  // the worker fails what is pending
        lock.lock();
        continue;
      }
      lock.unlock();
      comm_.serve_progress(progress.load(std::memory_order_relaxed));
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  CollectivePlan* plan_ = nullptr;  // the step in progress, or null
  int64_t step_ = 0;
  const std::atomic<bool>* cancelled_ = nullptr;
  double timeout_s_ = 60;
  std::vector<std::optional<CollectiveWork>> pending_;  // submitted, not yet issued
  size_t next_ = 0;                                     // the next index to issue
  std::exception_ptr step_failed_;                      // this step was cancelled
  std::exception_ptr poison_;                           // a collective timed out: all later ones fail
  std::optional<InFlight> in_flight_;
  Communicator& comm_;
  std::thread worker_, watchdog_;  // last: they start once the members above exist
};

}  // namespace

bool is_collective_op(const OpDef& op) {
  const std::string& n = op.name();
  return n == "all_reduce" || n == "all_reduce_coalesced" || n == "broadcast" || n == "all_gather";
}

double collective_timeout() {
  const char* v = std::getenv("NDFLOW_COLLECTIVE_TIMEOUT");
  if (!v || !*v) return 60.0;
  char* end = nullptr;
  double s = std::strtod(v, &end);
  NDF_CHECK(end && *end == '\0' && s > 0, ValueError, "[collectives] NDFLOW_COLLECTIVE_TIMEOUT='", v,
            "' is not a positive number of seconds");
  return s;
}

// ------------------------------------------------------- CollectiveStep
CollectiveStep::CollectiveStep(CollectiveStep&& o) noexcept : lock_(std::move(o.lock_)), active_(o.active_) {
  o.active_ = false;
}

CollectiveStep& CollectiveStep::operator=(CollectiveStep&& o) noexcept {
  if (this != &o) {
    release();
    lock_ = std::move(o.lock_);
    active_ = o.active_;
    o.active_ = false;
  }
  return *this;
}

CollectiveStep::~CollectiveStep() { release(); }

void CollectiveStep::release() {
  if (active_) CommThread::get().end();
  active_ = false;
  if (lock_.owns_lock()) lock_.unlock();
}

// ------------------------------------------------------- CollectivePlan
std::shared_ptr<CollectivePlan> CollectivePlan::create(std::vector<Entry> entries) {
  if (entries.empty()) return nullptr;
  std::shared_ptr<CollectivePlan> plan(new CollectivePlan());
  plan->entries_ = std::move(entries);
  std::lock_guard lock(g_registry_mu);
  plan->key_ = g_next_key++;
  for (auto it = g_plans.begin(); it != g_plans.end();)  // forget dead plans
    it = it->second.expired() ? g_plans.erase(it) : std::next(it);
  g_plans[plan->key_] = plan;
  // Started now, so that this rank answers progress queries even before its
  // first step (a peer stalled in the plan check can then be named).
  if (world_size() > 1) CommThread::get();
  for (size_t k = 0; k < plan->entries_.size(); ++k) {
    Attrs& a = plan->entries_[k].node->attrs;
    a.set("plan_key", plan->key_);
    a.set("plan_index", static_cast<int64_t>(k));
  }
  return plan;
}

std::shared_ptr<CollectivePlan> CollectivePlan::find(int64_t key) {
  std::lock_guard lock(g_registry_mu);
  auto it = g_plans.find(key);
  return it == g_plans.end() ? nullptr : it->second.lock();
}

CollectivePlan::~CollectivePlan() = default;

std::string CollectivePlan::describe(size_t k, std::span<const TensorMeta> slot_meta, bool with_name) const {
  const Node& n = *entries_[k].node;
  std::string s = str_cat("#", k, " ", n.op->name());
  if (n.op->name() == "broadcast") s += str_cat("(root=", n.attrs.get<int64_t>("root", 0), ")");
  else if (n.attrs.has("op")) s += str_cat("(", n.attrs.get<std::string>("op"), ")");
  if (with_name) s += str_cat(" '", n.name, "'");
  for (size_t j = 0; j < entries_[k].input_slots.size(); ++j) {
    const TensorMeta& m = slot_meta[static_cast<size_t>(entries_[k].input_slots[j])];
    s += str_cat(j ? ", " : " ", dtype_name(m.dtype), shape_str(m.shape));
  }
  return s;
}

CollectiveStep CollectivePlan::begin_step(std::span<const TensorMeta> slot_meta,
                                          const std::atomic<bool>* cancelled) {
  if (world_size() == 1) return CollectiveStep();
  const double timeout_s = collective_timeout();
  std::unique_lock lock(g_step_mu, std::defer_lock);
  NDF_CHECK(lock.try_lock_for(std::chrono::duration<double>(timeout_s)), TimeoutError,
            "[collectives] a step of a graph with ", entries_.size(), " collectives (first: '", entries_[0].node->name,
            "') waited ", timeout_s, " s for another step with collectives in this process to end; such steps run "
            "one at a time (and in the same order on every rank): run them from one thread, and keep a worker's "
            "graph collectives on one device");
  std::string text;
  for (size_t k = 0; k < entries_.size(); ++k) text += describe(k, slot_meta, false) + "\n";
  const uint64_t hash = fnv1a(text);
  if (std::find(verified_.begin(), verified_.end(), hash) == verified_.end()) {
    check_plan(slot_meta, hash, text, timeout_s);
    verified_.push_back(hash);
  }
  CommThread::get().begin(this, steps_++, cancelled, timeout_s);
  return CollectiveStep(std::move(lock));
}

void CollectivePlan::submit(int64_t index, CollectiveWork work) {
  CommThread::get().submit(this, index, std::move(work));
}

// Every rank allgathers the hash of its sequence; on a mismatch, the texts
// (padded to the longest) so that every rank raises the same error.
void CollectivePlan::check_plan(std::span<const TensorMeta> slot_meta, uint64_t hash, const std::string& text,
                                double timeout_s) {
  Communicator& comm = world();
  CommThread& ct = CommThread::get();
  const int n = comm.size();
  auto gather = [&](const void* send, void* recv, int64_t count, DType dtype) {
    const int64_t seq = ct.progress.fetch_add(1, std::memory_order_relaxed);
    auto req = comm.start_allgather(send, recv, count, dtype);
    if (poll(comm, *req, timeout_s, ct.progress)) return;
    const std::string msg = str_cat(
        "[collective plan check] the check of the graph's ", entries_.size(), " collectives (first: ",
        describe(0, slot_meta), ") did not complete within ", timeout_s, " s on rank ", comm.rank(), ": ",
        missing_ranks(comm, seq, timeout_s), ". Raise NDFLOW_COLLECTIVE_TIMEOUT (seconds) if that rank is only slow.");
    (void)req.release();  // NOTE: MPI still owns the buffers; the job is about to end
    fail<TimeoutError>(msg);
  };
  std::vector<int64_t> hashes(static_cast<size_t>(n));
  const int64_t mine = static_cast<int64_t>(hash >> 1);
  gather(&mine, hashes.data(), 1, DType::i64);
  if (std::all_of(hashes.begin(), hashes.end(), [&](int64_t h) { return h == mine; })) return;

  // The descriptions with node names, every line padded to the longest text.
  std::string named;
  for (size_t k = 0; k < entries_.size(); ++k) named += describe(k, slot_meta) + "\n";
  int64_t len = static_cast<int64_t>(named.size());
  std::vector<int64_t> lens(static_cast<size_t>(n));
  gather(&len, lens.data(), 1, DType::i64);
  const int64_t width = *std::max_element(lens.begin(), lens.end());
  std::vector<uint8_t> mine_text(static_cast<size_t>(width), 0), all(static_cast<size_t>(width * n));
  std::memcpy(mine_text.data(), named.data(), named.size());
  gather(mine_text.data(), all.data(), width, DType::u8);
  std::vector<std::vector<std::string>> lines(static_cast<size_t>(n));  // per rank, per collective
  for (int r = 0; r < n; ++r) {
    std::string t(reinterpret_cast<const char*>(&all[static_cast<size_t>(r * width)]),
                  static_cast<size_t>(lens[static_cast<size_t>(r)]));
    for (size_t at = 0, nl; (nl = t.find('\n', at)) != std::string::npos; at = nl + 1)
      lines[static_cast<size_t>(r)].push_back(t.substr(at, nl - at));
  }
  // Compared without node names: "#k op(attr) 'name' dtype[shape]".
  auto unnamed = [](const std::string& l) {
    size_t a = l.find(" '"), b = l.find("' ", a == std::string::npos ? 0 : a + 2);
    return a == std::string::npos || b == std::string::npos ? l : l.substr(0, a) + l.substr(b + 1);
  };
  size_t most = 0;
  for (auto& l : lines) most = std::max(most, l.size());
  for (size_t k = 0; k < most; ++k) {
    auto at = [&](int r) {
      const auto& l = lines[static_cast<size_t>(r)];
      return k < l.size() ? l[k] : str_cat("#", k, " (none: ", l.size(), " collectives)");
    };
    std::vector<int> differ;
    for (int r = 1; r < n; ++r)
      if (unnamed(at(r)) != unnamed(at(0))) differ.push_back(r);
    if (differ.empty()) continue;
    std::string msg = str_cat("[collective plan check] the ranks compiled different sequences of collectives (every "
                              "rank must run the same graph collectives with the same shapes in the same order); "
                              "first difference at collective #", k, ": rank(s) ", ranks_str(differ),
                              " differ from rank 0.");
    for (int r = 0; r < n; ++r) msg += str_cat(r ? ";" : "", " rank ", r, ": ", at(r));
    fail<ValueError>(msg);
  }
  fail<InternalError>("[collective plan check] the ranks' collective hashes differ, but their descriptions agree");
}

}  // namespace ndflow::distributed
