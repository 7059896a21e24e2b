// Communicator: validation, signature checks and chunking (shared by every
// backend), the MPI backend for host tensors and the local one (a cluster of
// one). mpi.h stays in this file: libndflow's headers never include it.
#include "distributed/communicator.h"

#include <mpi.h>

#include <climits>
#include <cstring>
#include <map>

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
            ": collectives run eagerly (graph-mode collectives are not implemented yet)");
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
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 1;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
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

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
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
