// The MPI rendezvous (DESIGN.md §7, model parallel): Send/Recv between
// workers, one MPI rank each. One progress thread owns every MPI call it
// makes: it posts queued sends, probes for arriving messages and tests
// requests, sleeping with a growing backoff when there is nothing to do.
//
// Two communicators duplicated from MPI_COMM_WORLD (so neither ever matches
// the collectives' messages, nor each other's):
//   header comm: the header (rendezvous_wire.cc: magic, version, dtype,
//                dims, payload bytes, the full key string);
//   data comm:   the payload, in chunks of at most 1 GiB (none when empty).
// Both use the tag hash(key) mod MPI_TAG_UB. Different keys may share a tag:
// a receiver takes headers from any source with a matched probe (so it knows
// the length before receiving), then posts the payload receives for that
// source and tag at once. MPI keeps messages of one sender, communicator and
// tag in order, and receives posted in order match in order, so a payload
// always pairs with its own header. Nothing from the wire is trusted.
#include <mpi.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "distributed/cluster.h"
#include "distributed/rendezvous_internal.h"

namespace ndflow::distributed {

namespace {

using detail::Clock;
using namespace std::chrono_literals;

constexpr int64_t kChunkBytes = int64_t(1) << 30;  // MPI counts are ints

std::string mpi_error(int rc, const char* call) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return str_cat("[rendezvous.mpi] ", call, " failed: ", std::string(msg, len));
}

struct OutMsg {
  std::string key;
  int dst = 0;
  int tag = 0;
  std::vector<char> header;
  Tensor payload;  // kept alive until MPI is done with its buffer
  Rendezvous::SendDone done;
  std::vector<MPI_Request> reqs;
  std::exception_ptr error;  // reported once the posted requests finish
};

struct InMsg {
  detail::WireHeader header;
  int source = 0;
  Tensor value;
  std::vector<MPI_Request> reqs;
  std::vector<int> chunk_bytes;
  std::exception_ptr error;  // a misaddressed message: the payload is drained, then this is delivered
};

struct PendingRecv {
  RendezvousKey key;
  DType dtype;
  Shape shape;
  Rendezvous::RecvDone done;
  double timeout_s;
  Clock::time_point deadline;
};

struct Arrived {
  Tensor value;
  std::exception_ptr error;
};

class MpiRendezvous final : public Rendezvous {
 public:
  MpiRendezvous() {
    NDF_CHECK(uses_mpi(), ValueError,
              "[rendezvous.mpi] this process is not an MPI job (start it with mpirun); devices of one "
              "process use make_local_rendezvous()");
    NDF_CHECK(mpi_thread_level() == "multiple", ValueError, "[rendezvous.mpi] needs MPI_THREAD_MULTIPLE, but "
              "MPI was initialized with thread level '", mpi_thread_level(),
              "'; let ndflow initialize MPI (or call MPI_Init_thread with MPI_THREAD_MULTIPLE)");
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &hdr_comm_), "MPI_Comm_dup");
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &data_comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(hdr_comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(data_comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(hdr_comm_, &rank_);
    MPI_Comm_size(hdr_comm_, &size_);
    int* ub = nullptr;
    int flag = 0;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
    tag_modulus_ = flag && ub ? int64_t(*ub) + 1 : 32768;  // the standard guarantees at least 32767
    // Test hook: a tiny tag space forces different keys onto one tag.
    if (const char* m = std::getenv("NDFLOW_RENDEZVOUS_TAG_MODULUS"); m && *m)
      tag_modulus_ = std::clamp<int64_t>(std::atoll(m), 1, tag_modulus_);
    thread_ = std::thread([this] { progress_loop(); });
  }
  MpiRendezvous(const MpiRendezvous&) = delete;
  MpiRendezvous& operator=(const MpiRendezvous&) = delete;
  ~MpiRendezvous() override { shutdown(); }

  void send(const RendezvousKey& key, const Tensor& value, SendDone done) override {
    OutMsg m;
    try {
      m.key = key.str();
      detail::check_sendable("rendezvous.mpi", key, value);
      const int src = key.src_worker();
      m.dst = key.dst_worker();
      NDF_CHECK(src == rank_, ValueError, "[rendezvous.mpi] '", m.key, "' is sent from worker ", src,
                " but this process is rank ", rank_, "; a send runs on the worker that owns its source device");
      check_peer(m.key, m.dst, "destination");
      NDF_CHECK(m.key.size() <= detail::kWireMaxKeyBytes, ValueError, "[rendezvous.mpi] key of ",
                m.key.size(), " bytes is longer than ", detail::kWireMaxKeyBytes, ": '", m.key.substr(0, 200),
                "...'");
      NDF_CHECK(value.rank() <= detail::kWireMaxDims, ValueError, "[rendezvous.mpi] '", m.key, "': ",
                value.rank(), " dims, at most ", detail::kWireMaxDims, " travel");
      m.payload = value.is_contiguous() ? value : detail::contiguous_copy(value);
      m.header = detail::encode_header(m.key, value.dtype(), value.shape(), value.nbytes());
      m.tag = tag_of(m.key);
      m.done = std::move(done);
    } catch (...) {
      done(std::current_exception());
      return;
    }
    std::exception_ptr error;
    {
      std::lock_guard lock(mu_);
      error = aborted_ ? aborted_ : stopped_error_locked();
      if (!error) queued_.push_back(std::move(m));
    }
    if (error) {
      m.done(error);
      return;
    }
    cv_.notify_one();  // post it now rather than after the current backoff
  }

  void recv(const RendezvousKey& key, DType dtype, const Shape& shape, RecvDone done) override {
    std::string k;
    int src = 0;
    try {
      k = key.str();
      src = key.src_worker();
      const int dst = key.dst_worker();
      NDF_CHECK(dst == rank_, ValueError, "[rendezvous.mpi] '", k, "' is received by worker ", dst,
                " but this process is rank ", rank_, "; a recv runs on the worker that owns its destination");
      check_peer(k, src, "source");
    } catch (...) {
      done(std::current_exception(), Tensor());
      return;
    }
    std::exception_ptr error;
    Arrived got;
    {
      std::lock_guard lock(mu_);
      if (aborted_ || stopping_) {
        error = aborted_ ? aborted_ : stopped_error_locked();
      } else if (auto it = stash_.find(k); it != stash_.end()) {
        got = std::move(it->second);
        stash_.erase(it);
      } else if (pending_.contains(k)) {
        error = std::make_exception_ptr(
            ValueError(str_cat("[rendezvous.mpi] '", k, "' has two recvs waiting; a key carries one message")));
      } else {
        const double t = timeout();
        auto deadline = detail::deadline_after(t);
        earliest_ = std::min(earliest_, deadline);
        pending_.emplace(k, PendingRecv{key, dtype, shape, std::move(done), t, deadline});
        return;
      }
    }
    if (error) return done(error, Tensor());
    finish(PendingRecv{key, dtype, shape, std::move(done), 0, {}}, std::move(got));
  }

  void abort(std::exception_ptr error) override {
    if (!error) error = std::make_exception_ptr(CancelledError("[rendezvous.mpi] aborted without a reason"));
    fail_all(error, /*sticky=*/true);
  }

  // Stops and joins the progress thread, then fails what is left; MPI must
  // still be up (runs from the pre-finalize hook, or the destructor).
  void shutdown() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    // NOTE: a callback on the progress thread that finalizes MPI cannot join
    // its own thread; the loop sees stopping_ and returns after it.
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
      return;
    }
    if (thread_.joinable()) thread_.join();
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (finalized) return;  // finalized behind our back (mpi4py): MPI calls are no longer allowed
    auto cancelled = std::make_exception_ptr(CancelledError(
        "[rendezvous.mpi] cancelled: MPI is being finalized (distributed.finalize() or process exit) while "
        "this transfer was pending"));
    for (InMsg& in : incoming_)
      for (MPI_Request& r : in.reqs)
        if (r != MPI_REQUEST_NULL) {
          MPI_Cancel(&r);
          MPI_Wait(&r, MPI_STATUS_IGNORE);
        }
    incoming_.clear();
    for (OutMsg& m : inflight_) {
      for (MPI_Request& r : m.reqs)
        if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
      // MPI may still read the buffer after the request is freed: keep it alive.
      static auto* orphans = new std::vector<Tensor>;  // NOLINT: deliberately never freed
      orphans->push_back(m.payload);
      m.done(cancelled);
    }
    inflight_.clear();
    fail_all(cancelled, /*sticky=*/false);  // later calls see stopping_
    MPI_Comm_free(&hdr_comm_);
    MPI_Comm_free(&data_comm_);
  }

 private:
  static void check_mpi(int rc, const char* call) {
    if (rc != MPI_SUCCESS) throw Error(mpi_error(rc, call));
  }

  void check_peer(const std::string& key, int peer, const char* role) const {
    NDF_CHECK(peer != rank_, ValueError, "[rendezvous.mpi] '", key, "' has its ", role,
              " on this worker (rank ", rank_, "); transfers within one process go through "
              "make_local_rendezvous(), not MPI");
    NDF_CHECK(peer >= 0 && peer < size_, ValueError, "[rendezvous.mpi] '", key, "' names worker ", peer,
              " as its ", role, ", but the job has ", size_, " ranks (workers 0..", size_ - 1, ")");
  }

  // Fails queued sends and pending recvs with `error` and drops stashed
  // messages; `sticky`: later calls fail with it too.
  void fail_all(std::exception_ptr error, bool sticky) {
    std::vector<PendingRecv> recvs;
    std::deque<OutMsg> sends;
    {
      std::lock_guard lock(mu_);
      if (sticky) aborted_ = error;
      for (auto& [k, p] : pending_) recvs.push_back(std::move(p));
      pending_.clear();
      stash_.clear();
      sends.swap(queued_);
    }
    for (auto& m : sends) m.done(error);
    for (auto& p : recvs) p.done(error, Tensor());
  }

  int tag_of(const std::string& key) const { return static_cast<int>(detail::key_hash(key) % uint64_t(tag_modulus_)); }

  std::exception_ptr stopped_error_locked() const {
    if (!stopping_) return nullptr;
    return std::make_exception_ptr(CancelledError(
        "[rendezvous.mpi] MPI was finalized (distributed.finalize() or process exit); no more transfers"));
  }

  // ---------------------------------------------------- progress thread
  void progress_loop() {
    auto backoff = 20us;
    std::unique_lock lock(mu_);
    while (!stopping_) {
      std::deque<OutMsg> sends;
      sends.swap(queued_);
      lock.unlock();
      bool progressed = !sends.empty();
      for (OutMsg& m : sends) post_send(std::move(m));
      progressed |= test_sends();
      progressed |= probe_headers();
      progressed |= test_incoming();
      expire_recvs();
      const bool busy = !inflight_.empty() || !incoming_.empty();
      lock.lock();
      if (progressed) {
        backoff = 20us;
        continue;  // more may be ready right away
      }
      // Transfers under way need MPI calls to advance (pipelined copies), so
      // they keep the short sleep; only a quiet process backs off to 1 ms.
      backoff = busy ? 20us : std::min<std::chrono::microseconds>(backoff * 2, 1ms);
      if (queued_.empty()) cv_.wait_for(lock, backoff);
    }
  }

  void post_send(OutMsg m) {
    MPI_Request r;
    int rc = MPI_Isend(m.header.data(), static_cast<int>(m.header.size()), MPI_BYTE, m.dst, m.tag, hdr_comm_, &r);
    if (rc != MPI_SUCCESS) {
      m.done(std::make_exception_ptr(Error(str_cat(mpi_error(rc, "MPI_Isend"), " (header of '", m.key, "' to rank ",
                                                   m.dst, ")"))));
      return;
    }
    m.reqs.push_back(r);
    const char* p = static_cast<const char*>(m.payload.numel() ? m.payload.raw_data() : nullptr);
    for (int64_t off = 0, total = static_cast<int64_t>(m.payload.nbytes()); off < total; off += kChunkBytes) {
      const int len = static_cast<int>(std::min(kChunkBytes, total - off));
      rc = MPI_Isend(p + off, len, MPI_BYTE, m.dst, m.tag, data_comm_, &r);
      if (rc != MPI_SUCCESS) {
        m.error = std::make_exception_ptr(Error(str_cat(mpi_error(rc, "MPI_Isend"), " (payload of '", m.key,
                                                        "' to rank ", m.dst, ")")));
        break;
      }
      m.reqs.push_back(r);
    }
    inflight_.push_back(std::move(m));
  }

  bool test_sends() {
    bool any = false;
    for (size_t i = 0; i < inflight_.size();) {
      OutMsg& m = inflight_[i];
      int flag = 0;
      int rc = MPI_Testall(static_cast<int>(m.reqs.size()), m.reqs.data(), &flag, MPI_STATUSES_IGNORE);
      if (rc != MPI_SUCCESS) {
        if (!m.error)
          m.error = std::make_exception_ptr(
              Error(str_cat(mpi_error(rc, "MPI_Testall"), " (send of '", m.key, "' to rank ", m.dst, ")")));
        flag = 1;
      }
      if (!flag) {
        ++i;
        continue;
      }
      OutMsg done = std::move(m);
      if (i + 1 < inflight_.size()) inflight_[i] = std::move(inflight_.back());
      inflight_.pop_back();
      done.payload = Tensor();  // MPI is done with the buffer: release it before telling the sender
      done.done(done.error);
      any = true;
    }
    return any;
  }

  bool probe_headers() {
    bool any = false;
    for (int n = 0; n < 64; ++n) {  // bounded, so sends and timeouts get their turn
      int flag = 0;
      MPI_Message msg;
      MPI_Status st;
      int rc = MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, hdr_comm_, &flag, &msg, &st);
      if (rc != MPI_SUCCESS) {
        abort(std::make_exception_ptr(Error(mpi_error(rc, "MPI_Improbe"))));
        return any;
      }
      if (!flag) break;
      any = true;
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      // A length out of bounds is still received (into a small buffer, which
      // truncates) so that the message leaves the queue.
      const bool sane = count >= 0 && static_cast<size_t>(count) <= detail::kWireMaxHeaderBytes;
      std::vector<char> buf(sane ? count : detail::kWireFixedBytes);
      rc = MPI_Mrecv(buf.data(), static_cast<int>(buf.size()), MPI_BYTE, &msg, MPI_STATUS_IGNORE);
      try {
        if (!sane)
          fail<ValueError>("[rendezvous.mpi] header of ", count, " bytes from rank ", st.MPI_SOURCE,
                           " (at most ", detail::kWireMaxHeaderBytes, ")");
        if (rc != MPI_SUCCESS) throw Error(mpi_error(rc, "MPI_Mrecv"));
        start_incoming(detail::decode_header(buf, st.MPI_SOURCE), st.MPI_SOURCE, st.MPI_TAG);
      } catch (...) {
        // The payloads that follow can no longer be paired with headers: this
        // rendezvous cannot go on. Every pending recv learns why.
        abort(std::current_exception());
        return any;
      }
    }
    return any;
  }

  // Checks that the header is where its key says it belongs, then posts the
  // payload receives (before any later header from that source and tag).
  void start_incoming(detail::WireHeader h, int source, int tag) {
    InMsg in;
    in.source = source;
    auto [src_dev, dst_dev] = detail::key_devices(h.key);
    int key_src = -1, key_dst = -1;
    try {
      key_src = detail::worker_of(src_dev);
      key_dst = detail::worker_of(dst_dev);
    } catch (const Error&) {
    }
    const int want_tag = tag_of(h.key);
    if (src_dev.empty() || key_src != source || key_dst != rank_ || want_tag != tag)
      in.error = std::make_exception_ptr(ValueError(str_cat(
          "[rendezvous.mpi] a message for '", h.key, "' (", detail::meta_str(h.dtype, h.shape),
          ") arrived from rank ", source, " at rank ", rank_, " with tag ", tag,
          ", but that key belongs from worker ", key_src, " to worker ", key_dst, " with tag ", want_tag,
          "; the ranks disagree on the key or the wire format")));
    in.value = Tensor::empty(h.shape, h.dtype, Device::cpu());
    char* p = static_cast<char*>(in.value.numel() ? in.value.raw_data() : nullptr);
    for (int64_t off = 0, total = static_cast<int64_t>(h.payload_bytes); off < total; off += kChunkBytes) {
      const int len = static_cast<int>(std::min(kChunkBytes, total - off));
      MPI_Request r;
      check_mpi(MPI_Irecv(p + off, len, MPI_BYTE, source, tag, data_comm_, &r), "MPI_Irecv");
      in.reqs.push_back(r);
      in.chunk_bytes.push_back(len);
    }
    in.header = std::move(h);
    incoming_.push_back(std::move(in));
  }

  bool test_incoming() {
    bool any = false;
    for (size_t i = 0; i < incoming_.size();) {
      InMsg& in = incoming_[i];
      int flag = 0;
      std::vector<MPI_Status> st(in.reqs.size());
      int rc = MPI_Testall(static_cast<int>(in.reqs.size()), in.reqs.data(), &flag, st.data());
      if (rc != MPI_SUCCESS) {
        // A failed payload receive leaves the stream from that rank unpaired.
        auto e = std::make_exception_ptr(Error(str_cat(mpi_error(rc, "MPI_Testall"), " (payload of '",
                                                       in.header.key, "' from rank ", in.source, ")")));
        if (i + 1 < incoming_.size()) incoming_[i] = std::move(incoming_.back());
        incoming_.pop_back();
        abort(e);
        return true;
      }
      if (!flag) {
        ++i;
        continue;
      }
      for (size_t c = 0; c < st.size() && !in.error; ++c) {
        int got = -1;
        MPI_Get_count(&st[c], MPI_BYTE, &got);
        if (got != in.chunk_bytes[c])
          in.error = std::make_exception_ptr(ValueError(
              str_cat("[rendezvous.mpi] payload of '", in.header.key, "' from rank ", in.source, " has ", got,
                      " bytes in chunk ", c, " where its header announced ", in.chunk_bytes[c])));
      }
      InMsg done = std::move(in);
      if (i + 1 < incoming_.size()) incoming_[i] = std::move(incoming_.back());
      incoming_.pop_back();
      arrive(done.header.key, Arrived{done.error ? Tensor() : std::move(done.value), done.error});
      any = true;
    }
    return any;
  }

  // A message is complete: hands it to its recv, or keeps it until one comes.
  void arrive(const std::string& key, Arrived got) {
    std::unique_lock lock(mu_);
    if (aborted_) return;  // the step is cancelled: drop it
    auto it = pending_.find(key);
    if (it == pending_.end()) {
      auto [slot, fresh] = stash_.try_emplace(key, std::move(got));
      if (!fresh)
        slot->second = Arrived{Tensor(), std::make_exception_ptr(ValueError(str_cat(
                                             "[rendezvous.mpi] '", key, "' arrived twice before it was received; "
                                             "a key carries one message (does the step advance on both sides?)")))};
      return;
    }
    PendingRecv p = std::move(it->second);
    pending_.erase(it);
    lock.unlock();
    finish(std::move(p), std::move(got));
  }

  static void finish(PendingRecv p, Arrived got) {
    if (got.error) return p.done(got.error, Tensor());
    if (auto e = detail::check_meta(p.key.str(), got.value.dtype(), got.value.shape(), p.dtype, p.shape))
      return p.done(e, Tensor());
    p.done(nullptr, std::move(got.value));
  }

  void expire_recvs() {
    std::vector<PendingRecv> expired;
    {
      std::lock_guard lock(mu_);
      const auto now = Clock::now();
      if (now < earliest_) return;
      earliest_ = Clock::time_point::max();
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second));
          it = pending_.erase(it);
        } else {
          earliest_ = std::min(earliest_, it->second.deadline);
          ++it;
        }
      }
    }
    for (PendingRecv& p : expired) {
      const int w = p.key.src_worker();  // validated when the recv was posted
      p.done(detail::timeout_error(p.key, p.timeout_s, str_cat("worker ", w, " (MPI rank ", w, ")")), Tensor());
    }
  }

  MPI_Comm hdr_comm_ = MPI_COMM_NULL;
  MPI_Comm data_comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int64_t tag_modulus_ = 32768;

  std::mutex mu_;
  std::condition_variable cv_;  // wakes the progress thread: a queued send, or stop
  std::deque<OutMsg> queued_;
  std::unordered_map<std::string, PendingRecv> pending_;
  std::unordered_map<std::string, Arrived> stash_;  // arrived before their recv
  Clock::time_point earliest_ = Clock::time_point::max();  // no pending deadline before it
  std::exception_ptr aborted_;
  bool stopping_ = false;

  // Touched by the progress thread only (and by shutdown() after joining it).
  std::vector<OutMsg> inflight_;
  std::vector<InMsg> incoming_;
  std::thread thread_;
};

}  // namespace

std::shared_ptr<Rendezvous> mpi_rendezvous() {
  static std::mutex mu;
  static std::shared_ptr<MpiRendezvous> instance;
  std::lock_guard lock(mu);
  if (!instance) {
    init();
    auto rv = std::make_shared<MpiRendezvous>();
    rv->set_timeout(default_rendezvous_timeout());
    add_pre_finalize_hook([weak = std::weak_ptr<MpiRendezvous>(rv)] {
      if (auto r = weak.lock()) r->shutdown();
    });
    instance = std::move(rv);
  }
  return instance;
}

}  // namespace ndflow::distributed
