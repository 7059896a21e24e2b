// libFuzzer target for the .ndf loader (core/format_*.cc).
//
//   CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DNDFLOW_FUZZ=ON \
//       -DNDFLOW_BUILD_TESTS=OFF -DNDFLOW_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
//   ninja -C build-fuzz ndf_fuzz
//   build-fuzz/tests/fuzz/ndf_fuzz -dict=tests/fuzz/ndf.dict -max_total_time=600 \
//       corpus/ tests/fuzz/corpus tests/data/bad_ndf
//
// Properties checked: every input either loads or throws ndflow::ValueError
// (FormatError) — any other exception, crash, leak or sanitizer report is a
// finding; and a graph that loads can be saved and loaded again.
//
// An input starting with '{' is taken as a header: the harness frames it
// (magic, length, padding) and appends the bytes after its first NUL as the
// data section, so mutations explore the JSON semantics instead of being
// stopped at the length field.
#include <cstring>
#include <string>

#include "core/format.h"

namespace {

std::string frame(const uint8_t* data, size_t size) {
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  size_t header = nul ? static_cast<size_t>(nul - data) : size;
  std::string out("NDFLOW\0\1", 8);
  for (int i = 0; i < 8; ++i) out += static_cast<char>((uint64_t{header} >> (8 * i)) & 0xff);
  out.append(reinterpret_cast<const char*>(data), header);
  out.append((64 - out.size() % 64) % 64, '\0');
  if (nul) out.append(reinterpret_cast<const char*>(nul + 1), size - header - 1);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string framed;
  std::span<const uint8_t> bytes(data, size);
  if (size > 0 && data[0] == '{') {
    framed = frame(data, size);
    bytes = std::span(reinterpret_cast<const uint8_t*>(framed.data()), framed.size());
  }
  try {
    ndflow::Graph g = ndflow::parse_graph(bytes);
    std::string again = ndflow::serialize_graph(g);
    ndflow::parse_graph(std::span(reinterpret_cast<const uint8_t*>(again.data()), again.size()));
  } catch (const ndflow::ValueError&) {
  }
  try {
    ndflow::Checkpoint c = ndflow::parse_tensors(bytes);
    // Touch every element, so a tensor that points outside its bytes is caught.
    for (const auto& [name, t] : c.tensors)
      if (t.numel() > 0) {
        volatile uint8_t sink = 0;
        const auto* p = static_cast<const uint8_t*>(t.raw_data());
        for (size_t k = 0; k < t.nbytes(); ++k) sink = sink ^ p[k];
      }
  } catch (const ndflow::ValueError&) {
  }
  return 0;
}
