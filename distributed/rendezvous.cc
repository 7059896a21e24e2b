// RendezvousKey, the helpers shared with the MPI rendezvous, and the
// in-process rendezvous: a table from key to either a sent tensor or a
// waiting recv, and one timer thread per rendezvous that fails recvs past
// their deadline (DESIGN.md §6 step 4).
#include "distributed/rendezvous.h"

#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/device_name.h"
#include "distributed/rendezvous_internal.h"

namespace ndflow::distributed {

// ------------------------------------------------------------------ keys
std::string RendezvousKey::str() const { return str_cat(src_device, ";", dst_device, ";", edge, ";", step); }
int RendezvousKey::src_worker() const { return detail::worker_of(src_device); }
int RendezvousKey::dst_worker() const { return detail::worker_of(dst_device); }

double default_rendezvous_timeout() {
  const char* v = std::getenv("NDFLOW_RENDEZVOUS_TIMEOUT");
  if (v == nullptr || *v == '\0') return 60.0;
  char* end = nullptr;
  double s = std::strtod(v, &end);
  NDF_CHECK(end != v && *end == '\0' && std::isfinite(s) && s > 0, ValueError,
            "[rendezvous] NDFLOW_RENDEZVOUS_TIMEOUT='", v,
            "' is not a positive number of seconds; set it to e.g. 120, or unset it for the default of 60");
  return s;
}

namespace detail {

int worker_of(std::string_view device) {
  // The cluster's own parser, so that keys accept exactly the device names
  // the placer writes; a name without a worker ("cpu:0") is this worker's.
  const DeviceName d = DeviceName::parse(std::string(device));
  return d.worker < 0 ? 0 : d.worker;
}

std::string meta_str(DType dtype, const Shape& shape) { return str_cat(dtype_name(dtype), shape_str(shape)); }

std::exception_ptr check_meta(const std::string& key, DType sent, const Shape& sent_shape, DType want,
                              const Shape& want_shape) {
  if (sent == want && sent_shape == want_shape) return nullptr;
  std::string msg = str_cat("[rendezvous] '", key, "': the sender sent ", meta_str(sent, sent_shape),
                            " but the recv expects ", meta_str(want, want_shape),
                            "; both sides must be compiled from the same graph with the same input shapes");
  if (sent != want) return std::make_exception_ptr(TypeError(msg));
  return std::make_exception_ptr(ShapeError(msg));
}

void check_sendable(const char* who, const RendezvousKey& key, const Tensor& value) {
  NDF_CHECK(value.defined(), ValueError, "[", who, "] '", key.str(), "': send of an undefined tensor");
  NDF_CHECK(!value.is_symbolic(), ValueError, "[", who, "] '", key.str(),
            "': send of a symbolic (graph-mode) tensor; only computed tensors travel");
  NDF_CHECK(value.device().is_cpu(), ValueError, "[", who, "] '", key.str(), "': the tensor is on ",
            value.device().str(), "; only CPU tensors can be sent (copy it to the CPU first)");
}

Tensor contiguous_copy(const Tensor& value) {
  Tensor out = Tensor::empty(value.shape(), value.dtype(), Device::cpu());
  const int64_t n = value.numel();
  if (n == 0) return out;
  const size_t es = dtype_size(value.dtype());
  const char* src = static_cast<const char*>(value.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  if (value.is_contiguous()) {
    std::memcpy(dst, src, static_cast<size_t>(n) * es);
    return out;
  }
  // Odometer over every axis but the last, which is copied element by element
  // (strides may be zero (expand) or negative, so no memcpy of rows).
  const Shape& shape = value.shape();
  const Strides& strides = value.strides();
  const size_t r = shape.size();
  const int64_t inner = shape[r - 1];
  const int64_t inner_step = strides[r - 1] * static_cast<int64_t>(es);
  std::vector<int64_t> idx(r, 0);
  int64_t offset = 0;  // bytes from element 0 to the start of the current row
  for (int64_t row = 0, rows = n / inner; row < rows; ++row) {
    const char* p = src + offset;
    for (int64_t i = 0; i < inner; ++i, p += inner_step, dst += es) std::memcpy(dst, p, es);
    for (size_t a = r - 1; a-- > 0;) {
      offset += strides[a] * static_cast<int64_t>(es);
      if (++idx[a] < shape[a]) break;
      offset -= idx[a] * strides[a] * static_cast<int64_t>(es);
      idx[a] = 0;
    }
  }
  return out;
}

Clock::time_point deadline_after(double timeout_s) {
  // Beyond ~30 years the addition would overflow the clock; treat as "never".
  if (!(timeout_s > 0) || !(timeout_s < 1e9)) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
}

std::exception_ptr timeout_error(const RendezvousKey& key, double timeout_s, const std::string& peer) {
  return std::make_exception_ptr(TimeoutError(str_cat(
      "[rendezvous] recv of '", key.str(), "' waited ", timeout_s, " s and nothing came from ", peer, " (",
      key.src_device, "); that peer failed, is stuck, or runs a different graph or step. If it is only "
      "slow, raise NDFLOW_RENDEZVOUS_TIMEOUT (seconds)")));
}

}  // namespace detail

// ------------------------------------------------------------ in-process
namespace {

using detail::Clock;

struct Waiter {
  RendezvousKey key;
  DType dtype;
  Shape shape;
  Rendezvous::RecvDone done;
  double timeout_s;
  std::multimap<Clock::time_point, std::string>::iterator deadline;  // end() when none
};

// The state the timer thread shares with the rendezvous. It lives in its own
// shared_ptr so that the rendezvous may be destroyed from inside a callback
// the timer thread runs (the thread then detaches and still owns the state).
struct LocalState {
  std::mutex mu;
  std::condition_variable cv;  // wakes the timer: an earlier deadline, or stop
  std::unordered_map<std::string, Tensor> sent;     // arrived before their recv
  std::unordered_map<std::string, Waiter> waiting;  // recvs before their send
  std::multimap<Clock::time_point, std::string> deadlines;
  std::exception_ptr aborted;
  bool stopping = false;
  bool timer_started = false;

