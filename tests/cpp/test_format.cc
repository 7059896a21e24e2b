// The .ndf container (core/format.h): graph and tensor round trips, memory
// mapping, and every hand-made bad file in tests/data/bad_ndf/ rejected with
// its specific error. Mutation testing lives in test_format_mutation.cc, the
// .npy reader/writer in test_npy.cc.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>
#include <map>
#include <set>

#include "format_test_util.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

bool same_double(double x, double y) { return std::memcmp(&x, &y, sizeof x) == 0 || (x != x && y != y); }

bool same_value(const AttrValue& a, const AttrValue& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& va) {
        using T = std::decay_t<decltype(va)>;
        const T& vb = std::get<T>(b);
        if constexpr (std::is_same_v<T, Tensor>) {
          return same_tensor(va, vb);
        } else if constexpr (std::is_same_v<T, double>) {
          return same_double(va, vb);
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          if (va.size() != vb.size()) return false;
          for (size_t i = 0; i < va.size(); ++i)
            if (!same_double(va[i], vb[i])) return false;
          return true;
        } else {
          return va == vb;
        }
      },
      a);
}

// The loaded graph has the same nodes (by name), ops, edges, control
// dependencies, devices, attributes, inferred outputs, inputs and outputs.
void require_same_graph(const Graph& a, const Graph& b) {
  REQUIRE(a.num_nodes() == b.num_nodes());
  for (const Node* n : a.nodes()) {
    INFO("node " << n->name);
    const Node* m = b.find(n->name);
    REQUIRE(m);
    CHECK(m->op->name() == n->op->name());
    CHECK(m->device == n->device);
    REQUIRE(m->inputs.size() == n->inputs.size());
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      CHECK(b.node(m->inputs[i].node)->name == a.node(n->inputs[i].node)->name);
      CHECK(m->inputs[i].index == n->inputs[i].index);
    }
    std::set<std::string> ca, cb;
    for (int64_t c : n->control_inputs) ca.insert(a.node(c)->name);
    for (int64_t c : m->control_inputs) cb.insert(b.node(c)->name);
    CHECK(ca == cb);
    REQUIRE(m->attrs.items().size() == n->attrs.items().size());
    for (const auto& [k, v] : n->attrs.items()) {
      INFO("attribute " << k);
      REQUIRE(m->attrs.find(k));
      CHECK(same_value(*m->attrs.find(k), v));
    }
    REQUIRE(m->outputs.size() == n->outputs.size());
    for (size_t j = 0; j < n->outputs.size(); ++j) {
      CHECK(m->outputs[j].shape == n->outputs[j].shape);
      CHECK(m->outputs[j].dtype == n->outputs[j].dtype);
    }
  }
  REQUIRE(a.inputs().size() == b.inputs().size());
  for (size_t i = 0; i < a.inputs().size(); ++i) {
    CHECK(a.inputs()[i].first == b.inputs()[i].first);
    CHECK(a.node(a.inputs()[i].second)->name == b.node(b.inputs()[i].second)->name);
  }
  REQUIRE(a.outputs().size() == b.outputs().size());
  for (size_t i = 0; i < a.outputs().size(); ++i) {
    CHECK(a.outputs()[i].first == b.outputs()[i].first);
    CHECK(a.node(a.outputs()[i].second.node)->name == b.node(b.outputs()[i].second.node)->name);
    CHECK(a.outputs()[i].second.index == b.outputs()[i].second.index);
  }
}

bool aligned(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 64 == 0; }

// A tensor of each dtype, plus empty, 0-d and non-contiguous ones.
NamedTensors sample_tensors() {
  Tensor h = Tensor::empty({3}, DType::f16), bh = Tensor::empty({2, 2}, DType::bf16);
  for (int i = 0; i < 3; ++i) h.data<Half>()[i] = Half(0.5f * static_cast<float>(i) - 1.0f);
  for (int i = 0; i < 4; ++i) bh.data<BFloat16>()[i] = BFloat16(static_cast<float>(i) * 3.5f);
  Tensor nan = tensor(std::vector<float>{std::nanf(""), INFINITY, -0.0f}, {3});
  return {
      {"f32", tensor(std::vector<float>{1.5f, -2.f, 3.25f, 4.f, 5.f, 6.f}, {2, 3})},
      {"f64", tensor(std::vector<double>{1e300, -1e-300}, {2})},
      {"f16", h},
      {"bf16", bh},
      {"i32", tensor(std::vector<int32_t>{-7, 0, 2147483647}, {3})},
      {"i64", tensor(std::vector<int64_t>{std::numeric_limits<int64_t>::min(), 42}, {2, 1})},
      {"u8", tensor(std::vector<uint8_t>{0, 255, 7}, {3})},
      {"bool", tensor(std::vector<bool>{true, false, true, true}, {2, 2})},
      {"scalar", scalar(2.5, DType::f64)},
      {"empty", Tensor::empty({0, 3}, DType::f32)},
      {"transposed", tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3}).t()},
      {"nan inf -0", nan},
      {"unicode név", tensor(std::vector<int64_t>{1})},
  };
}

}  // namespace

