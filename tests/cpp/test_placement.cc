// Device names, the placer, the partitioner and multi-device execution on one
// process (runtime/placer.h, runtime/partition.h, runtime/multi_device.h):
// requests honoured, colocation, kernel availability and soft placement, the
// cost rule, clear errors, send/recv counts matching the report, and results
// equal to single-device runs — training steps included.
#include <catch2/catch.hpp>

#include "core/device_name.h"
#include "op_samples.h"
#include "runtime/executor.h"
#include "runtime/multi_device.h"
#include "runtime/placer.h"
#include "runtime/session.h"
#include "runtime/trace.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// Sets the logical CPU device count for one test, restoring it after.
struct CpuDevices {
  int before;
  explicit CpuDevices(int n) : before(num_cpu_devices()) { set_num_cpu_devices(n); }
  ~CpuDevices() { set_num_cpu_devices(before); }
};

const Placement::NodeInfo& info(const Placement& p, const Graph& g, const std::string& name) {
  for (auto& n : p.nodes)
    if (g.node(n.node)->name == name) return n;
  FAIL("no node " << name);
  throw 0;
}

std::string device_of(const CompiledGraph& cg, const std::string& name) {
  const Placement& p = cg.placement();
  return p.devices[static_cast<size_t>(info(p, cg.graph(), name).device)].str();
}

// Two layers, each under its own device scope; returns the graph and its output.
Graph two_layer_graph(const Tensor& w1, const Tensor& w2, const std::string& d1, const std::string& d2) {
  Graph g;
  GraphScope scope(g);
  Tensor x = g.placeholder("x", {-1, 4});
  Tensor h;
  {
    DeviceScope on(d1);
    h = relu(matmul(x, w1));
  }
  {
    DeviceScope on(d2);
    g.mark_output("y", tanh(matmul(h, w2)));
  }
  return g;
}

}  // namespace

TEST_CASE("device names: parse, print, match", "[placement]") {
  REQUIRE(DeviceName::parse("/worker:1/cpu:0").str() == "/worker:1/cpu:0");
  REQUIRE(DeviceName::parse("worker:1/cpu:0").str() == "/worker:1/cpu:0");
  REQUIRE(DeviceName::parse("cpu:2").str() == "cpu:2");
  REQUIRE(DeviceName::parse("cuda:1").str() == "gpu:1");
  REQUIRE(DeviceName::parse("/worker:3").str() == "/worker:3");
  REQUIRE(DeviceName::parse("").empty());
  DeviceName full = DeviceName::full(1, DeviceType::CPU, 0);
  REQUIRE(DeviceName::parse("cpu").matches(full));
  REQUIRE(DeviceName::parse("worker:1").matches(full));
  REQUIRE_FALSE(DeviceName::parse("worker:0/cpu:0").matches(full));
  REQUIRE_FALSE(DeviceName::parse("gpu:0").matches(full));
  for (const char* bad : {"tpu:0", "cpu:x", "worker/cpu:0", "cpu:0/worker:1", "cpu:0/cpu:1", "//cpu:0"})
    REQUIRE_THROWS_WITH(DeviceName::parse(bad), Catch::Contains("bad device name"));
  REQUIRE_THROWS_WITH(DeviceScope("cpu:zero"), Catch::Contains("cpu:zero"));
  REQUIRE_THROWS_WITH(set_num_cpu_devices(0), Catch::Contains("1 to 64"));
}

TEST_CASE("placer: requests, colocation with variables, the cost rule", "[placement]") {
  CpuDevices two(2);
  Tensor w1 = rnd({4, 8}, 1, -1, 1, DType::f32).mark_variable("w1"), w2 = rnd({8, 2}, 2, -1, 1, DType::f32).mark_variable("w2");
  Graph g = two_layer_graph(w1, w2, "cpu:0", "cpu:1");
  PlacerOptions opt;
  opt.devices = cluster_devices(1);
  Placement p = place(g, opt);
  REQUIRE(p.devices.size() == 2);
  // Variables that are only read go where their first reader was requested.
  const Node* v1 = nullptr;
  const Node* v2 = nullptr;
  for (const Node* n : g.nodes())
    if (n->op->name() == "variable") (n->name == "w1" ? v1 : v2) = n;
  REQUIRE(v1->assigned_device == "/worker:0/cpu:0");
  REQUIRE(v2->assigned_device == "/worker:0/cpu:1");
  REQUIRE_THAT(info(p, g, "w2").reason, Catch::Contains("placed with its consumer"));
  // One tensor (h) crosses 0 -> 1, and the report says so.
  REQUIRE(p.transfers.size() == 1);
  REQUIRE(p.transfers[0].tensors == 1);
  REQUIRE(p.transfers[0].bytes == 32 * 8 * 4);  // [-1, 8] f32 with -1 counted as 32
  std::string report = p.report(g);
  REQUIRE_THAT(report, Catch::Contains("/worker:0/cpu:0 -> /worker:0/cpu:1: 1 tensors"));

  // Without requests, a chain stays on one device.
  Graph chain = two_layer_graph(w1, w2, "", "");
  Placement q = place(chain, opt);
  REQUIRE(q.used_devices().size() == 1);
  REQUIRE(q.transfers.empty());
}

