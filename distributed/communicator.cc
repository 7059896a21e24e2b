// Communicator: validation, signature checks and chunking (shared by every
// backend), the MPI backend for host tensors and the local one (a cluster of
// one). mpi.h stays in this file: libndflow's headers never include it.
#include "distributed/communicator.h"

#include <mpi.h>

#include <array>
#include <chrono>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <thread>

#include "distributed/cluster.h"

namespace ndflow::distributed {

namespace {

enum class Kind : int64_t { Allreduce = 1, AllreduceCoalesced, Broadcast, Allgather, Barrier };
constexpr int kMaxSigDims = 8;
// kind, dtype, op, root, numel, ntensors, ndim, dims[kMaxSigDims]
constexpr int kSigLen = 7 + kMaxSigDims;

const char* kind_name(int64_t k) {
  switch (static_cast<Kind>(k)) {
    case Kind::Allreduce: return "allreduce";
    case Kind::AllreduceCoalesced: return "allreduce_coalesced";
    case Kind::Broadcast: return "broadcast";
    case Kind::Allgather: return "allgather";
    case Kind::Barrier: return "barrier";
  }
  return "?";
}

std::string describe(const Tensor& t) {
  return str_cat(dtype_name(t.dtype()), shape_str(t.shape()));
}

bool supported_dtype(DType d) {
  return d == DType::f32 || d == DType::f64 || d == DType::i32 || d == DType::i64 || d == DType::u8;
}

void validate(const Communicator& c, const Tensor& t, const char* what) {
  NDF_CHECK(t.defined(), ValueError, "[", what, "] got an undefined tensor");
  NDF_CHECK(!t.is_symbolic(), ValueError, "[", what, "] got the symbolic tensor ", describe(t),
            ": these collectives work in place on data; in a traced function or graph use "
            "ndflow.distributed.functional (ops all_reduce, broadcast, all_gather that return their result)");
  NDF_CHECK(supported_dtype(t.dtype()), TypeError, "[", what, "] tensor ", describe(t), " has dtype ",
            dtype_name(t.dtype()), "; valid dtypes: f32, f64, i32, i64, u8");
  NDF_CHECK(c.supports(t.device()), ValueError, "[", what, "] tensor ", describe(t), " is on ",
            t.device().str(), ", which the '", c.backend(), "' backend does not take");
  NDF_CHECK(t.is_contiguous(), ValueError, "[", what, "] tensor ", describe(t),
            " is not contiguous (strides ", shape_str(t.strides()), "); pass t.contiguous() and copy back");
}

void check_op(ReduceOp op, DType d, const char* what, const std::string& desc) {
  NDF_CHECK(op != ReduceOp::Mean || is_floating(d), TypeError, "[", what, "] op 'mean' needs a floating ",
            "tensor (f32, f64), got ", desc, "; use 'sum' for integers");
}

std::vector<int64_t> signature(Kind kind, DType dtype, ReduceOp op, int root, int64_t numel,
                               int64_t ntensors, const Shape& shape) {
  std::vector<int64_t> s(kSigLen, 0);
  s[0] = static_cast<int64_t>(kind);
  s[1] = static_cast<int64_t>(dtype);
  s[2] = static_cast<int64_t>(op);
  s[3] = root;
  s[4] = numel;
  s[5] = ntensors;
  s[6] = static_cast<int64_t>(shape.size());
  for (size_t i = 0; i < shape.size() && i < kMaxSigDims; ++i) s[7 + i] = shape[i];
  return s;
}

std::string describe_signature(const int64_t* s) {
  auto kind = static_cast<Kind>(s[0]);
  std::string out = kind_name(s[0]);
  if (kind == Kind::Barrier) return out + "()";
  if (kind == Kind::Allreduce || kind == Kind::AllreduceCoalesced)
    out += str_cat("(", reduce_op_name(static_cast<ReduceOp>(s[2])), ")");
  if (kind == Kind::Broadcast) out += str_cat("(root=", s[3], ")");
  out += str_cat(" ", dtype_name(static_cast<DType>(s[1])));
  if (kind == Kind::AllreduceCoalesced) return out + str_cat(" ", s[5], " tensors, ", s[4], " elements");
  Shape shape;
  for (int64_t i = 0; i < s[6] && i < kMaxSigDims; ++i) shape.push_back(s[7 + i]);
  out += shape_str(shape);
  if (s[6] > kMaxSigDims) out += str_cat(" (", s[4], " elements)");
  return out;
}

void bump(const Tensor& t) {
  if (t.impl()->storage) t.impl()->storage->bump_version();
}

template <typename T>
void scale(void* data, int64_t n, double s) {
  T* p = static_cast<T*>(data);
  const T f = static_cast<T>(s);
  for (int64_t i = 0; i < n; ++i) p[i] *= f;
}

void divide_by(void* data, int64_t n, DType d, int size) {
  if (size == 1) return;
  if (d == DType::f32)
    scale<float>(data, n, 1.0 / size);
  else
    scale<double>(data, n, 1.0 / size);
}

// ------------------------------------------------------------------ MPI
MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    default: fail<TypeError>("[mpi] dtype ", dtype_name(d), " has no MPI type");
  }
}