TEST_CASE("tensors of every dtype round-trip, mapped or read, aligned and with metadata", "[format]") {
  TempDir dir;
  NamedTensors in = sample_tensors();
  save_tensors(dir / "t.ndf", in, {{"step", "1200"}, {"note", "ünïcode"}});
  for (bool mmap : {true, false}) {
    INFO("mmap " << mmap);
    Checkpoint c = load_tensors(dir / "t.ndf", LoadOptions{.mmap = mmap});
    CHECK(c.metadata == Metadata{{"step", "1200"}, {"note", "ünïcode"}});
    REQUIRE(c.tensors.size() == in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      INFO("tensor " << in[i].first);
      CHECK(c.tensors[i].first == in[i].first);
      CHECK(same_tensor(c.tensors[i].second, in[i].second));
      CHECK(c.tensors[i].second.is_contiguous());
      if (c.tensors[i].second.numel() > 0) CHECK(aligned(c.tensors[i].second));
    }
    CHECK(c.find("u8").defined());
    CHECK_FALSE(c.find("nope").defined());
  }
  // In memory, and identical to the file's bytes.
  std::string bytes = serialize_tensors(in, {{"step", "1200"}, {"note", "ünïcode"}});
  CHECK(bytes == read_file(dir / "t.ndf"));
  Checkpoint m = parse_tensors(as_bytes(bytes));
  CHECK(same_tensor(m.find("bool"), in[7].second));
  // An empty checkpoint is a valid file too.
  CHECK(parse_tensors(as_bytes(serialize_tensors({}))).tensors.empty());
}

