// The parameter server's wire format (DESIGN.md §7): one message is a header
// frame followed by one ZeroMQ frame per tensor, so tensors travel without
// being packed into the header. Decoding trusts nothing: every length, name,
// dtype and shape is checked, and a bad message is a ValueError, never an
// out-of-bounds read or a huge allocation. Knows nothing of ZeroMQ itself.
//
//   Message m{.type = MsgType::push_dense, .table = "w", .tensors = {grad}};
//   Encoded e = encode(m);                // header bytes + payload tensors
//   Message back = decode(Frame{e.header.data(), e.header.size()}, payload_frames);
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace ndflow::ps {

// Changing the layout below means bumping kWireVersion: a peer of another
// version is refused with a message naming both versions.
inline constexpr uint32_t kWireMagic = 0x5350444e;  // "NDPS" in memory on little-endian hosts
inline constexpr uint16_t kWireVersion = 2;
inline constexpr size_t kMaxTableName = 128;
inline constexpr size_t kMaxText = 1024;           // secrets and error messages
inline constexpr size_t kMaxDims = 8;
inline constexpr size_t kMaxPayloads = 2;
inline constexpr uint32_t kMaxWorkers = 1u << 16;
inline constexpr uint64_t kMaxPayloadBytes = uint64_t(1) << 36;  // 64 GiB: beyond any sane table

enum class MsgType : uint8_t {
  hello = 1,   // worker -> server: job secret (text), worker id, incarnation
  push_dense,  // one f32 tensor: the whole table's update
  push_rows,   // i64 row ids [k] and f32 rows [k, ...]
  pull_dense,  // no tensor; reply carries the table
  pull_rows,   // i64 row ids [k]; reply carries rows [k, ...]
  clock,       // the worker finished clock `clock - 1` and is now at `clock`
  ping,        // liveness probe: the server answers at once
  reply,       // server -> worker: success, maybe one tensor; `value` = slowest clock
  error,       // server -> worker: text says what was wrong; `value` an ErrorCode
  barrier,     // answered once every live worker's clock is >= `clock`
  set_lr,      // the table's server-side optimizer takes `value` (a double's bits) as its learning rate
};
inline constexpr int kNumMsgTypes = 11;

// What an error reply's `value` says beyond its text, for the client to act on.
enum class ErrorCode : int64_t {
  other = 0,
  // The connection has no session: the server does not know this worker's
  // handshake (it was restarted). The client handshakes again and resends.
  no_session = 1,
};
NDF_EXPORT std::string_view msg_type_name(MsgType t);

struct Message {
  MsgType type = MsgType::ping;
  uint64_t request = 0;      // chosen by the client; the reply echoes it
  uint32_t worker = 0;
  uint64_t incarnation = 0;  // a restarted worker comes back with a larger one
  int64_t clock = 0;         // the sender's clock (SSP, Ho et al. 2013)
  uint64_t seq = 0;          // per (worker, incarnation) push number, for exactly-once
  int64_t value = 0;         // reply: the slowest live worker's clock when answered
  std::string table{};
  std::string text{};        // hello: the job secret; error: the reason
  std::vector<Tensor> tensors{};
};

// A message ready to send: the header frame and one contiguous tensor per
// payload frame (the caller sends their bytes without copying them).
struct Encoded {
  std::vector<char> header;
  std::vector<Tensor> payloads;
};
// Encodes `m`; throws ValueError when `m` itself breaks the rules decode checks.
NDF_EXPORT Encoded encode(const Message& m);

// One received frame. `owner` (may be null) keeps `data` alive; decoded
// tensors then alias it instead of copying when the bytes are aligned.
struct Frame {
  const void* data = nullptr;
  size_t size = 0;
  std::shared_ptr<void> owner;
};
// Decodes a header and its payload frames. Throws ValueError ("[ps.wire] ...")
// on anything malformed: the caller adds who sent it.
NDF_EXPORT Message decode(const Frame& header, std::span<const Frame> payloads);

// Table names: 1..kMaxTableName chars of [A-Za-z0-9_.:/-], so that names can
// go into logs and file names unescaped.
NDF_EXPORT bool valid_table_name(std::string_view name);

}  // namespace ndflow::ps
