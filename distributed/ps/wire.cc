// Encoding and checked decoding of parameter-server messages (wire.h).
#include "distributed/ps/wire.h"

#include <cstring>

namespace ndflow::ps {

namespace {

// NOTE: raw host-order integers, like the MPI rendezvous: servers and workers
// of one job share an architecture, and a byte-swapped peer shows up as a bad
// magic rather than as garbage lengths.
struct Fixed {
  uint32_t magic;
  uint16_t version;
  uint8_t type;
  uint8_t num_payloads;
  uint32_t body_bytes;  // the length prefix: bytes of this frame after Fixed
};
static_assert(sizeof(Fixed) == 12);

[[noreturn]] void bad(const auto&... what) { fail<ValueError>("[ps.wire] malformed message: ", what...); }

class Writer {
 public:
  template <typename T>
  void put(T v) {
    const char* p = reinterpret_cast<const char*>(&v);
    out_.insert(out_.end(), p, p + sizeof v);
  }
  void put_str(std::string_view s) {
    put(static_cast<uint16_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  std::vector<char>& bytes() { return out_; }

 private:
  std::vector<char> out_;
};

class Reader {
 public:
  Reader(const char* p, size_t n) : p_(p), n_(n) {}
  template <typename T>
  T get(const char* what) {
    if (n_ - pos_ < sizeof(T)) bad("truncated at ", what, " (", n_, " bytes)");
    T v;
    std::memcpy(&v, p_ + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string get_str(const char* what, size_t max) {
    const auto len = get<uint16_t>(what);
    if (len > max) bad(what, " of ", len, " bytes (at most ", max, ")");
    if (n_ - pos_ < len) bad("truncated inside ", what);
    std::string s(p_ + pos_, len);
    pos_ += len;
    return s;
  }
  size_t left() const { return n_ - pos_; }

 private:
  const char* p_;
  size_t n_;
  size_t pos_ = 0;
};

struct Meta {
  DType dtype;
  Shape shape;
  uint64_t bytes;
};

// What each message type must carry; checked on both ends so that a bad
// message is caught by the sender's encode() before it reaches the network.
void check_rules(MsgType type, const std::string& table, const std::string& text,
                 std::span<const Meta> metas, uint32_t worker, int64_t clock) {
  const auto name = msg_type_name(type);
  auto need_table = [&] {
    if (!valid_table_name(table))
      bad(name, " names table '", table.substr(0, kMaxTableName),
          "': a table name is 1..", kMaxTableName, " characters of [A-Za-z0-9_.:/-]");
  };
  auto need_payloads = [&](size_t lo, size_t hi) {
    if (metas.size() < lo || metas.size() > hi)
      bad(name, " carries ", metas.size(), " tensors (expected ", lo, lo == hi ? "" : str_cat("..", hi), ")");
  };
  auto row_ids = [&](const Meta& m) {
    if (m.dtype != DType::i64 || m.shape.size() != 1)
      bad(name, " row ids must be a 1-d i64 tensor, got ", dtype_name(m.dtype), shape_str(m.shape));
  };
  if (worker >= kMaxWorkers) bad(name, " from worker ", worker, " (at most ", kMaxWorkers, " workers)");
  if (clock < 0) bad(name, " at negative clock ", clock);
  switch (type) {
    case MsgType::hello:
      need_payloads(0, 0);
      if (text.empty()) bad("hello without the job secret");
      break;
    case MsgType::push_dense:
      need_table();
      need_payloads(1, 1);
      if (metas[0].dtype != DType::f32)
        bad(name, " of table '", table, "' has dtype ", dtype_name(metas[0].dtype), ", tables are f32");
      break;
    case MsgType::push_rows:
      need_table();
      need_payloads(2, 2);
      row_ids(metas[0]);
      if (metas[1].dtype != DType::f32 || metas[1].shape.empty() || metas[1].shape[0] != metas[0].shape[0])
        bad(name, " of table '", table, "': rows ", dtype_name(metas[1].dtype), shape_str(metas[1].shape),
            " do not match ", metas[0].shape[0], " row ids (expected f32 [", metas[0].shape[0], ", ...])");
      break;
    case MsgType::pull_dense:
      need_table();
      need_payloads(0, 0);
      break;
    case MsgType::pull_rows:
      need_table();
      need_payloads(1, 1);
      row_ids(metas[0]);
      break;
    case MsgType::clock:
      need_payloads(0, 0);
      if (clock < 1) bad("clock message with clock ", clock, " (a worker's first clock() moves it to 1)");
      break;
    case MsgType::ping:
    case MsgType::barrier:
      need_payloads(0, 0);
      break;
    case MsgType::set_lr:
      need_table();
      need_payloads(0, 0);
      break;
    case MsgType::reply:
      need_payloads(0, 1);
      break;
    case MsgType::error:
      need_payloads(0, 0);
      if (text.empty()) bad("error message without a reason");
      break;
  }
}

Meta checked_meta(DType dtype, const Shape& shape) {
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) bad("negative dimension in ", shape_str(shape));
    // Overflow-safe: stop as soon as the byte count passes the limit.
    if (d != 0 && numel > kMaxPayloadBytes / static_cast<uint64_t>(d))
      bad("tensor of shape ", shape_str(shape), " is too large");
    numel *= static_cast<uint64_t>(d);
  }
  const uint64_t bytes = numel * dtype_size(dtype);
  if (bytes > kMaxPayloadBytes) bad("tensor of shape ", shape_str(shape), " exceeds ", kMaxPayloadBytes, " bytes");
  return {dtype, shape, bytes};
}

}  // namespace

std::string_view msg_type_name(MsgType t) {
  switch (t) {
    case MsgType::hello: return "hello";
    case MsgType::push_dense: return "push_dense";
    case MsgType::push_rows: return "push_rows";
    case MsgType::pull_dense: return "pull_dense";
    case MsgType::pull_rows: return "pull_rows";
    case MsgType::clock: return "clock";
    case MsgType::ping: return "ping";
    case MsgType::reply: return "reply";
    case MsgType::error: return "error";
    case MsgType::barrier: return "barrier";
    case MsgType::set_lr: return "set_lr";
  }
  return "unknown";
}

bool valid_table_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxTableName) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == ':' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Encoded encode(const Message& m) {
  if (m.tensors.size() > kMaxPayloads) bad(msg_type_name(m.type), " with ", m.tensors.size(), " tensors");
  if (m.table.size() > kMaxTableName) bad("table name of ", m.table.size(), " bytes");
  if (m.text.size() > kMaxText) bad("text of ", m.text.size(), " bytes (at most ", kMaxText, ")");
  Encoded e;
  std::vector<Meta> metas;
  for (const Tensor& t : m.tensors) {
    NDF_CHECK(t.defined() && !t.is_symbolic() && t.device().is_cpu(), ValueError,
              "[ps.wire] ", msg_type_name(m.type), " of table '", m.table, "': tensors must be eager CPU tensors");
    if (t.rank() > static_cast<int64_t>(kMaxDims)) bad("tensor of rank ", t.rank(), " (at most ", kMaxDims, ")");
    metas.push_back(checked_meta(t.dtype(), t.shape()));
    e.payloads.push_back(t.is_contiguous() ? t : t.contiguous());
  }
  check_rules(m.type, m.table, m.text, metas, m.worker, m.clock);

  Writer w;
  w.put(Fixed{kWireMagic, kWireVersion, static_cast<uint8_t>(m.type), static_cast<uint8_t>(m.tensors.size()), 0});
  w.put(m.request);
  w.put(m.worker);
  w.put(m.incarnation);
  w.put(m.clock);
  w.put(m.seq);
  w.put(m.value);
  w.put_str(m.table);
  w.put_str(m.text);
  for (const Meta& meta : metas) {
    w.put(static_cast<uint8_t>(meta.dtype));
    w.put(static_cast<uint8_t>(meta.shape.size()));
    for (int64_t d : meta.shape) w.put(d);
  }
  e.header = std::move(w.bytes());
  const auto body = static_cast<uint32_t>(e.header.size() - sizeof(Fixed));
  std::memcpy(e.header.data() + offsetof(Fixed, body_bytes), &body, sizeof body);
  return e;
}

Message decode(const Frame& header, std::span<const Frame> payloads) {
  if (header.size < sizeof(Fixed)) bad(header.size, " header bytes, shorter than the fixed part (", sizeof(Fixed), ")");
  Fixed f;
  std::memcpy(&f, header.data, sizeof f);
  if (f.magic != kWireMagic) bad("bad magic 0x", std::hex, f.magic, " (not an ndflow parameter-server peer?)");
  if (f.version != kWireVersion)
    bad("wire version ", f.version, ", this process speaks ", kWireVersion, " (mixed ndflow versions in one job?)");
  if (f.type < 1 || f.type > kNumMsgTypes) bad("unknown message type ", int(f.type));
  if (f.body_bytes != header.size - sizeof(Fixed))
    bad("length prefix says ", f.body_bytes, " bytes but the header frame has ", header.size - sizeof(Fixed));
  if (f.num_payloads > kMaxPayloads) bad(int(f.num_payloads), " tensors (at most ", kMaxPayloads, ")");
  if (f.num_payloads != payloads.size())
    bad("header announces ", int(f.num_payloads), " tensor frames, ", payloads.size(), " arrived");

  Message m;
  m.type = static_cast<MsgType>(f.type);
  Reader r(static_cast<const char*>(header.data) + sizeof f, f.body_bytes);
  m.request = r.get<uint64_t>("request");
  m.worker = r.get<uint32_t>("worker");
  m.incarnation = r.get<uint64_t>("incarnation");
  m.clock = r.get<int64_t>("clock");
  m.seq = r.get<uint64_t>("seq");
  m.value = r.get<int64_t>("value");
  m.table = r.get_str("table name", kMaxTableName);
  m.text = r.get_str("text", kMaxText);
  std::vector<Meta> metas;
  for (size_t i = 0; i < f.num_payloads; ++i) {
    const auto code = r.get<uint8_t>("dtype");
    if (code >= kNumDTypes) bad("dtype code ", int(code), " for tensor ", i);
    const auto ndim = r.get<uint8_t>("rank");
    if (ndim > kMaxDims) bad("tensor ", i, " of rank ", int(ndim), " (at most ", kMaxDims, ")");
    Shape shape(ndim);
    for (size_t d = 0; d < ndim; ++d) shape[d] = r.get<int64_t>("dimension");
    metas.push_back(checked_meta(static_cast<DType>(code), shape));
    if (payloads[i].size != metas.back().bytes)
      bad("tensor ", i, " ", dtype_name(metas.back().dtype), shape_str(shape), " needs ", metas.back().bytes,
          " bytes, its frame has ", payloads[i].size);
  }
  if (r.left() != 0) bad(r.left(), " stray bytes after the header fields");
  check_rules(m.type, m.table, m.text, metas, m.worker, m.clock);

  for (size_t i = 0; i < metas.size(); ++i) {
    const Meta& meta = metas[i];
    const Frame& p = payloads[i];
    const auto addr = reinterpret_cast<uintptr_t>(p.data);
    if (p.owner && meta.bytes > 0 && addr % dtype_size(meta.dtype) == 0) {
      // Zero copy: the tensor keeps the received frame alive.
      m.tensors.push_back(Tensor::from_blob(const_cast<void*>(p.data), meta.shape, contiguous_strides(meta.shape),
                                            meta.dtype, Device::cpu(), p.owner));
    } else {
      // NOTE: small frames live inside zmq's message struct at an arbitrary
      // offset; a misaligned float read is UB, so those are copied.
      Tensor t = Tensor::empty(meta.shape, meta.dtype);
      if (meta.bytes) std::memcpy(t.raw_data(), p.data, meta.bytes);
      m.tensors.push_back(std::move(t));
    }
  }
  return m;
}

}  // namespace ndflow::ps