TEST_CASE("mapped tensors keep the mapping alive and never write to the file", "[format]") {
  TempDir dir;
  save_tensors(dir / "w.ndf", {{"w", tensor(std::vector<float>{1, 2, 3, 4}, {4})}});
  std::string before = read_file(dir / "w.ndf");
  Tensor w;
  {
    Checkpoint c = load_tensors(dir / "w.ndf");
    w = c.find("w");
  }  // the Checkpoint is gone; the tensor still holds the mapping
  CHECK(w.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  w.fill_(9.0);  // copy-on-write: the process sees it, the file does not
  CHECK(w.to_vector<float>() == std::vector<float>{9, 9, 9, 9});
  CHECK(read_file(dir / "w.ndf") == before);
  CHECK(load_tensors(dir / "w.ndf").find("w").to_vector<float>() == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("saving refuses what it could not load back", "[format]") {
  TempDir dir;
  CHECK_THROWS_WITH(save_tensors(dir / "a.ndf", {{"x", scalar(1)}, {"x", scalar(2)}}),
                    Catch::Contains("two tensors are named 'x'"));
  CHECK_THROWS_WITH(save_tensors(dir / "a.ndf", {{"", scalar(1)}}), Catch::Contains("is empty"));
  CHECK_THROWS_WITH(save_tensors(dir / "a.ndf", {{"a\nb", scalar(1)}}), Catch::Contains("control character"));
  CHECK_THROWS_WITH(save_tensors(dir / "a.ndf", {{"bad\xff", scalar(1)}}), Catch::Contains("invalid UTF-8"));
  CHECK_THROWS_WITH(save_tensors(dir / "a.ndf", {{"u", Tensor()}}), Catch::Contains("undefined tensor"));
  CHECK_THROWS_AS(save_tensors(dir / "a.ndf", {{"x", scalar(1)}}, {{"k", "\xc3"}}), ValueError);
  CHECK_THROWS_AS(save_tensors(dir / "no/such/dir/a.ndf", {{"x", scalar(1)}}), ValueError);
  CHECK_FALSE(std::filesystem::exists(dir / "a.ndf"));  // nothing half-written is left behind
  std::filesystem::path d(dir / "x");
  CHECK(std::filesystem::is_empty(d.parent_path()));
}

TEST_CASE("a graph round-trips with constants, a Variable, attributes, control deps and devices", "[format]") {
  TempDir dir;
  Tensor w = tensor(std::vector<float>{1, -2, 3}, {3});
  w.mark_variable("fc.w");
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 3});
    Tensor h = leaky_relu(x + w, 0.2);                              // float attribute, Variable
    Tensor s = sum(h, {1}, true);                                  // ints and bool
    Tensor c = cast(s, DType::f64);                                // dtype
    Tensor p = pad(h, {{0, 0}, {1, 2}}, "replicate");              // string
    Tensor k = h * tensor(std::vector<float>{0.5f, 2.f, -1.f}, {3});  // constant
    Tensor e = matmul(k, eye(3));                                  // int attribute
    g.add_control_dependency(c, p);
    g.mark_output("y", e);
    g.mark_output("sum", c);
    g.mark_output("padded", p);
  }
  g.mutable_node(g.find("x")->id)->device = "cpu:0";
  g.mutable_node(g.outputs()[0].second.node)->device = "/worker:1/cpu:0";
  save_graph(dir / "g.ndf", g, {{"model", "tiny"}});
  for (bool mmap : {true, false}) {
    Metadata meta;
    Graph l = load_graph(dir / "g.ndf", LoadOptions{.mmap = mmap}, &meta);
    CHECK(meta == Metadata{{"model", "tiny"}});
    require_same_graph(g, l);
    // The Variable comes back as a Variable named after its node.
    const Node* var = nullptr;
    for (const Node* n : l.nodes())
      if (n->op->name() == "variable") var = n;
    REQUIRE(var);
    Tensor value = var->attrs.get<Tensor>("value");
    CHECK(value.is_variable());
    CHECK(value.impl()->variable_name == var->name);
    CHECK(aligned(value));
  }
  // Writing is deterministic, and a loaded graph saves to the same bytes.
  CHECK(serialize_graph(g, {{"model", "tiny"}}) == read_file(dir / "g.ndf"));
  CHECK(serialize_graph(load_graph(dir / "g.ndf"), {{"model", "tiny"}}) == read_file(dir / "g.ndf"));
  // The model file's tensor table reads as a checkpoint keyed by variable name.
  CHECK(load_tensors(dir / "g.ndf").find("fc.w").to_vector<float>() == std::vector<float>{1, -2, 3});
  // A graph file is not a checkpoint and vice versa only in one direction.
  save_tensors(dir / "t.ndf", {{"x", scalar(1)}});
  CHECK_THROWS_WITH(load_graph(dir / "t.ndf"), Catch::Contains("not a graph"));
}

TEST_CASE("attributes of every type round-trip exactly, NaN and infinities included", "[format]") {
  // No built-in op has a Floats attribute, so this graph uses a private
  // registry with one op that takes an attribute of every type.
  OpRegistry reg;
  for (const char* name : {"placeholder", "constant", "variable"}) reg.add(*OpRegistry::global().find(name));
  const OpDef& all = reg.add(OpDef("all_attrs")
                                 .input("x")
                                 .output("y")
                                 .attr("i", AttrType::Int)
                                 .attr("f", AttrType::Float)
                                 .attr("b", AttrType::Bool)
                                 .attr("s", AttrType::String)
                                 .attr("is", AttrType::Ints)
                                 .attr("fs", AttrType::Floats)
                                 .attr("d", AttrType::DType)
                                 .attr("t", AttrType::Tensor)
                                 .attr("with_default", AttrType::Int, int64_t{7})
                                 .infer(same_as_input(0)));
  Graph g;
  Tensor x = g.placeholder("x", {2});
  Attrs attrs{{"i", std::numeric_limits<int64_t>::min()},
              {"f", 0.1},
              {"b", true},
              {"s", std::string("quote\" backslash\\ ünïcode")},
              {"is", std::vector<int64_t>{}},
              {"fs", std::vector<double>{std::nan(""), INFINITY, -INFINITY, -0.0, 1e-310, 1.0 / 3}},
              {"d", DType::bf16},
              {"t", tensor(std::vector<uint8_t>{1, 2, 3}, {3})}};
  g.mark_output("y", g.add_op(all, std::vector<Tensor>{x}, attrs, "all")[0]);
  std::string bytes = serialize_graph(g);
  Graph l = parse_graph(as_bytes(bytes), LoadOptions{.registry = &reg});
  require_same_graph(g, l);
  CHECK(l.find("all")->attrs.get<int64_t>("with_default") == 7);
  // The global registry has no such op.
  CHECK_THROWS_WITH(parse_graph(as_bytes(bytes)), Catch::Contains("unknown op 'all_attrs'"));
}

