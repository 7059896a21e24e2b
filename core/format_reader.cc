// Reading .ndf files: mapping or reading the bytes, checking the prefix and
// header, and validating the tensor table. The graph part is in
// format_graph.cc. Nothing in the file is trusted: every check happens before
// the value it guards is used, and every failure is a FormatError.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <unordered_set>

#include "core/format_internal.h"

namespace ndflow {
namespace ndf {

namespace {

// A private, writable mapping: loaded Variables can be updated in place
// (copy-on-write) without ever writing to the file.
struct Mapping {
  void* addr;
  size_t size;
  Mapping(void* a, size_t n) : addr(a), size(n) {}
  ~Mapping() { ::munmap(addr, size); }
  Mapping(const Mapping&) = delete;  // one owner unmaps, once
  Mapping& operator=(const Mapping&) = delete;
};

// A heap copy aligned like a mapping, for files read without mmap and for
// bytes handed over in memory.
struct AlignedBuffer {
  uint8_t* data;
  explicit AlignedBuffer(size_t n) : data(static_cast<uint8_t*>(::operator new(n, std::align_val_t(kAlignment)))) {}
  ~AlignedBuffer() { ::operator delete(data, std::align_val_t(kAlignment)); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

std::shared_ptr<AlignedBuffer> allocate(const std::string& source, uint64_t size) {
  try {
    return std::make_shared<AlignedBuffer>(size);
  } catch (const std::bad_alloc&) {
    bad(source, "cannot allocate ", size, " bytes to read the file");
  }
}

struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

}  // namespace

Container open_container(std::string source, std::shared_ptr<void> owner, const uint8_t* bytes, uint64_t size) {
  if (size < kPrefixBytes)
    bad(source, "file is too short (", size, " bytes) to be an .ndf file (it needs at least ", kPrefixBytes, ")");
  if (std::memcmp(bytes, kMagic, 6) != 0 || bytes[6] != 0)
    bad(source, "not an .ndf file (bad magic; expected \"NDFLOW\\0\" followed by the version byte)");
  if (bytes[7] != static_cast<uint8_t>(kMagic[7]))
    bad(source, "unsupported container version ", int(bytes[7]), " (this build reads version ", int(kMagic[7]), ")");
  uint64_t header_bytes = 0;
  for (int i = 0; i < 8; ++i) header_bytes |= uint64_t{bytes[8 + i]} << (8 * i);
  if (header_bytes > size - kPrefixBytes)
    bad(source, "header length ", header_bytes, " runs past the end of the file (", size, " bytes)");
  Container c;
  c.source = std::move(source);
  c.owner = std::move(owner);
  c.header = parse_header(c.source, reinterpret_cast<const char*>(bytes) + kPrefixBytes, header_bytes);
  Fields top(c.source, "header", c.header,
             kHeaderFields);
  int64_t version = top.int64("format_version");
  if (version != kFormatVersion)
    top.fail("unsupported format_version ", version, " (this build reads ", kFormatVersion, ")");
  c.kind = top.string("kind");
  if (c.kind != "graph" && c.kind != "tensors") top.fail("kind must be \"graph\" or \"tensors\", got \"", c.kind, "\"");
  if (c.kind == "tensors")
    for (const char* k : {"nodes", "inputs", "outputs"})
      if (top.optional(k)) top.fail("field '", k, "' belongs to graph files, but kind is \"tensors\"");
  c.data_bytes = top.uint64("data_bytes");
  // header_bytes <= size here, so neither sum can overflow.
  uint64_t data_start = align_up(kPrefixBytes + header_bytes);
  if (data_start > size || c.data_bytes != size - data_start)
    top.fail("data_bytes is ", c.data_bytes, " but the file has ", size > data_start ? size - data_start : 0,
             " bytes after the header (file size ", size, ", data section at ", data_start,
             "); the file is truncated or has trailing bytes");
  c.data = bytes + data_start;
  return c;
}

Container open_file(const std::string& path, bool use_mmap) {
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) bad(path, "cannot open: ", std::strerror(errno));
  Fd fd{raw};
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) bad(path, "cannot stat: ", std::strerror(errno));
  if (!S_ISREG(st.st_mode)) bad(path, "not a regular file");
  auto size = static_cast<uint64_t>(st.st_size);
  if (size < kPrefixBytes)  // also keeps mmap away from empty files
    bad(path, "file is too short (", size, " bytes) to be an .ndf file (it needs at least ", kPrefixBytes, ")");
  if (use_mmap) {
    // NOTE: a mapping sees later changes to the file; truncating a file while
    // tensors still map it makes reads fault (SIGBUS). Save with save_* (which
    // renames a new file into place) rather than rewriting files in place.
    void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.fd, 0);
    if (addr != MAP_FAILED) {
      auto owner = std::make_shared<Mapping>(addr, size);
      return open_container(path, owner, static_cast<const uint8_t*>(addr), size);
    }
    // Some file systems cannot map; reading is always possible.
  }
  auto buf = allocate(path, size);
  uint64_t done = 0;
  while (done < size) {
    ssize_t r = ::pread(fd.fd, buf->data + done, size - done, static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) bad(path, "cannot read: ", std::strerror(errno));
    if (r == 0) bad(path, "file shrank while being read (", done, " of ", size, " bytes)");
    done += static_cast<uint64_t>(r);
  }
  return open_container(path, buf, buf->data, size);
}

Container open_bytes(std::span<const uint8_t> bytes) {
  const std::string source = "<memory>";
  if (bytes.size() < kPrefixBytes)
    bad(source, "file is too short (", bytes.size(), " bytes) to be an .ndf file (it needs at least ",
        kPrefixBytes, ")");
  auto buf = allocate(source, bytes.size());
  std::memcpy(buf->data, bytes.data(), bytes.size());
  return open_container(source, buf, buf->data, bytes.size());
}

Metadata read_metadata(const Container& c) {
  Metadata m;
  auto it = c.header.find("metadata");
  if (it == c.header.end()) return m;
  if (!it->is_object()) bad(c.source, "header: field 'metadata' must be an object, got ", brief(*it));
  for (const auto& [k, v] : it->items()) {
    std::string p = name_problem(k);
    if (!p.empty()) bad(c.source, "metadata: a key ", p);
    if (!v.is_string()) bad(c.source, "metadata '", k, "' must be a string, got ", brief(v));
    m.emplace(k, v.get<std::string>());
  }
  return m;
}

NamedTensors read_tensor_table(const Container& c) {
  const Json& arr = Fields(c.source, "header", c.header, kHeaderFields)
                        .array("tensors");
  struct Range {
    uint64_t offset, nbytes;
    size_t index;
  };
  std::vector<Range> ranges;
  std::unordered_set<std::string> names;
  NamedTensors out;
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    Fields f(c.source, str_cat("tensors[", i, "]"), arr[i], {"name", "dtype", "shape", "offset", "nbytes"});
    std::string name = f.string("name");
    if (std::string p = name_problem(name); !p.empty()) f.fail("the name ", p);
    f.rename(str_cat(f.where(), " ('", name, "')"));
    if (!names.insert(name).second) f.fail("duplicate tensor name");
    std::string dtype_str = f.string("dtype");
    auto dtype = dtype_by_name(dtype_str);
    if (!dtype) f.fail("unknown dtype '", dtype_str, "' (valid: ", valid_dtype_names(), ")");
    const Json& shape_json = f.array("shape");
    if (shape_json.size() > kMaxRank) f.fail("rank ", shape_json.size(), " exceeds the maximum of ", kMaxRank);
    std::vector<int64_t> dims;
    for (size_t d = 0; d < shape_json.size(); ++d) {
      auto v = as_int64(shape_json[d]);
      if (!v || *v < 0) f.fail("shape[", d, "] must be an integer >= 0, got ", brief(shape_json[d]));
      dims.push_back(*v);
    }
    auto numel = checked_numel(dims);
    uint64_t expected = 0;
    if (!numel || __builtin_mul_overflow(static_cast<uint64_t>(*numel), dtype_size(*dtype), &expected))
      f.fail("shape ", shape_str(dims), " of ", dtype_str, " overflows 64 bits");
    uint64_t offset = f.uint64("offset"), nbytes = f.uint64("nbytes");
    if (nbytes != expected)
      f.fail("nbytes is ", nbytes, " but shape ", shape_str(dims), " of ", dtype_str, " needs ", expected);
    if (offset % kAlignment != 0) f.fail("offset ", offset, " is not a multiple of ", kAlignment);
    if (offset > c.data_bytes || nbytes > c.data_bytes - offset)
      f.fail("bytes [", offset, ", ", offset, " + ", nbytes, ") run past the end of the data section (",
             c.data_bytes, " bytes)");
    if (nbytes > 0) ranges.push_back({offset, nbytes, i});
    const uint8_t* p = c.data + offset;
    if (*dtype == DType::boolean)  // any other byte in a bool is undefined behaviour in C++
      for (uint64_t k = 0; k < nbytes; ++k)
        if (p[k] > 1) f.fail("bool element ", k, " holds the byte ", int(p[k]), "; bool elements must be 0 or 1");
    Shape shape(dims);
    // The mapping is private and writable, so handing out a mutable pointer is sound.
    out.emplace_back(name, Tensor::from_blob(const_cast<uint8_t*>(p), shape, contiguous_strides(shape), *dtype,
                                             Device::cpu(), c.owner));
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.offset < b.offset; });
  for (size_t k = 1; k < ranges.size(); ++k) {
    const Range &a = ranges[k - 1], &b = ranges[k];
    if (a.offset + a.nbytes > b.offset)
      bad(c.source, "tensors[", a.index, "] ('", out[a.index].first, "') and tensors[", b.index, "] ('",
          out[b.index].first, "') overlap in the data section");
  }
  return out;
}

}  // namespace ndf