TEST_CASE("placer: independent heavy ops spread over idle devices, deterministically", "[placement]") {
  CpuDevices two(2);
  Graph g;
  {
    GraphScope scope(g);
    Tensor a = g.placeholder("a", {512, 512});
    Tensor b = g.placeholder("b", {512, 512});
    g.mark_output("y", matmul(a, a) + matmul(b, b));
  }
  PlacerOptions opt;
  opt.devices = cluster_devices(1);
  Placement p1 = place(g, opt);
  REQUIRE(p1.used_devices().size() == 2);  // 268 MFLOP each: worth moving 1 MB
  Placement p2 = place(g, opt);
  for (size_t i = 0; i < p1.nodes.size(); ++i) REQUIRE(p1.nodes[i].device == p2.nodes[i].device);
  bool explained = false;
  for (auto& n : p1.nodes) explained |= n.reason.find("earliest estimated finish") != std::string::npos;
  REQUIRE(explained);
}

TEST_CASE("placer: impossible constraints are errors naming node, constraint and devices", "[placement]") {
  CpuDevices two(2);
  Tensor w = rnd({4, 4}, 3, -1, 1, DType::f32).mark_variable("w");
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {2, 4});
    Tensor a, b;
    {
      DeviceScope on("cpu:0");
      a = matmul(x, w);
    }
    {
      DeviceScope on("cpu:1");
      b = matmul(a, w);  // reads the same variable on another device
    }
    assign_add(w, scalar(1.0));  // updated: the variable and its readers are one group
    g.mark_output("y", b);
  }
  PlacerOptions opt;
  opt.devices = cluster_devices(1);
  REQUIRE_THROWS_WITH(place(g, opt), Catch::Contains("must be colocated") && Catch::Contains("variable 'w'"));

  Graph far;
  {
    GraphScope scope(far);
    Tensor x = far.placeholder("x", {2, 2});
    DeviceScope on("cpu:5");
    far.mark_output("y", x * 2.0);
  }
  REQUIRE_THROWS_WITH(place(far, opt), Catch::Contains("requests 'cpu:5'") && Catch::Contains("no device matches") &&
                                           Catch::Contains("/worker:0/cpu:1"));
  PlacerOptions soft = opt;
  soft.soft_placement = true;
  Placement fallback = place(far, soft);
  REQUIRE_THAT(fallback.nodes.back().reason, Catch::Contains("soft placement: no device matches '/worker:0/cpu:5'"));

  // No CPU build has CUDA kernels: a gpu request fails, or falls back softly.
  Graph gpu;
  {
    GraphScope scope(gpu);
    Tensor x = gpu.placeholder("x", {2, 2});
    DeviceScope on("gpu:0");
    gpu.mark_output("y", x * 2.0);
  }
  PlacerOptions with_gpu = opt;
  with_gpu.devices.push_back(DeviceName::full(0, DeviceType::CUDA, 0));
  REQUIRE_THROWS_WITH(place(gpu, with_gpu), Catch::Contains("has no kernel") && Catch::Contains("soft placement"));
  with_gpu.soft_placement = true;
  Placement p = place(gpu, with_gpu);
  for (auto& n : p.nodes) REQUIRE(p.devices[static_cast<size_t>(n.device)].type == DeviceType::CPU);
}

