// Writing .ndf files: the tensor table and data section (TableBuilder), the
// graph header (encode_graph), and the atomic file write. Everything that
// could make the file unreadable is checked before the first byte is written.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "core/format_internal.h"

namespace ndflow {
namespace ndf {

namespace {

Json encode_float(double v) {
  // JSON has no NaN or infinity; they travel as strings.
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

void check_name(const std::string& what, const std::string& name) {
  std::string p = name_problem(name);
  NDF_CHECK(p.empty(), ValueError, "save: ", what, " '", one_line(name), "' ", p);
}

Json encode_attr(const Node& n, const OpDef::AttrSpec& spec, const AttrValue& v, TableBuilder& table) {
  // The value is written as the OpDef declares it (an int given for a float
  // attribute becomes a float), so the loader can insist on exact types.
  Json j;
  j["type"] = attr_type_key(spec.type);
  std::string what = str_cat("attribute '", spec.name, "' of node '", one_line(n.name), "'");
  switch (spec.type) {
    case AttrType::Int:
      j["value"] = std::holds_alternative<bool>(v) ? int64_t{std::get<bool>(v)} : std::get<int64_t>(v);
      break;
    case AttrType::Float:
      j["value"] = encode_float(std::holds_alternative<int64_t>(v) ? static_cast<double>(std::get<int64_t>(v))
                                                                  : std::get<double>(v));
      break;
    case AttrType::Bool: j["value"] = std::get<bool>(v); break;
    case AttrType::String: {
      const auto& s = std::get<std::string>(v);
      std::string p = utf8_problem(s);
      NDF_CHECK(p.empty(), ValueError, "save: ", what, " is not valid UTF-8 (", p, ")");
      j["value"] = s;
      break;
    }
    case AttrType::Ints: j["value"] = std::get<std::vector<int64_t>>(v); break;
    case AttrType::Floats: {
      Json a = Json::array();
      for (double d : std::get<std::vector<double>>(v)) a.push_back(encode_float(d));
      j["value"] = std::move(a);
      break;
    }
    case AttrType::DType: j["value"] = std::string(dtype_name(std::get<DType>(v))); break;
    case AttrType::Tensor: {
      // A Variable's bytes are named after its node, so load_tensors on a
      // model file yields a checkpoint keyed by variable name; it is never
      // shared, so that no other node can observe its in-place updates.
      bool is_var = n.op->name() == "variable";
      j["value"] = table.add(std::get<Tensor>(v), is_var ? n.name : n.name + "." + spec.name, !is_var, what);
      break;
    }
  }
  return j;
}

}  // namespace

// ------------------------------------------------------------ TableBuilder

std::string TableBuilder::add(const Tensor& t, const std::string& name, bool share, const std::string& what) {
  NDF_CHECK(t.defined(), ValueError, "save: ", what, " is an undefined tensor");
  NDF_CHECK(!t.is_symbolic(), ValueError, "save: ", what, " is a symbolic tensor; only tensors with data can be saved");
  NDF_CHECK(t.device().is_cpu(), ValueError, "save: ", what, " is on ", t.device().str(),
            "; only CPU tensors can be saved");
  NDF_CHECK(t.shape().size() <= kMaxRank, ValueError, "save: ", what, " has rank ", t.shape().size(),
            " (at most ", kMaxRank, ")");
  if (share)
    if (auto it = by_impl_.find(t.impl()); it != by_impl_.end()) return entries_[it->second].name;
  std::string unique = name;
  for (int k = 2; by_name_.count(unique); ++k) unique = str_cat(name, "#", k);
  check_name("tensor name", unique);
  Tensor c = t.is_contiguous() ? t : t.contiguous();
  uint64_t offset = align_up(cursor_);
  uint64_t nbytes = c.nbytes();
  cursor_ = offset + nbytes;
  entries_.push_back(Entry{unique, c, offset, nbytes});
  by_name_.emplace(unique, entries_.size() - 1);
  if (share) by_impl_.emplace(t.impl(), entries_.size() - 1);
  return unique;
}

Json TableBuilder::table() const {
  Json a = Json::array();
  for (const Entry& e : entries_) {
    Json j;
    j["name"] = e.name;
    j["dtype"] = std::string(dtype_name(e.tensor.dtype()));
    j["shape"] = e.tensor.shape().vec();
    j["offset"] = e.offset;
    j["nbytes"] = e.nbytes;
    a.push_back(std::move(j));
  }
  return a;
}

void TableBuilder::write(Json header, const std::function<void(const void*, size_t)>& sink) const {
  header["data_bytes"] = cursor_;
  header["tensors"] = table();
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {  // names are checked before; this is a backstop
    fail<ValueError>("save: the header cannot be written as JSON: ", e.what());
  }
  uint64_t header_bytes = text.size();
  unsigned char prefix[kPrefixBytes];
  std::memcpy(prefix, kMagic, 8);
  for (int i = 0; i < 8; ++i) prefix[8 + i] = static_cast<unsigned char>(header_bytes >> (8 * i));
  sink(prefix, sizeof prefix);
  sink(text.data(), text.size());
  static const char zeros[kAlignment] = {};
  uint64_t pos = kPrefixBytes + header_bytes;
  const uint64_t data_start = align_up(pos);
  auto pad_to = [&](uint64_t target) {
    sink(zeros, target - pos);
    pos = target;
  };
  pad_to(data_start);
  for (const Entry& e : entries_) {
    pad_to(data_start + e.offset);
    if (e.nbytes) sink(e.tensor.raw_data(), e.nbytes);
    pos += e.nbytes;
  }
}

// ------------------------------------------------------------ graph header

void encode_graph(const Graph& g, Json& header, TableBuilder& table) {
  g.validate();  // never write a graph that could not be loaded back
  std::unordered_set<std::string> names;
  Json nodes = Json::array();
  for (int64_t id : g.topological_order()) {  // producers first: easy to read and to stream
    const Node& n = *g.node(id);
    check_name("node name", n.name);
    NDF_CHECK(names.insert(n.name).second, ValueError, "save: two nodes are named '", one_line(n.name), "'");
    std::string dev = device_problem(n.device);
    NDF_CHECK(dev.empty(), ValueError, "save: the device '", one_line(n.device), "' of node '", n.name, "' ", dev);
    Json j;
    j["name"] = n.name;
    j["op"] = n.op->name();
    Json inputs = Json::array();
    for (const NodeOutput& e : n.inputs) inputs.push_back(Json{{"node", g.node(e.node)->name}, {"output", e.index}});
    j["inputs"] = std::move(inputs);
    Json control = Json::array();
    for (int64_t c : n.control_inputs) control.push_back(g.node(c)->name);
    j["control_inputs"] = std::move(control);
    j["device"] = n.device;
    Json attrs = Json::object();
    for (const auto& spec : n.op->attr_specs())
      if (const AttrValue* v = n.attrs.find(spec.name)) attrs[spec.name] = encode_attr(n, spec, *v, table);
    j["attrs"] = std::move(attrs);
    nodes.push_back(std::move(j));
  }
  header["nodes"] = std::move(nodes);
  Json inputs = Json::array(), outputs = Json::array();
  std::unordered_set<std::string> in_names, out_names;
  for (const auto& [name, id] : g.inputs()) {
    check_name("graph input", name);
    NDF_CHECK(in_names.insert(name).second, ValueError, "save: two graph inputs are named '", name, "'");
    NDF_CHECK(g.node(id), ValueError, "save: graph input '", name, "' refers to a removed node");
    NDF_CHECK(g.node(id)->op->name() == "placeholder", ValueError, "save: graph input '", name,
              "' refers to node '", g.node(id)->name, "', which is not a placeholder");
    inputs.push_back(Json{{"name", name}, {"node", g.node(id)->name}});
  }
  for (const auto& [name, o] : g.outputs()) {
    check_name("graph output", name);
    NDF_CHECK(out_names.insert(name).second, ValueError, "save: two graph outputs are named '", name, "'");
    outputs.push_back(Json{{"name", name}, {"node", g.node(o.node)->name}, {"output", o.index}});
  }
  header["inputs"] = std::move(inputs);
  header["outputs"] = std::move(outputs);
}

// ---------------------------------------------------------------- files

void write_file_atomically(const std::string& path,
                           const std::function<void(const std::function<void(const void*, size_t)>&)>& body) {
  // Write beside the target and rename: readers (and a crash) see the old
  // file or the new one, never a torn one — checkpoints rely on this.
  static std::atomic<uint64_t> counter{0};
  std::string tmp = str_cat(path, ".tmp.", ::getpid(), ".", counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  NDF_CHECK(fd >= 0, ValueError, "save: cannot create '", tmp, "': ", std::strerror(errno));
  auto sink = [&](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, c, n);
      if (w < 0 && errno == EINTR) continue;
      NDF_CHECK(w > 0, ValueError, "save: cannot write '", path, "': ", std::strerror(errno));
      c += w;
      n -= static_cast<size_t>(w);
    }
  };
  try {
    body(sink);
    NDF_CHECK(::fsync(fd) == 0, ValueError, "save: cannot flush '", path, "': ", std::strerror(errno));
    int rc = ::close(fd);
    fd = -1;
    NDF_CHECK(rc == 0, ValueError, "save: cannot write '", path, "': ", std::strerror(errno));
    NDF_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, ValueError, "save: cannot rename '", tmp, "' to '",
              path, "': ", std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
}

namespace {

Json base_header(const char* kind, const Metadata& metadata) {
  Json h;
  h["format_version"] = kFormatVersion;
  h["kind"] = kind;
  Json m = Json::object();
  for (const auto& [k, v] : metadata) {
    check_name("metadata key", k);
    std::string p = utf8_problem(v);
    NDF_CHECK(p.empty(), ValueError, "save: metadata '", k, "' is not valid UTF-8 (", p, ")");
    m[k] = v;
  }
  h["metadata"] = std::move(m);
  h["data_bytes"] = 0;     // filled in by TableBuilder::write, here for the key order
  h["tensors"] = Json::array();
  return h;
}

void build_tensors(const NamedTensors& tensors, TableBuilder& table) {
  std::unordered_set<std::string> names;
  for (const auto& [name, t] : tensors) {
    check_name("tensor name", name);
    NDF_CHECK(names.insert(name).second, ValueError, "save: two tensors are named '", name, "'");
    table.add(t, name, /*share=*/false, "tensor '" + name + "'");
  }
}

}  // namespace
}  // namespace ndf

void save_graph(const std::string& path, const Graph& graph, const Metadata& metadata) {
  ndf::Json header = ndf::base_header("graph", metadata);
  ndf::TableBuilder table;
  ndf::encode_graph(graph, header, table);
  ndf::write_file_atomically(path, [&](const auto& sink) { table.write(std::move(header), sink); });
}

void save_tensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  ndf::Json header = ndf::base_header("tensors", metadata);
  ndf::TableBuilder table;
  ndf::build_tensors(tensors, table);
  ndf::write_file_atomically(path, [&](const auto& sink) { table.write(std::move(header), sink); });
}

std::string serialize_graph(const Graph& graph, const Metadata& metadata) {
  ndf::Json header = ndf::base_header("graph", metadata);
  ndf::TableBuilder table;
  ndf::encode_graph(graph, header, table);
  std::string out;
  table.write(std::move(header), [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); });
  return out;
}

std::string serialize_tensors(const NamedTensors& tensors, const Metadata& metadata) {
  ndf::Json header = ndf::base_header("tensors", metadata);
  ndf::TableBuilder table;
  ndf::build_tensors(tensors, table);
  std::string out;
  table.write(std::move(header), [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); });
  return out;
}

}  // namespace ndflow
