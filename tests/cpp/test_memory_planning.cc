// Memory planning (runtime/passes/memory_planning.h): buffer counts on
// hand-built graphs — chains, a diamond where reuse by one topological order
// would be wrong — and through the executor: same numbers, lower peak.
#include <catch2/catch.hpp>

#include "op_samples.h"
#include "runtime/executor.h"
#include "runtime/passes/memory_planning.h"
#include "runtime/session.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// Builds PlanGraphs: node i produces value i (1 KiB f32 unless given).
struct Builder {
  PlanGraph g;
  int32_t node(std::vector<int32_t> inputs, bool elementwise = false, bool fresh = true,
               std::vector<int32_t> control = {}, size_t bytes = 1024) {
    auto id = static_cast<int32_t>(g.nodes.size());
    PlanNode n;
    n.inputs = inputs;
    n.preds = inputs;  // value i is produced by node i
    n.preds.insert(n.preds.end(), control.begin(), control.end());
    n.outputs = {id};
    n.elementwise = elementwise;
    g.nodes.push_back(n);
    PlanValue v;
    v.producer = id;
    v.bytes = bytes;
    v.shape = {static_cast<int64_t>(bytes / 4)};
    v.fresh = fresh;
    v.reusable = fresh;
    g.values.push_back(v);
    return id;
  }
};

}  // namespace

TEST_CASE("memory planning: an elementwise chain runs in one buffer", "[memory_planning][executor]") {
  Builder b;
  int32_t v = b.node({}, false, /*fresh=*/false);  // a feed
  for (int i = 0; i < 10; ++i) v = b.node({v}, /*elementwise=*/true);
  MemoryPlan p = plan_memory(b.g);
  REQUIRE(p.buffers_naive == 10);
  REQUIRE(p.buffers_planned == 1);  // the first op cannot overwrite the feed
  REQUIRE(p.num_in_place == 9);
  REQUIRE(p.in_place_of[1] == -1);
  for (int i = 2; i <= 10; ++i) REQUIRE(p.in_place_of[static_cast<size_t>(i)] == i - 1);
  REQUIRE(p.bytes_planned == 1024);
}

TEST_CASE("memory planning: a non-elementwise chain alternates two buffers", "[memory_planning][executor]") {
  Builder b;
  int32_t v = b.node({}, false, false);
  for (int i = 0; i < 10; ++i) v = b.node({v});
  MemoryPlan p = plan_memory(b.g);
  REQUIRE(p.buffers_naive == 10);
  REQUIRE(p.buffers_planned == 2);
  REQUIRE(p.num_in_place == 0);
  for (int i = 3; i <= 10; ++i) REQUIRE(p.reuse_of[static_cast<size_t>(i)] == i - 2);
}

TEST_CASE("memory planning: reuse follows reachability, not one topological order",
          "[memory_planning][executor]") {
  //   x -> a -> b --> d(b, c)
  //   x -> c ---------/
  // In the order x a b c d, a is dead after b when c starts, but c does not
  // wait for b: they may run at the same time, so c must not take a's buffer.
  Builder b;
  int32_t x = b.node({}, false, false);
  int32_t a = b.node({x});
  int32_t bb = b.node({a});
  int32_t c = b.node({x});
  int32_t d = b.node({bb, c});
  MemoryPlan p = plan_memory(b.g);
  REQUIRE(p.reuse_of[static_cast<size_t>(c)] == -1);
  REQUIRE(p.reuse_of[static_cast<size_t>(d)] == a);  // b finished before d starts
  REQUIRE(p.buffers_naive == 4);
  REQUIRE(p.buffers_planned == 3);

  // With a control edge b -> c the reuse is safe and made.
  Builder ordered;
  x = ordered.node({}, false, false);
  a = ordered.node({x});
  bb = ordered.node({a});
  c = ordered.node({x}, false, true, {bb});
  ordered.node({bb, c});
  MemoryPlan q = plan_memory(ordered.g);
  REQUIRE(q.reuse_of[static_cast<size_t>(c)] == a);
  REQUIRE(q.buffers_planned == 3);
}