  // Takes the waiter of `it` out of the table (and its deadline); mu held.
  Waiter take(std::unordered_map<std::string, Waiter>::iterator it) {
    Waiter w = std::move(it->second);
    if (w.deadline != deadlines.end()) deadlines.erase(w.deadline);
    waiting.erase(it);
    return w;
  }

  // Fails recvs past their deadline; sleeps until the earliest one otherwise.
  void run_timer() {
    std::unique_lock lock(mu);
    while (!stopping) {
      if (deadlines.empty()) {
        cv.wait(lock);
        continue;
      }
      auto first = deadlines.begin()->first;
      if (Clock::now() < first) {
        cv.wait_until(lock, first);
        continue;
      }
      std::vector<Waiter> expired;
      const auto now = Clock::now();
      while (!deadlines.empty() && deadlines.begin()->first <= now)
        expired.push_back(take(waiting.find(deadlines.begin()->second)));
      lock.unlock();  // callbacks run outside the lock: they may call back in
      for (Waiter& w : expired)
        w.done(detail::timeout_error(w.key, w.timeout_s, str_cat("worker ", worker_label(w.key))), Tensor());
      lock.lock();
    }
  }

  static std::string worker_label(const RendezvousKey& key) {
    try {
      return std::to_string(key.src_worker());
    } catch (const Error&) {
      return "?";
    }
  }
};

class LocalRendezvous final : public Rendezvous {
 public:
  LocalRendezvous() : s_(std::make_shared<LocalState>()) {}
  LocalRendezvous(const LocalRendezvous&) = delete;
  LocalRendezvous& operator=(const LocalRendezvous&) = delete;

  ~LocalRendezvous() override {
    std::vector<Waiter> pending;
    {
      std::lock_guard lock(s_->mu);
      s_->stopping = true;
      for (auto it = s_->waiting.begin(); it != s_->waiting.end();) pending.push_back(s_->take(it++));
    }
    s_->cv.notify_all();
    if (timer_.joinable()) {
      // NOTE: the last reference may be dropped by a callback on the timer
      // thread itself; joining would then deadlock. It exits on its own.
      if (timer_.get_id() == std::this_thread::get_id())
        timer_.detach();
      else
        timer_.join();
    }
    for (Waiter& w : pending)
      w.done(std::make_exception_ptr(CancelledError(str_cat(
                 "[rendezvous] recv of '", w.key.str(), "' cancelled: its rendezvous was destroyed while it "
                 "waited (the session or step that owned it ended)"))),
             Tensor());
  }