TEST_CASE("files written by an independent writer load and run", "[format]") {
  Graph g = load_graph((test_data_dir() / "valid_graph.ndf").string());
  CHECK(g.num_nodes() == 9);
  CHECK(g.find("w")->attrs.get<Tensor>("value").is_variable());
  CHECK(g.find("s")->control_inputs.size() == 1);
  CHECK(g.find("r")->outputs[0].shape == Shape{-1, 3});
  Checkpoint c = load_tensors((test_data_dir() / "valid_tensors.ndf").string());
  CHECK(c.metadata.at("epoch") == "3");
  CHECK(c.find("fc.weight").to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  CHECK(c.find("step").item<int64_t>() == 7);
  CHECK(c.find("empty").shape() == Shape{0, 3});
}

TEST_CASE("every hand-made bad file is rejected with its specific error", "[format]") {
  auto dir = test_data_dir() / "bad_ndf";
  std::map<std::string, std::string> expected;
  std::istringstream tsv(read_file((dir / "expected_errors.tsv").string()));
  for (std::string line; std::getline(tsv, line);) {
    if (line.empty() || line[0] == '#') continue;
    auto tab = line.find('\t');
    REQUIRE(tab != std::string::npos);
    expected[line.substr(0, tab)] = line.substr(tab + 1);
  }
  std::set<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".ndf") files.insert(entry.path().filename().string());
  REQUIRE(files.size() >= 50);
  for (const auto& f : files) {
    INFO("file " << f);
    REQUIRE(expected.count(f));  // every file states the error it must produce
  }
  for (const auto& [file, text] : expected) {
    INFO("file " << file << ", expecting: " << text);
    REQUIRE(files.count(file));
    std::string path = (dir / file).string();
    for (bool mmap : {true, false}) {
      std::string message;
      try {
        load_graph(path, LoadOptions{.mmap = mmap});
      } catch (const FormatError& e) {
        message = e.what();
      }
      INFO("got: " << message);
      CHECK(message.find(text) != std::string::npos);
      CHECK(message.rfind("[ndf] " + path + ": ", 0) == 0);  // names the file
      CHECK(message.find('\n') == std::string::npos);       // one line
    }
  }
}

TEST_CASE("loader errors on the file system level are FormatErrors too", "[format]") {
  TempDir dir;
  CHECK_THROWS_AS(load_graph(dir / "missing.ndf"), FormatError);
  CHECK_THROWS_WITH(load_graph(dir / "missing.ndf"), Catch::Contains("cannot open"));
  std::filesystem::create_directory(dir / "sub");
  CHECK_THROWS_WITH(load_graph(dir / "sub"), Catch::Contains("not a regular file"));
  write_file(dir / "empty.ndf", "");
  CHECK_THROWS_WITH(load_tensors(dir / "empty.ndf"), Catch::Contains("too short"));
  CHECK_THROWS_WITH(parse_graph({}), Catch::Contains("[ndf] <memory>: file is too short"));
}

TEST_CASE("large graphs load in linear time", "[format]") {
  // A chain of 20000 nodes: anything quadratic in the loader shows up here.
  Graph g;
  {
    GraphScope scope(g);
    Tensor t = g.placeholder("x", {4});
    for (int i = 0; i < 20000; ++i) t = relu(t);
    g.mark_output("y", t);
  }
  std::string bytes = serialize_graph(g);
  auto t0 = std::chrono::steady_clock::now();
  Graph l = parse_graph(as_bytes(bytes));
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(l.num_nodes() == 20001);
  CHECK(s < 5.0);
}

TEST_CASE("ops added to a loaded graph are ordered after its Variable updates", "[format]") {
  Tensor v = tensor(std::vector<float>{1, 2}, {2});
  v.mark_variable("v");
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {2});
    assign_add(v, x * v);
  }
  std::string bytes = serialize_graph(g);
  Graph l = parse_graph(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  int64_t var = -1, update = -1;
  for (const Node* n : l.nodes()) {
    if (n->op->name() == "variable") var = n->id;
    if (n->op->name() == "assign_add") update = n->id;
  }
  REQUIRE(var >= 0);
  REQUIRE(update >= 0);
  Tensor read;
  {
    GraphScope scope(l);
    read = exp(l.tensor({var, 0}));
  }
  const auto& ctl = l.node(l.edge(read).node)->control_inputs;
  CHECK(std::find(ctl.begin(), ctl.end(), update) != ctl.end());
}