TEST_CASE("multi-device: two logical devices give the single-device result", "[placement]") {
  Tensor w1 = rnd({4, 8}, 1, -1, 1, DType::f32).mark_variable("w1"), w2 = rnd({8, 2}, 2, -1, 1, DType::f32).mark_variable("w2");
  Graph single = two_layer_graph(w1, w2, "", "");
  CpuDevices two(2);
  Graph split = two_layer_graph(w1, w2, "cpu:0", "cpu:1");
  Session one(single), many(split);
  for (int64_t batch : {3, 5, 3}) {
    Tensor x = rnd({batch, 4}, 10 + static_cast<uint64_t>(batch), -1, 1, DType::f32);
    Tensor want = one.run({{"x", x}}, {"y"})[0];
    Tensor got = many.run({{"x", x}}, {"y"})[0];
    REQUIRE_CLOSE(got, want, 0, 0);  // same kernels, same order: bit for bit
  }
  CompiledGraph& cg = many.compiled({"y"});
  REQUIRE(cg.multi_device() != nullptr);
  REQUIRE(cg.multi_device()->partitions().parts.size() == 2);
  int64_t reported = 0;
  for (auto& t : cg.placement().transfers) reported += t.tensors + t.controls;
  REQUIRE(cg.multi_device()->partitions().num_sends == reported);
  REQUIRE(device_of(cg, "w2") == "/worker:0/cpu:1");
  REQUIRE_THAT(cg.placement_report(), Catch::Contains("2 partitions, 1 send/recv pairs"));
}

TEST_CASE("multi-device: a training step with updates on two devices equals one device", "[placement]") {
  auto build = [](const Tensor& w1, const Tensor& w2, bool split) {
    Graph g;
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 4});
    Tensor lr = scalar(0.1, DType::f32);
    Tensor h, loss;
    {
      DeviceScope on(split ? "cpu:0" : "");
      h = relu(matmul(x, w1));
    }
    {
      DeviceScope on(split ? "cpu:1" : "");
      loss = square(matmul(h, w2)).mean();
    }
    auto grads = gradients({loss}, {w1, w2});
    apply_sgd(w1, grads[0], lr);
    apply_sgd(w2, grads[1], lr);
    g.mark_output("loss", loss);
    return g;
  };
  Tensor a1 = rnd({4, 8}, 1, -1, 1, DType::f32).mark_variable("w1"), a2 = rnd({8, 2}, 2, -1, 1, DType::f32).mark_variable("w2");
  Tensor b1 = a1.clone().mark_variable("w1"), b2 = a2.clone().mark_variable("w2");
  Graph single = build(a1, a2, false);
  CpuDevices two(2);
  Graph split = build(b1, b2, true);
  Session one(single), many(split);
  std::vector<std::string> targets;
  for (const Node* n : single.nodes())
    if (n->op->has_side_effects()) targets.push_back(n->name);
  std::vector<std::string> targets2;
  for (const Node* n : split.nodes())
    if (n->op->has_side_effects()) targets2.push_back(n->name);
  for (int step = 0; step < 5; ++step) {
    Tensor x = rnd({6, 4}, 100 + static_cast<uint64_t>(step), -1, 1, DType::f32);
    Tensor l1 = one.run({{"x", x}}, {"loss"}, targets)[0];
    Tensor l2 = many.run({{"x", x}}, {"loss"}, targets2)[0];
    REQUIRE_CLOSE(l2, l1, 1e-6, 1e-6);
  }
  REQUIRE_CLOSE(b1, a1, 1e-6, 1e-6);
  REQUIRE_CLOSE(b2, a2, 1e-6, 1e-6);
  REQUIRE(many.compiled({"loss"}, targets2).multi_device() != nullptr);
}

TEST_CASE("multi-device: a failing partition fails the step fast, and the next step works", "[placement]") {
  CpuDevices two(2);
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 4});
    Tensor idx = g.placeholder("i", {2}, DType::i64);
    Tensor h;
    {
      DeviceScope on("cpu:0");
      h = index_select(x, 0, idx);  // fails on an index out of range
    }
    DeviceScope on("cpu:1");
    g.mark_output("y", h * 2.0);
  }
  Session s(g);
  Tensor x = rnd({3, 4}, 5, -1, 1, DType::f32);
  Tensor bad = Tensor::empty({2}, DType::i64);
  bad.data<int64_t>()[0] = 0, bad.data<int64_t>()[1] = 7;
  REQUIRE_THROWS_WITH(s.run({{"x", x}, {"i", bad}}, {"y"}), Catch::Contains("index_select"));
  Tensor good = Tensor::empty({2}, DType::i64);
  good.data<int64_t>()[0] = 2, good.data<int64_t>()[1] = 0;
  Tensor y = s.run({{"x", x}, {"i", good}}, {"y"})[0];
  REQUIRE(y.shape() == Shape{2, 4});
}