void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) [[likely]]
    return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail<Error>("[mpi] ", call, " failed: ", std::string(msg, len));
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    NDF_CHECK(uses_mpi(), ValueError,
              "[distributed] the MPI backend needs a process launched by mpirun (this one is a cluster of one)");
    // Our own communicator: ndflow's messages never mix with the program's.
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &ctl_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(ctl_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (finalized) return;
    if (query_req_ != MPI_REQUEST_NULL) {
      MPI_Cancel(&query_req_);
      MPI_Wait(&query_req_, MPI_STATUS_IGNORE);
    }
    MPI_Comm_free(&ctl_);
    MPI_Comm_free(&comm_);
  }
  std::string_view backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool supports(Device d) const override { return d.is_cpu(); }

 protected:
  void allreduce_raw(void* data, int64_t count, DType dtype, ReduceOp op) override {
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(count), mpi_type(dtype),
                            op == ReduceOp::Max ? MPI_MAX : MPI_SUM, comm_),
              "MPI_Allreduce");
  }
  void broadcast_raw(void* data, int64_t count, DType dtype, int root) override {
    mpi_check(MPI_Bcast(data, static_cast<int>(count), mpi_type(dtype), root, comm_), "MPI_Bcast");
  }
  void allgather_raw(const void* send, void* recv, int64_t count, DType dtype) override {
    MPI_Datatype t = mpi_type(dtype);
    mpi_check(MPI_Allgather(send, static_cast<int>(count), t, recv, static_cast<int>(count), t, comm_),
              "MPI_Allgather");
  }
  void barrier_raw() override { mpi_check(MPI_Barrier(comm_), "MPI_Barrier"); }

  std::unique_ptr<Request> iallreduce_raw(void* data, int64_t count, DType dtype, ReduceOp op) override {
    auto r = std::make_unique<MpiRequest>();
    mpi_check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), mpi_type(dtype),
                             op == ReduceOp::Max ? MPI_MAX : MPI_SUM, comm_, &r->req),
              "MPI_Iallreduce");
    return r;
  }
  std::unique_ptr<Request> ibroadcast_raw(void* data, int64_t count, DType dtype, int root) override {
    auto r = std::make_unique<MpiRequest>();
    mpi_check(MPI_Ibcast(data, static_cast<int>(count), mpi_type(dtype), root, comm_, &r->req), "MPI_Ibcast");
    return r;
  }
  std::unique_ptr<Request> iallgather_raw(const void* send, void* recv, int64_t count, DType dtype) override {
    auto r = std::make_unique<MpiRequest>();
    MPI_Datatype t = mpi_type(dtype);
    mpi_check(MPI_Iallgather(send, static_cast<int>(count), t, recv, static_cast<int>(count), t, comm_, &r->req),
              "MPI_Iallgather");
    return r;
  }

  // The progress side channel: its own communicator, a query (tag 1: the
  // query's id) answered by a reply (tag 2: id, progress). Late replies to an
  // earlier query are recognized by their id and dropped.
  void serve_progress(int64_t progress) override {
    std::lock_guard lock(ctl_mu_);
    serve_locked(progress);
  }
  std::vector<int64_t> query_progress(int64_t progress, double wait_s) override {
    std::lock_guard lock(ctl_mu_);
    const int64_t id = ++query_id_;
    std::vector<int64_t> out(static_cast<size_t>(size_), -1);
    out[static_cast<size_t>(rank_)] = progress;
    std::vector<int64_t> replies(2 * static_cast<size_t>(size_), 0);
    std::vector<MPI_Request> recvs(static_cast<size_t>(size_), MPI_REQUEST_NULL);
    for (int r = 0; r < size_; ++r) {
      if (r == rank_) continue;
      MPI_Irecv(&replies[2 * static_cast<size_t>(r)], 2, MPI_INT64_T, r, kReplyTag, ctl_, &recvs[static_cast<size_t>(r)]);
      MPI_Request q;
      MPI_Isend(&query_id_, 1, MPI_INT64_T, r, kQueryTag, ctl_, &q);
      MPI_Request_free(&q);  // NOTE: query_id_ outlives it (a member); tiny sends complete eagerly
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
    int missing = size_ - 1;
    while (missing > 0 && std::chrono::steady_clock::now() < deadline) {
      serve_locked(progress);  // the others may be asking us at the same time
      for (int r = 0; r < size_; ++r) {
        MPI_Request& q = recvs[static_cast<size_t>(r)];
        if (q == MPI_REQUEST_NULL) continue;
        int flag = 0;
        MPI_Test(&q, &flag, MPI_STATUS_IGNORE);
        if (!flag) continue;
        if (replies[2 * static_cast<size_t>(r)] == id) {
          out[static_cast<size_t>(r)] = replies[2 * static_cast<size_t>(r) + 1];
          --missing;
        } else {  // an answer to an older query: wait for ours
          MPI_Irecv(&replies[2 * static_cast<size_t>(r)], 2, MPI_INT64_T, r, kReplyTag, ctl_, &q);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (MPI_Request& q : recvs) {
      if (q == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&q);
      MPI_Wait(&q, MPI_STATUS_IGNORE);
    }
    return out;
  }

 private:
  struct MpiRequest final : Request {
    MPI_Request req = MPI_REQUEST_NULL;
    bool test() override {
      if (req == MPI_REQUEST_NULL) return true;
      int flag = 0;
      mpi_check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "MPI_Test");
      return flag != 0;
    }
  };

  static constexpr int kQueryTag = 1, kReplyTag = 2;

  void serve_locked(int64_t progress) {
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (finalized) return;
    for (;;) {
      if (query_req_ == MPI_REQUEST_NULL)
        MPI_Irecv(&query_in_, 1, MPI_INT64_T, MPI_ANY_SOURCE, kQueryTag, ctl_, &query_req_);
      int flag = 0;
      MPI_Status st;
      MPI_Test(&query_req_, &flag, &st);
      if (!flag) break;
      query_req_ = MPI_REQUEST_NULL;
      replies_.push_back({query_in_, progress});
      MPI_Request q;
      MPI_Isend(replies_.back().data(), 2, MPI_INT64_T, st.MPI_SOURCE, kReplyTag, ctl_, &q);
      reply_reqs_.push_back(q);
    }
    // Drop the replies MPI is done with (in order: the deque keeps the
    // buffers of the others at their addresses).
    while (!reply_reqs_.empty()) {
      int flag = 0;
      MPI_Test(&reply_reqs_.front(), &flag, MPI_STATUS_IGNORE);
      if (!flag) break;
      reply_reqs_.pop_front();
      replies_.pop_front();
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm ctl_ = MPI_COMM_NULL;  // the progress side channel
  int rank_ = 0, size_ = 1;
  std::mutex ctl_mu_;
  MPI_Request query_req_ = MPI_REQUEST_NULL;
  int64_t query_in_ = 0;
  int64_t query_id_ = 0;
  std::deque<std::array<int64_t, 2>> replies_;
  std::deque<MPI_Request> reply_reqs_;
};

// ---------------------------------------------------------------- local
class LocalCommunicator final : public Communicator {
 public:
  std::string_view backend() const override { return "local"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  bool supports(Device) const override { return true; }

 protected:
  void allreduce_raw(void*, int64_t, DType, ReduceOp) override {}
  void broadcast_raw(void*, int64_t, DType, int) override {}
  void allgather_raw(const void* send, void* recv, int64_t count, DType dtype) override {
    if (send != recv) std::memcpy(recv, send, static_cast<size_t>(count) * dtype_size(dtype));
  }
  void barrier_raw() override {}
};

constexpr int64_t kChunk = int64_t{1} << 30;  // elements per MPI call (counts are ints)

}  // namespace

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Mean: return "mean";
    case ReduceOp::Max: return "max";
  }
  return "?";
}

ReduceOp reduce_op_from_name(std::string_view name) {
  if (name == "sum") return ReduceOp::Sum;
  if (name == "mean" || name == "avg") return ReduceOp::Mean;
  if (name == "max") return ReduceOp::Max;
  fail<ValueError>("unknown reduce op '", name, "'; valid: sum, mean, max");
}

// ------------------------------------------------------------- Communicator
void Communicator::check_same_everywhere(const std::vector<int64_t>& sig) {
  if (!check_signatures_ || size() == 1) return;
  // FNV-1a of the signature, 62 bits so that its negation cannot overflow:
  // max(h) == -max(-h) exactly when every rank has the same h.
  uint64_t h = 1469598103934665603ull;
  for (int64_t v : sig)
    for (int b = 0; b < 8; ++b) h = (h ^ ((static_cast<uint64_t>(v) >> (8 * b)) & 0xff)) * 1099511628211ull;
  int64_t hs = static_cast<int64_t>(h >> 2);
  int64_t both[2] = {hs, -hs};
  allreduce_raw(both, 2, DType::i64, ReduceOp::Max);
  if (both[0] == -both[1]) [[likely]]
    return;
  std::vector<int64_t> all(static_cast<size_t>(kSigLen) * size());
  allgather_raw(sig.data(), all.data(), kSigLen, DType::i64);
  std::string msg = str_cat("[", kind_name(sig[0]), "] the ranks issued different collectives (every rank ",
                            "must issue the same ones in the same order):");
  for (int r = 0; r < size(); ++r)
    msg += str_cat(r ? ";" : "", " rank ", r, ": ", describe_signature(&all[static_cast<size_t>(r) * kSigLen]));
  fail<ValueError>(msg);
}

void Communicator::allreduce_chunked(void* data, int64_t count, DType dtype, ReduceOp op) {
  auto* p = static_cast<std::byte*>(data);
  const size_t es = dtype_size(dtype);
  ReduceOp raw = op == ReduceOp::Max ? ReduceOp::Max : ReduceOp::Sum;
  for (int64_t start = 0; start < count; start += kChunk)
    allreduce_raw(p + start * es, std::min(kChunk, count - start), dtype, raw);
  if (op == ReduceOp::Mean) divide_by(data, count, dtype, size());
}

void Communicator::allreduce(const Tensor& t, ReduceOp op) {
  validate(*this, t, "allreduce");
  check_op(op, t.dtype(), "allreduce", describe(t));
  std::lock_guard lock(mu_);
  check_same_everywhere(signature(Kind::Allreduce, t.dtype(), op, 0, t.numel(), 1, t.shape()));
  allreduce_chunked(t.raw_data(), t.numel(), t.dtype(), op);
  bump(t);
}

void Communicator::allreduce_coalesced(const std::vector<Tensor>& tensors, ReduceOp op) {
  if (tensors.empty()) return;
  int64_t total = 0;
  for (const Tensor& t : tensors) {
    validate(*this, t, "allreduce_coalesced");
    NDF_CHECK(t.dtype() == tensors[0].dtype(), TypeError, "[allreduce_coalesced] tensors of one dtype only: ",
              "got ", describe(tensors[0]), " and ", describe(t));
    total += t.numel();
  }
  const DType dtype = tensors[0].dtype();
  check_op(op, dtype, "allreduce_coalesced", describe(tensors[0]));
  if (tensors.size() == 1) return allreduce(tensors[0], op);
  const size_t es = dtype_size(dtype);
  std::vector<std::byte> buffer(static_cast<size_t>(total) * es);
  size_t at = 0;
  for (const Tensor& t : tensors) {
    std::memcpy(buffer.data() + at, t.raw_data(), t.nbytes());
    at += t.nbytes();
  }
  {
    std::lock_guard lock(mu_);
    check_same_everywhere(signature(Kind::AllreduceCoalesced, dtype, op, 0, total,
                                    static_cast<int64_t>(tensors.size()), {}));
    allreduce_chunked(buffer.data(), total, dtype, op);
  }
  at = 0;
  for (const Tensor& t : tensors) {
    std::memcpy(t.raw_data(), buffer.data() + at, t.nbytes());
    at += t.nbytes();
    bump(t);
  }
}

void Communicator::broadcast(const Tensor& t, int root) {
  validate(*this, t, "broadcast");
  NDF_CHECK(root >= 0 && root < size(), IndexError, "[broadcast] root ", root, " is not a rank of this ",
            size(), "-rank world (tensor ", describe(t), ")");
  std::lock_guard lock(mu_);
  check_same_everywhere(signature(Kind::Broadcast, t.dtype(), ReduceOp::Sum, root, t.numel(), 1, t.shape()));
  auto* p = static_cast<std::byte*>(t.raw_data());
  const size_t es = dtype_size(t.dtype());
  for (int64_t start = 0; start < t.numel(); start += kChunk)
    broadcast_raw(p + start * es, std::min(kChunk, t.numel() - start), t.dtype(), root);
  bump(t);
}

Tensor Communicator::allgather(const Tensor& t) {
  validate(*this, t, "allgather");
  NDF_CHECK(t.numel() <= INT_MAX, ValueError, "[allgather] tensor ", describe(t),
            " has more than 2^31-1 elements; gather it in slices");
  Shape shape = t.shape();
  shape.insert(0, size());
  Tensor out = Tensor::empty(shape, t.dtype(), t.device());
  std::lock_guard lock(mu_);
  check_same_everywhere(signature(Kind::Allgather, t.dtype(), ReduceOp::Sum, 0, t.numel(), 1, t.shape()));
  allgather_raw(t.raw_data(), out.raw_data(), t.numel(), t.dtype());
  return out;
}

// ------------------------------------------------- nonblocking (graph) entry points
namespace {

struct DoneRequest final : Communicator::Request {
  bool test() override { return true; }
};

// Divides by the world size once the sum is complete (Mean).
struct MeanRequest final : Communicator::Request {
  std::unique_ptr<Communicator::Request> inner;
  void* data;
  int64_t count;
  DType dtype;
  int size;
  bool done = false;
  bool test() override {
    if (done) return true;
    if (!inner->test()) return false;
    divide_by(data, count, dtype, size);
    return done = true;
  }
};

void check_count(int64_t count, const char* what) {
  NDF_CHECK(count >= 0 && count <= INT_MAX, ValueError, "[", what, "] ", count,
            " elements in one graph collective; at most 2^31-1 (split the tensor or the bucket)");
}

}  // namespace

std::unique_ptr<Communicator::Request> Communicator::iallreduce_raw(void* data, int64_t count, DType dtype,
                                                                    ReduceOp op) {
  allreduce_raw(data, count, dtype, op);
  return std::make_unique<DoneRequest>();
}
std::unique_ptr<Communicator::Request> Communicator::ibroadcast_raw(void* data, int64_t count, DType dtype,
                                                                    int root) {
  broadcast_raw(data, count, dtype, root);
  return std::make_unique<DoneRequest>();
}
std::unique_ptr<Communicator::Request> Communicator::iallgather_raw(const void* send, void* recv, int64_t count,
                                                                    DType dtype) {
  allgather_raw(send, recv, count, dtype);
  return std::make_unique<DoneRequest>();
}

std::unique_ptr<Communicator::Request> Communicator::start_allreduce(void* data, int64_t count, DType dtype,
                                                                     ReduceOp op) {
  check_count(count, "all_reduce");
  check_op(op, dtype, "all_reduce", std::string(dtype_name(dtype)));
  std::unique_ptr<Request> r;
  {
    std::lock_guard lock(mu_);
    r = iallreduce_raw(data, count, dtype, op == ReduceOp::Max ? ReduceOp::Max : ReduceOp::Sum);
  }
  if (op != ReduceOp::Mean || size() == 1) return r;
  auto m = std::make_unique<MeanRequest>();
  m->inner = std::move(r);
  m->data = data;
  m->count = count;
  m->dtype = dtype;
  m->size = size();
  return m;
}

void Communicator::allreduce_unchecked(void* data, int64_t count, DType dtype, ReduceOp op) {
  check_count(count, "all_reduce");
  check_op(op, dtype, "all_reduce", std::string(dtype_name(dtype)));
  {
    std::lock_guard lock(mu_);
    allreduce_raw(data, count, dtype, op == ReduceOp::Max ? ReduceOp::Max : ReduceOp::Sum);
  }
  if (op == ReduceOp::Mean) divide_by(data, count, dtype, size());
}

void Communicator::broadcast_unchecked(void* data, int64_t count, DType dtype, int root) {
  check_count(count, "broadcast");
  NDF_CHECK(root >= 0 && root < size(), IndexError, "[broadcast] root ", root, " is not a rank of this ",
            size(), "-rank world");
  std::lock_guard lock(mu_);
  broadcast_raw(data, count, dtype, root);
}

void Communicator::allgather_unchecked(const void* send, void* recv, int64_t count, DType dtype) {
  check_count(count, "all_gather");
  std::lock_guard lock(mu_);
  allgather_raw(send, recv, count, dtype);
}

std::unique_ptr<Communicator::Request> Communicator::start_broadcast(void* data, int64_t count, DType dtype,
                                                                     int root) {
  check_count(count, "broadcast");
  NDF_CHECK(root >= 0 && root < size(), IndexError, "[broadcast] root ", root, " is not a rank of this ",
            size(), "-rank world");
  std::lock_guard lock(mu_);
  return ibroadcast_raw(data, count, dtype, root);
}

std::unique_ptr<Communicator::Request> Communicator::start_allgather(const void* send, void* recv, int64_t count,
                                                                     DType dtype) {
  check_count(count, "all_gather");
  std::lock_guard lock(mu_);
  return iallgather_raw(send, recv, count, dtype);
}

void Communicator::barrier() {
  std::lock_guard lock(mu_);
  check_same_everywhere(signature(Kind::Barrier, DType::f32, ReduceOp::Sum, 0, 0, 0, {}));
  barrier_raw();
}

// -------------------------------------------------------------- backends
namespace {

struct Registry {
  std::mutex mu;
  std::map<DeviceType, CommunicatorFactory> factories;
  std::map<DeviceType, std::unique_ptr<Communicator>> instances;
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator() { return std::make_unique<MpiCommunicator>(); }
std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

void register_backend(DeviceType type, CommunicatorFactory factory) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  r.factories[type] = std::move(factory);
  r.instances.erase(type);
}

Communicator& world(Device device) {
  init();
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  auto it = r.instances.find(device.type);
  if (it != r.instances.end()) return *it->second;
  std::unique_ptr<Communicator> c;
  if (auto f = r.factories.find(device.type); f != r.factories.end()) {
    c = f->second();
  } else if (device.is_cpu()) {
    c = uses_mpi() ? make_mpi_communicator() : make_local_communicator();
  } else if (!uses_mpi()) {
    c = make_local_communicator();  // a cluster of one needs no transport
  } else {
    fail<NotFoundError>("[distributed] no communicator backend for ", device.str(),
                        " tensors (NCCL comes with the CUDA build); copy them to the cpu first");
  }
  return *r.instances.emplace(device.type, std::move(c)).first->second;
}

}  // namespace ndflow::distributed