// ------------------------------------------------------------ public API

Tensor Checkpoint::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  return Tensor();
}

namespace {

const OpRegistry& registry_of(const LoadOptions& o) { return o.registry ? *o.registry : OpRegistry::global(); }

Graph graph_from(const ndf::Container& c, const LoadOptions& options, Metadata* metadata) {
  if (c.kind != "graph")
    ndf::bad(c.source, "holds named tensors (kind \"", c.kind, "\"), not a graph; read it with load_tensors");
  Metadata m = ndf::read_metadata(c);
  NamedTensors table = ndf::read_tensor_table(c);
  Graph g = ndf::read_graph(c, table, registry_of(options));
  if (metadata) *metadata = std::move(m);
  return g;
}

Checkpoint tensors_from(const ndf::Container& c) {
  Checkpoint ck;
  ck.metadata = ndf::read_metadata(c);
  ck.tensors = ndf::read_tensor_table(c);
  return ck;
}

}  // namespace

Graph load_graph(const std::string& path, const LoadOptions& options, Metadata* metadata) {
  return graph_from(ndf::open_file(path, options.mmap), options, metadata);
}

Checkpoint load_tensors(const std::string& path, const LoadOptions& options) {
  return tensors_from(ndf::open_file(path, options.mmap));
}

Graph parse_graph(std::span<const uint8_t> bytes, const LoadOptions& options, Metadata* metadata) {
  return graph_from(ndf::open_bytes(bytes), options, metadata);
}

Checkpoint parse_tensors(std::span<const uint8_t> bytes, const LoadOptions&) {
  return tensors_from(ndf::open_bytes(bytes));
}

}  // namespace ndflow