TEST_CASE("memory planning: in place only when every other reader is done", "[memory_planning][executor]") {
  // a is read by an elementwise n1 and by an unordered n2: n1 must not overwrite it.
  Builder b;
  int32_t x = b.node({}, false, false);
  int32_t a = b.node({x});
  int32_t n1 = b.node({a}, true);
  b.node({a});
  REQUIRE(plan_memory(b.g).in_place_of[static_cast<size_t>(n1)] == -1);
  // n2 before n1 (a control edge): now n1 is the last reader.
  Builder c;
  x = c.node({}, false, false);
  a = c.node({x});
  int32_t n2 = c.node({a});
  n1 = c.node({a}, true, true, {n2});
  REQUIRE(plan_memory(c.g).in_place_of[static_cast<size_t>(n1)] == a);
}

TEST_CASE("memory planning: pinned values are never handed on", "[memory_planning][executor]") {
  Builder b;
  int32_t x = b.node({}, false, false);
  int32_t a = b.node({x});
  b.g.values[static_cast<size_t>(a)].reusable = false;  // e.g. fetched, or a view's base
  int32_t y = b.node({a}, true);
  b.node({y});
  MemoryPlan p = plan_memory(b.g);
  REQUIRE(p.in_place_of[static_cast<size_t>(y)] == -1);
  REQUIRE(p.hand_to[static_cast<size_t>(a)] == -1);
  // Sizes must fit: a 4 KiB value does not take a 1 KiB buffer.
  Builder s;
  x = s.node({}, false, false);
  a = s.node({x});
  int32_t m = s.node({a});
  int32_t big = s.node({m}, false, true, {}, 4096);
  REQUIRE(plan_memory(s.g).reuse_of[static_cast<size_t>(big)] == -1);
}

TEST_CASE("memory planning: a graph out of topological order is an internal error", "[memory_planning][executor]") {
  Builder b;
  b.node({}, false, false);
  b.node({0});
  b.g.nodes[0].preds = {1};
  REQUIRE_THROWS_AS(plan_memory(b.g), InternalError);
}

TEST_CASE("memory planning: same numbers, fewer buffers, lower peak", "[memory_planning][executor]") {
  // The elementwise chain dominates the peak: 2 live [256,128] buffers per op
  // without a plan, 1 with in-place updates; the diamond after it is small.
  Tensor w = rnd({128, 16}, 3, -0.1, 0.1, DType::f32), v = rnd({16, 16}, 5, -0.1, 0.1, DType::f32);
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 128});
    Tensor h = x;
    for (int i = 0; i < 6; ++i) h = tanh(exp(h) * 0.5);  // elementwise: in place
    Tensor a = matmul(h, w), b = matmul(a, v), c = matmul(h, w);  // a diamond
    g.mark_output("y", sigmoid(b + c));
  }
  Tensor x = rnd({256, 128}, 4, -1, 1, DType::f32);
  Tensor reference;
  size_t peak[2] = {0, 0};
  for (bool planning : {false, true}) {
    for (int inter : {1, 3}) {
      SessionOptions o;
      o.passes = PassOptions::none();  // no fusion: keep the elementwise chain
      o.passes.prune = true;
      o.passes.memory_planning = planning;
      o.inter_op_threads = inter;
      Session sess(g, o);
      for (int rep = 0; rep < 3; ++rep) {
        Tensor y = sess.run({{"x", x}}, {"y"})[0];
        if (!reference.defined()) reference = y;
        REQUIRE_CLOSE(y, reference, 0, 0);
      }
      if (inter == 1) peak[planning] = sess.last_run_stats().peak_bytes;
      auto plan = sess.compiled({"y"}).memory_plan(std::vector<Tensor>{x});
      REQUIRE(static_cast<bool>(plan) == planning);
      if (plan) {
        REQUIRE(plan->num_in_place >= 11);
        REQUIRE(plan->buffers_planned < plan->buffers_naive);
      }
    }
  }
  INFO("peak bytes without planning " << peak[0] << ", with " << peak[1]);
  REQUIRE(peak[1] < peak[0]);
}