  void send(const RendezvousKey& key, const Tensor& value, SendDone done) override {
    std::string k;
    Tensor copy;
    try {
      k = key.str();
      detail::check_sendable("rendezvous", key, value);
      copy = detail::contiguous_copy(value);  // outside the lock: it may be large
    } catch (...) {
      done(std::current_exception());
      return;
    }
    std::exception_ptr send_error;
    std::optional<Waiter> waiter;
    {
      std::lock_guard lock(s_->mu);
      if (s_->aborted) {
        send_error = s_->aborted;
      } else if (auto it = s_->waiting.find(k); it != s_->waiting.end()) {
        waiter = s_->take(it);
      } else if (!s_->sent.emplace(k, copy).second) {
        send_error = std::make_exception_ptr(ValueError(str_cat(
            "[rendezvous] '", k, "' was sent twice before it was received; a key carries one message (does "
            "the step counter advance on both sides?)")));
      }
    }
    // The copy is made: the sender's buffer is free before the recv runs.
    done(send_error);
    if (waiter) deliver(*waiter, std::move(copy));
  }

  void recv(const RendezvousKey& key, DType dtype, const Shape& shape, RecvDone done) override {
    std::string k;
    try {
      k = key.str();
    } catch (...) {
      done(std::current_exception(), Tensor());
      return;
    }
    std::exception_ptr error;
    Tensor value;
    {
      std::lock_guard lock(s_->mu);
      if (s_->aborted) {
        error = s_->aborted;
      } else if (auto it = s_->sent.find(k); it != s_->sent.end()) {
        value = std::move(it->second);
        s_->sent.erase(it);
      } else if (s_->waiting.contains(k)) {
        error = std::make_exception_ptr(ValueError(
            str_cat("[rendezvous] '", k, "' has two recvs waiting; a key carries one message")));
      } else {
        const double t = timeout();
        auto deadline = detail::deadline_after(t);
        auto dit = s_->deadlines.end();
        bool earliest = false;
        if (deadline != Clock::time_point::max()) {
          earliest = s_->deadlines.empty() || deadline < s_->deadlines.begin()->first;
          dit = s_->deadlines.emplace(deadline, k);
          start_timer_locked();
        }
        s_->waiting.emplace(k, Waiter{key, dtype, shape, std::move(done), t, dit});
        if (earliest) s_->cv.notify_one();
        return;
      }
    }
    if (error) {
      done(error, Tensor());
      return;
    }
    Waiter w{key, dtype, shape, std::move(done), 0, s_->deadlines.end()};
    deliver(w, std::move(value));
  }

  void abort(std::exception_ptr error) override {
    if (!error)
      error = std::make_exception_ptr(CancelledError("[rendezvous] aborted without a reason"));
    std::vector<Waiter> pending;
    {
      std::lock_guard lock(s_->mu);
      s_->aborted = error;
      for (auto it = s_->waiting.begin(); it != s_->waiting.end();) pending.push_back(s_->take(it++));
      s_->sent.clear();
    }
    for (Waiter& w : pending) w.done(error, Tensor());
  }

  void reset() override {
    std::vector<Waiter> pending;
    {
      std::lock_guard lock(s_->mu);
      s_->aborted = nullptr;
      s_->sent.clear();
      // A recv still waiting belongs to the step being forgotten: fail it
      // rather than let it time out much later against a fresh step.
      for (auto it = s_->waiting.begin(); it != s_->waiting.end();) pending.push_back(s_->take(it++));
    }
    for (Waiter& w : pending)
      w.done(std::make_exception_ptr(CancelledError(
                 str_cat("[rendezvous] recv of '", w.key.str(), "' cancelled by reset() while it waited"))),
             Tensor());
  }

 private:
  // Started on the first recv that has to wait: a rendezvous whose sends
  // always come first never needs the thread.
  void start_timer_locked() {
    if (s_->timer_started) return;
    s_->timer_started = true;
    timer_ = std::thread([s = s_] { s->run_timer(); });
  }

  static void deliver(Waiter& w, Tensor value) {
    if (auto e = detail::check_meta(w.key.str(), value.dtype(), value.shape(), w.dtype, w.shape)) {
      w.done(e, Tensor());
      return;
    }
    w.done(nullptr, std::move(value));
  }

  std::shared_ptr<LocalState> s_;
  std::thread timer_;
};

}  // namespace

std::shared_ptr<Rendezvous> make_local_rendezvous() {
  auto rv = std::make_shared<LocalRendezvous>();
  rv->set_timeout(default_rendezvous_timeout());
  return rv;
}

}  // namespace ndflow::distributed
