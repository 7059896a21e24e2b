// Pieces shared by the in-process rendezvous (rendezvous.cc) and the MPI one
// (rendezvous_mpi.cc): key parsing, the dtype/shape check of a delivered
// tensor, the contiguous copy, the error texts and the MPI wire format
// (rendezvous_wire.cc, no MPI needed to test it). Private to libndflow.
#pragma once

#include <chrono>
#include <exception>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "distributed/rendezvous.h"

namespace ndflow::distributed::detail {

using Clock = std::chrono::steady_clock;

// The worker index in a device name ("/worker:3/cpu:0" -> 3); 0 when the
// name carries no worker ("cpu:0"). ValueError on a malformed index.
int worker_of(std::string_view device);

// "f32[4,8]".
std::string meta_str(DType dtype, const Shape& shape);

// Null when the sent tensor is what the recv expects, else a TypeError or
// ShapeError naming the key and both dtype/shape pairs.
std::exception_ptr check_meta(const std::string& key, DType sent, const Shape& sent_shape, DType want,
                              const Shape& want_shape);

// Throws unless `value` can travel: defined, eager, on the CPU.
void check_sendable(const char* who, const RendezvousKey& key, const Tensor& value);

// A fresh contiguous CPU tensor with the elements of `value` (any strides).
// Byte copies only: no op, so no autograd or graph-mode tracing is involved.
Tensor contiguous_copy(const Tensor& value);

// When a recv issued now with `timeout_s` gives up; time_point::max() for a
// non-positive or non-finite timeout (wait forever).
Clock::time_point deadline_after(double timeout_s);

// The TimeoutError of a recv that waited `timeout_s` for `key`; `peer`
// describes where it was expected from ("worker 1 (MPI rank 1)").
std::exception_ptr timeout_error(const RendezvousKey& key, double timeout_s, const std::string& peer);

// ----------------------------------------------- MPI wire format
// The header that precedes every MPI rendezvous message (rendezvous_wire.cc).
struct WireHeader {
  std::string key;  // RendezvousKey::str()
  DType dtype = DType::f32;
  Shape shape;
  uint64_t payload_bytes = 0;
};
inline constexpr size_t kWireFixedBytes = 24;
inline constexpr int kWireMaxDims = 32;
inline constexpr uint32_t kWireMaxKeyBytes = 16384;
inline constexpr size_t kWireMaxHeaderBytes = kWireFixedBytes + kWireMaxDims * sizeof(int64_t) + kWireMaxKeyBytes;

std::vector<char> encode_header(const std::string& key, DType dtype, const Shape& shape, uint64_t payload_bytes);
// Validates every field (magic, version, dtype, lengths, dims, payload size
// against dtype and shape); ValueError naming `source` (a rank) otherwise.
WireHeader decode_header(const std::vector<char>& bytes, int source);
// A hash of the key that is the same in every process and build (FNV-1a).
uint64_t key_hash(std::string_view key);
// The device names at the front of a key string "src;dst;edge;step"; both
// empty when it has fewer parts.
std::pair<std::string_view, std::string_view> key_devices(std::string_view key);

}  // namespace ndflow::distributed::detail
