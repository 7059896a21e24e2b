// Internals shared by the .ndf writer and reader (core/format_*.cc); not
// part of the public API. The rules written here (names, devices, dtypes,
// shapes) are applied on save as well as on load, so that ndflow never writes
// a file it would refuse to read. docs/ndf-format.md is the specification.
#pragma once

#include <bit>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/format.h"

namespace ndflow::ndf {

static_assert(std::endian::native == std::endian::little,
              "the .ndf data section is little-endian and mapped as is");

// ordered_json keeps the writer's key order, so headers read naturally.
using Json = nlohmann::ordered_json;

inline constexpr char kMagic[8] = {'N', 'D', 'F', 'L', 'O', 'W', '\0', '\1'};
inline constexpr uint64_t kPrefixBytes = 16;  // magic + u64 header length
inline constexpr uint64_t kAlignment = 64;    // of the data section and of every tensor
inline constexpr int64_t kFormatVersion = 1;
inline constexpr size_t kMaxRank = 64;
inline constexpr size_t kMaxNameBytes = 1024;
inline constexpr int kMaxJsonDepth = 64;
// Every field a header may have (docs/ndf-format.md §2).
inline const std::initializer_list<std::string_view> kHeaderFields = {
    "format_version", "kind", "metadata", "data_bytes", "tensors", "nodes", "inputs", "outputs"};

// Rounds up to kAlignment; the caller guarantees no overflow (v < 2^63).
inline uint64_t align_up(uint64_t v) { return (v + kAlignment - 1) / kAlignment * kAlignment; }

// Control characters in a message (from names quoted out of a bad file)
// become '?', so that every error is one printable line.
std::string one_line(std::string s);

// Throws FormatError "[ndf] <source>: <message>".
template <typename... A>
[[noreturn]] void bad(const std::string& source, const A&... a) {
  throw FormatError(one_line(str_cat("[ndf] ", source, ": ", a...)));
}

// Why a node/tensor/input/output name is unacceptable, or "" if it is fine:
// non-empty, at most kMaxNameBytes, valid UTF-8, no control characters (so
// that every error message naming it stays on one line).
std::string name_problem(std::string_view name);
// Why a string is not valid UTF-8, or "".
std::string utf8_problem(std::string_view s);
// Why a requested device is unacceptable, or "": "", "cpu", "cuda:1", or a
// cluster name "/worker:3/cpu:0".
std::string device_problem(std::string_view device);
// Canonical dtype names only ("f32", not "float32").
std::optional<DType> dtype_by_name(std::string_view name);
std::string valid_dtype_names();
// File names of attribute types ("int", "floats", ...).
std::string_view attr_type_key(AttrType t);
std::optional<AttrType> attr_type_by_key(std::string_view key);
// The number of elements of a shape whose dims are all >= 0, or nullopt when
// the product of its non-zero dims exceeds int64 (so that contiguous strides
// cannot overflow either).
std::optional<int64_t> checked_numel(std::span<const int64_t> shape);
// Short printable form of a JSON value for error messages.
std::string brief(const Json& j);

// Parses the header text: JSON with no duplicate keys, nested at most
// kMaxJsonDepth levels.
Json parse_header(const std::string& source, const char* text, size_t size);

// Typed, checked access to the members of one JSON object of the header. Every
// error names the file and where in the header the value sits, e.g.
// "[ndf] m.ndf: nodes[3] ('fc1'): field 'op' must be a string, got number 7".
class Fields {
 public:
  // Fails unless `obj` is an object whose keys are all in `allowed`.
  Fields(const std::string& source, std::string where, const Json& obj,
         std::initializer_list<std::string_view> allowed);

  const Json* optional(const char* key) const;
  const Json& required(const char* key) const;
  std::string string(const char* key) const;
  int64_t int64(const char* key) const;      // any integer that fits int64
  uint64_t uint64(const char* key) const;    // a non-negative integer
  const Json& array(const char* key) const;
  const Json& object(const char* key) const;

  const std::string& source() const { return source_; }
  const std::string& where() const { return where_; }
  void rename(std::string where) { where_ = std::move(where); }
  template <typename... A>
  [[noreturn]] void fail(const A&... a) const {
    bad(source_, where_, ": ", a...);
  }

 private:
  const std::string& source_;
  std::string where_;
  const Json& obj_;
};

// An integer JSON value as int64, or nullopt (not an integer, or out of range).
std::optional<int64_t> as_int64(const Json& j);

// ---------------------------------------------------------------- writing

// The tensor table being assembled by a writer: names, offsets and the
// contiguous CPU tensors whose bytes follow the header.
class TableBuilder {
 public:
  // Adds `t` under `name` (made unique by a "#2" suffix if taken) and returns
  // the name used. With `share`, a tensor added before (same handle) is
  // reused instead of written twice. ValueError naming `what` for tensors
  // that cannot be saved.
  std::string add(const Tensor& t, const std::string& name, bool share, const std::string& what);
  Json table() const;
  uint64_t data_bytes() const { return cursor_; }
  // Writes the whole file: prefix, header (with "data_bytes" and "tensors"
  // filled in), padding, tensor bytes.
  void write(Json header, const std::function<void(const void*, size_t)>& sink) const;

 private:
  struct Entry {
    std::string name;
    Tensor tensor;  // contiguous, CPU
    uint64_t offset, nbytes;
  };
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
  std::unordered_map<const TensorImpl*, size_t> by_impl_;
  uint64_t cursor_ = 0;
};

// The graph part of a header (nodes, inputs, outputs); Tensor attributes go
// into `table`.
void encode_graph(const Graph& g, Json& header, TableBuilder& table);
// Writes `sink`'s bytes to `path` through a temporary file and a rename.
void write_file_atomically(const std::string& path,
                           const std::function<void(const std::function<void(const void*, size_t)>&)>& body);

// ---------------------------------------------------------------- reading

// A file whose prefix and header have been checked: the header JSON, and
// the data section it describes (64-byte aligned in memory).
struct Container {
  std::string source;  // file path or "<memory>", for messages
  Json header;
  std::string kind;    // "graph" or "tensors"
  const uint8_t* data = nullptr;
  uint64_t data_bytes = 0;
  std::shared_ptr<void> owner;  // keeps `data` alive; tensors hold it
};

// `bytes` must be 64-byte aligned and kept alive by `owner`.
Container open_container(std::string source, std::shared_ptr<void> owner, const uint8_t* bytes,
                         uint64_t size);
Container open_file(const std::string& path, bool use_mmap);
Container open_bytes(std::span<const uint8_t> bytes);
// The validated tensor table, in file order, wrapping the container's bytes.
NamedTensors read_tensor_table(const Container& c);
Metadata read_metadata(const Container& c);
// Nodes, attributes, edges, inference, graph inputs/outputs, Graph::validate().
Graph read_graph(const Container& c, const NamedTensors& table, const OpRegistry& registry);

}  // namespace ndflow::ndf
