// The header of an MPI rendezvous message (rendezvous_mpi.cc): a fixed part,
// the dims and the full key. Decoding trusts nothing: a peer running another
// version, or corrupted bytes, become a ValueError naming the sender, never
// an out-of-bounds read or a huge allocation.
#include <cstring>

#include "distributed/rendezvous_internal.h"

namespace ndflow::distributed::detail {

namespace {

constexpr uint32_t kMagic = 0x5246444e;  // "NDFR" in memory on little-endian hosts
constexpr uint16_t kVersion = 1;

// NOTE: raw host-order integers; ranks of one job share an architecture. A
// byte-swapped peer shows up as a bad magic, not as garbage dims.
struct WireFixed {
  uint32_t magic;
  uint16_t version;
  uint8_t dtype;
  uint8_t ndim;
  uint32_t key_len;
  uint32_t reserved;
  uint64_t payload_bytes;
};
static_assert(sizeof(WireFixed) == kWireFixedBytes);

}  // namespace

std::vector<char> encode_header(const std::string& key, DType dtype, const Shape& shape, uint64_t payload_bytes) {
  NDF_CHECK(shape.size() <= kWireMaxDims && !key.empty() && key.size() <= kWireMaxKeyBytes, InternalError,
            "[rendezvous.mpi] header for '", key, "' ", meta_str(dtype, shape), " exceeds the wire limits");
  WireFixed f{kMagic, kVersion, static_cast<uint8_t>(dtype), static_cast<uint8_t>(shape.size()),
              static_cast<uint32_t>(key.size()), 0, payload_bytes};
  const size_t dims_bytes = shape.size() * sizeof(int64_t);
  std::vector<char> out(sizeof f + dims_bytes + key.size());
  std::memcpy(out.data(), &f, sizeof f);
  if (dims_bytes) std::memcpy(out.data() + sizeof f, shape.data(), dims_bytes);
  std::memcpy(out.data() + sizeof f + dims_bytes, key.data(), key.size());
  return out;
}

WireHeader decode_header(const std::vector<char>& buf, int source) {
  auto bad = [&](const auto&... what) {
    fail<ValueError>("[rendezvous.mpi] malformed header from rank ", source, ": ", what...,
                     " (is that rank running another ndflow version?)");
  };
  if (buf.size() < sizeof(WireFixed)) bad(buf.size(), " bytes, shorter than the fixed part");
  WireFixed f;
  std::memcpy(&f, buf.data(), sizeof f);
  if (f.magic != kMagic) bad("bad magic ", f.magic);
  if (f.version != kVersion) bad("wire version ", f.version, ", this rank speaks ", kVersion);
  if (f.dtype >= kNumDTypes) bad("dtype code ", int(f.dtype));
  if (f.ndim > kWireMaxDims) bad(int(f.ndim), " dims (at most ", kWireMaxDims, ")");
  if (f.key_len == 0 || f.key_len > kWireMaxKeyBytes) bad("key of ", f.key_len, " bytes");
  const size_t dims_bytes = f.ndim * sizeof(int64_t);
  if (buf.size() != sizeof f + dims_bytes + f.key_len)
    bad(buf.size(), " bytes where ndim ", int(f.ndim), " and key length ", f.key_len, " imply another size");
  WireHeader h;
  h.dtype = static_cast<DType>(f.dtype);
  h.shape.resize(f.ndim);
  if (dims_bytes) std::memcpy(h.shape.data(), buf.data() + sizeof f, dims_bytes);
  h.key.assign(buf.data() + sizeof f + dims_bytes, f.key_len);
  for (int64_t d : h.shape)
    if (d < 0) bad("negative dim in ", shape_str(h.shape), " for '", h.key, "'");
  int64_t n = 0;
  try {
    n = shape_numel(h.shape);
  } catch (const Error&) {
    bad("shape ", shape_str(h.shape), " for '", h.key, "' overflows");
  }
  const uint64_t es = dtype_size(h.dtype);
  if (static_cast<uint64_t>(n) > (uint64_t(1) << 62) / es || f.payload_bytes != static_cast<uint64_t>(n) * es)
    bad("payload of ", f.payload_bytes, " bytes for ", meta_str(h.dtype, h.shape), " '", h.key, "'");
  h.payload_bytes = f.payload_bytes;
  return h;
}

uint64_t key_hash(std::string_view key) {
  // FNV-1a: std::hash may differ between processes and builds.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::pair<std::string_view, std::string_view> key_devices(std::string_view key) {
  size_t a = key.find(';');
  size_t b = a == std::string_view::npos ? a : key.find(';', a + 1);
  if (b == std::string_view::npos) return {{}, {}};
  return {key.substr(0, a), key.substr(a + 1, b - a - 1)};
}

}  // namespace ndflow::distributed::detail
