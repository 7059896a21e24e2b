// The static-graph executor through Session (runtime/session.h): results
// against eager execution, unknown dims, repeated and multi-threaded runs,
// errors naming their node, asynchronous kernels, intermediate fetches,
// Variable updates, control dependencies, traced graphs and symbolic
// gradients.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "op_samples.h"
#include "runtime/executor.h"
#include "runtime/session.h"
#include "runtime/thread_pool.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

SessionOptions threads(int inter, bool planning = true, bool rewrites = true) {
  SessionOptions o;
  o.inter_op_threads = inter;
  if (!rewrites) o.passes = PassOptions::none();
  o.passes.prune = true;
  o.passes.memory_planning = planning;
  return o;
}

// ---- test-only ops, registered once into the global registry

// Threads started by the async kernels; joined by the tests (and at exit,
// should a failing test skip that).
std::mutex g_threads_mu;
struct AsyncThreads {
  std::vector<std::thread> threads;
  ~AsyncThreads() {
    for (auto& t : threads) t.join();
  }
} g_threads;
void join_async_threads() {
  std::vector<std::thread> ts;
  {
    std::lock_guard<std::mutex> lock(g_threads_mu);
    ts.swap(g_threads.threads);
  }
  for (auto& t : ts) t.join();
}

// y = 2x, written by a std::thread after `delay_ms`; fails when `fail` is set.
// With `wait_for_peer`, it first waits (up to 2 s) until two instances have
// started: two of them in one graph complete only if the executor never
// blocks a thread waiting for the first.
std::atomic<int> g_async_started{0};
void async_double(KernelContext& ctx) {
  AsyncDone done = ctx.defer();
  Tensor x = ctx.input(0), y = ctx.output(0);
  auto delay = ctx.attrs.get<int64_t>("delay_ms");
  bool fail = ctx.attrs.get<bool>("fail");
  bool wait_peer = ctx.attrs.get<bool>("wait_for_peer");
  g_async_started.fetch_add(1);
  std::lock_guard<std::mutex> lock(g_threads_mu);
  g_threads.threads.emplace_back([=] {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    if (wait_peer) {
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (g_async_started.load() < 2 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (g_async_started.load() < 2) {
        done(std::make_exception_ptr(ValueError("[test_async_double] the peer never started")));
        return;
      }
    }
    if (fail) {
      done(std::make_exception_ptr(IndexError("[test_async_double] asked to fail")));
      return;
    }
    const float* px = x.data<float>();
    float* py = y.data<float>();
    for (int64_t i = 0; i < x.numel(); ++i) py[i] = 2 * px[i];
    done();
  });
}

// Appends its "tag" to a log and passes x through (a copy).
std::mutex g_log_mu;
std::vector<int64_t> g_log;
void log_kernel(KernelContext& ctx) {
  {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_log.push_back(ctx.attrs.get<int64_t>("tag"));
  }
  const float* px = ctx.input(0).data<float>();
  float* py = ctx.output(0).data<float>();
  for (int64_t i = 0; i < ctx.input(0).numel(); ++i) py[i] = px[i];
}

// The test ops live in a registry of their own, so the global registry (and
// its walk in test_op_samples.cc) never sees them; graph nodes hold the
// OpDef itself, so the executor needs nothing more.
OpRegistry& test_ops() {
  static OpRegistry* r = [] {
    auto* reg = new OpRegistry();  // leaked: nodes of static graphs may point into it
    reg->add(OpDef("test_async_double").input("x").output("y").infer(same_as_input(0))
                 .attr("delay_ms", AttrType::Int, int64_t{20}).attr("fail", AttrType::Bool, false)
                 .attr("wait_for_peer", AttrType::Bool, false)
                 .doc("test only: y = 2x, completed later by another thread"));
    reg->add(OpDef("test_log").input("x").output("y").infer(same_as_input(0)).side_effects()
                 .attr("tag", AttrType::Int).doc("test only: logs its tag, y = x"));
    KernelRegistry k(*reg);
    k.add("test_async_double", DeviceType::CPU, {DType::f32}, async_double);
    k.add("test_log", DeviceType::CPU, {DType::f32}, log_kernel);
    return reg;
  }();
  return *r;
}

Tensor async_double_op(const Tensor& x, const std::string& name, int64_t delay_ms = 20, bool fail = false,
                       bool wait_for_peer = false) {
  Graph g = Graph::of(x);
  Attrs a{{"delay_ms", delay_ms}, {"fail", fail}, {"wait_for_peer", wait_for_peer}};
  return g.add_op(test_ops().get("test_async_double"), std::vector<Tensor>{x}, a, name)[0];
}

// relu(x @ w + b) * 2 - mean over axis 1, on a [-1, 4] placeholder.
Tensor small_model(const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor h = relu(matmul(x, w) + b);
  return h * 2.0 - mean(h, {1}, true);
}

}  // namespace

TEST_CASE("executor: a graph gives the eager result, for any batch size", "[executor]") {
  Tensor w = rnd({4, 3}, 1, -1, 1, DType::f32), b = rnd({3}, 2, -1, 1, DType::f32);
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 4});
    g.mark_output("y", small_model(x, w, b));
  }
  for (int inter : {1, 3}) {
    Session sess(g, threads(inter));
    for (int64_t batch : {1, 5, 2}) {
      Tensor x = rnd({batch, 4}, 10 + batch, -1, 1, DType::f32);
      auto out = sess.run({{"x", x}}, {"y"});
      REQUIRE(out.size() == 1);
      REQUIRE_CLOSE(out[0], small_model(x, w, b), 1e-6, 1e-6);
    }
    // One plan per concrete shape signature.
    CompiledGraph& cg = sess.compiled({"y"});
    Tensor x2 = rnd({2, 4}, 3, -1, 1, DType::f32), x7 = rnd({7, 4}, 3, -1, 1, DType::f32);
    REQUIRE(cg.memory_plan(std::vector<Tensor>{x2}) == cg.memory_plan(std::vector<Tensor>{x2}));
    REQUIRE(cg.memory_plan(std::vector<Tensor>{x2}) != cg.memory_plan(std::vector<Tensor>{x7}));
  }
}

TEST_CASE("executor: repeated and multi-threaded runs are identical", "[executor]") {
  // Wide enough that several branches are ready at once.
  Graph g;
  std::vector<Tensor> ws;
  for (int i = 0; i < 6; ++i) ws.push_back(rnd({64, 64}, 100 + i, -0.2, 0.2, DType::f32));
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 64});
    Tensor acc;
    for (auto& w : ws) {
      Tensor h = tanh(matmul(x, w));
      acc = acc.defined() ? acc + h : h;
    }
    g.mark_output("y", sum(acc * acc, {1}));
  }
  Tensor x = rnd({96, 64}, 7, -1, 1, DType::f32);
  Tensor first;
  for (int inter : {1, 2, 4})
    for (bool planning : {false, true}) {
      Session sess(g, threads(inter, planning));
      for (int rep = 0; rep < 4; ++rep) {
        Tensor y = sess.run({{"x", x}}, {"y"})[0];
        if (!first.defined()) first = y;
        REQUIRE_CLOSE(y, first, 0, 0);  // bit for bit
      }
    }
}

TEST_CASE("executor: a failing node names itself and keeps its error class", "[executor]") {
  Graph g;
  {
    GraphScope scope(g);
    Tensor a = g.placeholder("a", {-1, -1}), b = g.placeholder("b", {-1, -1});
    Tensor p = g.add_op(op_def("matmul"), std::vector<Tensor>{a, b}, {}, "dense/matmul")[0];
    g.mark_output("p", p);
    Tensor idx = g.placeholder("idx", {-1}, DType::i64);
    g.mark_output("sel", g.add_op(op_def("index_select"), std::vector<Tensor>{a, idx}, Attrs{{"axis", int64_t{0}}},
                                  "pick")[0]);
  }
  for (int inter : {1, 3}) {
    Session sess(g, threads(inter));
    // Shapes known only at run time: the error comes from the node's infer.
    auto bad = [&] { sess.run({{"a", zeros({2, 3})}, {"b", zeros({4, 5})}}, {"p"}); };
    REQUIRE_THROWS_AS(bad(), ShapeError);
    REQUIRE_THROWS_WITH(bad(), Catch::StartsWith("node 'dense/matmul' (matmul): [matmul]"));
    // From inside a kernel.
    auto oob = [&] { sess.run({{"a", zeros({2, 3})}, {"idx", tensor(std::vector<int64_t>{0, 5})}}, {"sel"}); };
    REQUIRE_THROWS_AS(oob(), IndexError);
    REQUIRE_THROWS_WITH(oob(), Catch::StartsWith("node 'pick' (index_select): "));
    // The session is fine afterwards.
    auto ok = sess.run({{"a", ones({2, 3})}, {"b", ones({3, 1})}}, {"p"});
    REQUIRE_CLOSE(ok[0], full({2, 1}, 3.0));
  }
}

TEST_CASE("executor: asynchronous kernels complete from another thread", "[executor]") {
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {3});
    Tensor a = async_double_op(x, "slow");
    Tensor b = exp(x);  // runs while "slow" is pending
    g.mark_output("y", a + b);
    g.mark_output("bad", async_double_op(x, "failing", 5, /*fail=*/true));
  }
  Tensor x = tensor(std::vector<float>{1, 2, 3}, {3});
  for (int inter : {1, 2, 4}) {
    Session sess(g, threads(inter, true, /*rewrites=*/false));  // no fusion: count kernels
    for (int rep = 0; rep < 3; ++rep) {
      auto out = sess.run({{"x", x}}, {"y"});
      REQUIRE_CLOSE(out[0], x * 2.0 + exp(x), 1e-6);
      REQUIRE(sess.last_run_stats().kernels_executed == 3);  // async, exp, add
    }
    auto fail = [&] { sess.run({{"x", x}}, {"bad", "y"}); };
    REQUIRE_THROWS_AS(fail(), IndexError);
    REQUIRE_THROWS_WITH(fail(), Catch::StartsWith("node 'failing' (test_async_double): [test_async_double] asked"));
    join_async_threads();
  }
  // Eager dispatch cannot wait: a clear error, not a hang.
  const OpDef& async_op = test_ops().get("test_async_double");
  REQUIRE_THROWS_AS(call_op(async_op, std::vector<Tensor>{x}), ValueError);
  REQUIRE_THROWS_WITH(call_op(async_op, std::vector<Tensor>{x}),
                      Catch::Contains("asynchronously"));
  join_async_threads();
}

TEST_CASE("executor: no thread blocks waiting for an asynchronous kernel", "[executor]") {
  // Each kernel completes only after the other has started. A single
  // inter-op thread that waited for the first would never start the second.
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {2});
    Tensor a = async_double_op(x, "a", 0, false, true);
    Tensor b = async_double_op(x, "b", 1, false, true);
    g.mark_output("y", a + b);
  }
  for (int inter : {1, 2}) {
    g_async_started = 0;
    Session sess(g, threads(inter, true, /*rewrites=*/false));  // CSE would merge a and b
    auto out = sess.run({{"x", tensor(std::vector<float>{1, 2}, {2})}}, {"y"});
    REQUIRE_CLOSE(out[0], tensor(std::vector<float>{4, 8}, {2}));
    join_async_threads();
  }
}

TEST_CASE("executor: fetch intermediates by node name, prune what is not needed", "[executor]") {
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {2});
    Tensor unused = g.placeholder("unused", {2});
    Tensor h = g.add_op(op_def("exp"), std::vector<Tensor>{x}, {}, "hidden")[0];
    g.mark_output("y", h * 3.0);
    g.mark_output("z", unused + 1.0);
  }
  Session sess(g, threads(1));
  Tensor x = tensor(std::vector<float>{0, 1}, {2});
  auto out = sess.run({{"x", x}}, {"hidden", "hidden:0", "y"});
  REQUIRE_CLOSE(out[0], exp(x), 1e-6);
  REQUIRE_CLOSE(out[1], exp(x), 1e-6);
  REQUIRE_CLOSE(out[2], exp(x) * 3.0, 1e-6);
  // "unused" is not needed by y: no feed required, and feeding it is fine.
  REQUIRE(sess.compiled({"y"}).feed_names() == std::vector<std::string>{"x"});
  REQUIRE_NOTHROW(sess.run({{"x", x}, {"unused", x}}, {"y"}));
  REQUIRE_THROWS_AS(sess.run({{"x", x}}, {"nope"}), NotFoundError);
  REQUIRE_THROWS_AS(sess.run({{"x", x}}, {"hidden:3"}), IndexError);
}

TEST_CASE("executor: targets update eager Variables in place", "[executor]") {
  Tensor w = tensor(std::vector<float>{1, 2, 3}, {3}).mark_variable("w");
  void* buffer = w.raw_data();
  uint64_t version = w.impl()->storage->version();
  Graph g;
  {
    GraphScope scope(g);
    Tensor delta = g.placeholder("delta", {3});
    Tensor before = w * 2.0;  // reads w before the update
    g.add_op(op_def("assign_add"), std::vector<Tensor>{w, delta}, {}, "update");
    Tensor after = w * 3.0;   // ordered after the update by the graph
    g.mark_output("before", before);
    g.mark_output("after", after);
  }
  Session sess(g, threads(2));
  Tensor d = tensor(std::vector<float>{10, 20, 30}, {3});
  auto out = sess.run({{"delta", d}}, {"before", "after", "w"}, {"update"});
  REQUIRE_CLOSE(out[0], tensor(std::vector<float>{2, 4, 6}, {3}));
  REQUIRE_CLOSE(out[1], tensor(std::vector<float>{33, 66, 99}, {3}));
  REQUIRE_CLOSE(out[2], tensor(std::vector<float>{11, 22, 33}, {3}));  // the value after the step
  REQUIRE_CLOSE(w, tensor(std::vector<float>{11, 22, 33}, {3}));       // the eager tensor itself
  REQUIRE(w.raw_data() == buffer);                                      // never a copy
  REQUIRE(w.impl()->storage->version() > version);
  sess.run({{"delta", d}}, {}, {"update"});
  REQUIRE_CLOSE(w, tensor(std::vector<float>{21, 42, 63}, {3}));
  REQUIRE_CLOSE(out[2], tensor(std::vector<float>{11, 22, 33}, {3}));  // the fetched copy did not move
  // An eager update is seen by the next run: the graph holds w by reference.
  w.fill_(0.0);
  out = sess.run({{"delta", d}}, {"after"}, {"update"});
  REQUIRE_CLOSE(out[0], d * 3.0);
}

TEST_CASE("executor: assign to a constant is refused at compile time", "[executor]") {
  Tensor zero = zeros({2}), one = ones({2});  // eager: not Variables
  Graph g;
  {
    GraphScope scope(g);
    Tensor c = g.constant(zero, "c");
    g.add_op(op_def("assign"), std::vector<Tensor>{c, one}, {}, "write");
  }
  Session sess(g);
  REQUIRE_THROWS_AS(sess.run({}, {}, {"write"}), ValueError);
  REQUIRE_THROWS_WITH(sess.run({}, {}, {"write"}), Catch::Contains("constant") && Catch::Contains("mark_variable"));
}

TEST_CASE("executor: control dependencies order nodes and keep them alive", "[executor]") {
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {4});
    Attrs t1{{"tag", int64_t{1}}}, t2{{"tag", int64_t{2}}}, t3{{"tag", int64_t{3}}};
    Tensor first = g.add_op(test_ops().get("test_log"), std::vector<Tensor>{x}, t1, "first")[0];
    Tensor second = g.add_op(test_ops().get("test_log"), std::vector<Tensor>{x}, t2, "second")[0];
    Tensor third = g.add_op(test_ops().get("test_log"), std::vector<Tensor>{x}, t3, "third")[0];
    // Reverse of the creation order: third, then second, then first.
    g.add_control_dependency(third, second);
    g.add_control_dependency(second, first);
    g.mark_output("y", first);
  }
  for (int inter : {1, 4}) {
    Session sess(g, threads(inter));
    for (int rep = 0; rep < 5; ++rep) {
      g_log.clear();
      sess.run({{"x", ones({4})}}, {"y"});  // second and third are kept by the control edges
      REQUIRE(g_log == std::vector<int64_t>{3, 2, 1});
    }
  }
}

TEST_CASE("executor: traced functions run like the eager function", "[executor]") {
  Tensor w = rnd({5, 3}, 4, -1, 1, DType::f32).mark_variable("w");
  auto fn = [&](const std::vector<Tensor>& in) {
    Tensor logits = matmul(in[0], w);
    return std::vector<Tensor>{softmax(logits), sum(logits * logits)};
  };
  Tensor x = rnd({6, 5}, 5, -1, 1, DType::f32);
  TracedFunction f = trace(fn, {x});
  Session sess(f.graph, threads(2));
  auto out = sess.run({{f.input_names[0], x}}, f.output_names);
  auto want = fn({x});
  REQUIRE_CLOSE(out[0], want[0], 1e-6);
  REQUIRE_CLOSE(out[1], want[1], 1e-5);
}

TEST_CASE("executor: symbolic gradients match eager autograd on an MLP", "[executor]") {
  Tensor w1 = rnd({4, 8}, 11, -0.5, 0.5).mark_variable("w1");
  Tensor b1 = rnd({8}, 12, -0.1, 0.1).mark_variable("b1");
  Tensor w2 = rnd({8, 2}, 13, -0.5, 0.5).mark_variable("w2");
  auto loss_of = [&](const Tensor& x, const Tensor& t) {
    Tensor h = tanh(matmul(x, w1) + b1);
    Tensor d = matmul(h, w2) - t;
    return mean(d * d);
  };
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 4}, DType::f64), t = g.placeholder("t", {-1, 2}, DType::f64);
    Tensor loss = loss_of(x, t);
    auto grads = gradients({loss}, {w1, b1, w2});
    g.mark_output("loss", loss);
    g.mark_output("g_w1", grads[0]);
    g.mark_output("g_b1", grads[1]);
    g.mark_output("g_w2", grads[2]);
  }
  Tensor x = rnd({5, 4}, 14), t = rnd({5, 2}, 15);
  Session sess(g, threads(2));
  auto out = sess.run({{"x", x}, {"t", t}}, {"loss", "g_w1", "g_b1", "g_w2"});

  for (Tensor* p : {&w1, &b1, &w2}) p->set_requires_grad(true);
  Tensor loss = loss_of(x, t);
  loss.backward();
  REQUIRE_CLOSE(out[0], loss, 1e-10);
  REQUIRE_CLOSE(out[1], w1.grad(), 1e-10);
  REQUIRE_CLOSE(out[2], b1.grad(), 1e-10);
  REQUIRE_CLOSE(out[3], w2.grad(), 1e-10);
}

TEST_CASE("executor: a sum_to_like that sums nothing passes its input on, safely", "[executor]") {
  // Gradients built with unknown dims keep sum_to_like nodes that at run time
  // often sum nothing; the executor then forwards the input (no kernel). The
  // forwarded buffer must not be overwritten while the alias is still read:
  // u = a * s would be planned in place over `a` if `a` were reusable.
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 3}), like = g.placeholder("like", {-1, 3});
    Tensor a = exp(x);
    Tensor s = sum_to_like(a, like);
    Tensor u = a * s;
    g.mark_output("y", u + s);
  }
  Tensor x = rnd({4, 3}, 31, -1, 1, DType::f32);
  for (bool forwarded : {true, false}) {
    Tensor like = forwarded ? x : ones({1, 3});
    Tensor a = exp(x), s = sum_to_like(a, like);
    Tensor want = a * s + s;
    for (bool planning : {false, true})
      for (int inter : {1, 2}) {
        INFO("forwarded " << forwarded << ", planning " << planning << ", inter " << inter);
        Session sess(g, threads(inter, planning, /*rewrites=*/false));  // fusion would hide the hazard
        for (int run = 0; run < 2; ++run) REQUIRE_CLOSE(sess.run({{"x", x}, {"like", like}}, {"y"})[0], want);
        REQUIRE(sess.last_run_stats().kernels_executed == (forwarded ? 3 : 4));
      }
  }
}

TEST_CASE("executor: bad feeds are clear errors naming the placeholder", "[executor]") {
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 3});
    g.mark_output("y", x * 2.0);
  }
  Session sess(g);
  Tensor ok = zeros({2, 3});
  REQUIRE_THROWS_AS(sess.run({{"x", ok}, {"q", ok}}, {"y"}), NotFoundError);
  REQUIRE_THROWS_WITH(sess.run({{"x", ok}, {"q", ok}}, {"y"}), Catch::Contains("'q'") && Catch::Contains("x"));
  REQUIRE_THROWS_AS(sess.run({}, {"y"}), ValueError);
  REQUIRE_THROWS_WITH(sess.run({}, {"y"}), Catch::Contains("placeholder 'x'") && Catch::Contains("needs a feed"));
  REQUIRE_THROWS_AS(sess.run({{"x", zeros({2, 3}, DType::f64)}}, {"y"}), TypeError);
  REQUIRE_THROWS_WITH(sess.run({{"x", zeros({2, 3}, DType::f64)}}, {"y"}),
                      Catch::Contains("placeholder 'x' expects f32"));
  REQUIRE_THROWS_AS(sess.run({{"x", zeros({2, 4})}}, {"y"}), ShapeError);
  REQUIRE_THROWS_AS(sess.run({{"x", zeros({3})}}, {"y"}), ShapeError);
  REQUIRE_THROWS_AS(sess.run({{"x", ok}, {"x", ok}}, {"y"}), ValueError);
  REQUIRE_THROWS_AS(sess.run({{"x", Tensor()}}, {"y"}), ValueError);
  REQUIRE_THROWS_AS(sess.run({{"x", ok}}, {}), ValueError);  // nothing to run
}

TEST_CASE("executor: nodes added after a run are compiled in", "[executor]") {
  Graph g;
  Tensor x;
  {
    GraphScope scope(g);
    x = g.placeholder("x", {2});
    g.mark_output("y", x + 1.0);
  }
  Session sess(g);
  REQUIRE_CLOSE(sess.run({{"x", zeros({2})}}, {"y"})[0], ones({2}));
  {
    GraphScope scope(g);
    g.mark_output("y", x + 2.0);
  }
  REQUIRE_CLOSE(sess.run({{"x", zeros({2})}}, {"y"})[0], full({2}, 2.0));
}

TEST_CASE("executor: mixed dtypes are promoted as in eager mode", "[executor]") {
  Graph g;
  {
    GraphScope scope(g);
    Tensor a = g.placeholder("a", {3}), n = g.placeholder("n", {3}, DType::i64);
    g.mark_output("y", a * n + n);
  }
  Tensor a = tensor(std::vector<float>{0.5f, 1.5f, -2}, {3}), n = tensor(std::vector<int64_t>{1, 2, 3});
  Session sess(g);
  Tensor y = sess.run({{"a", a}, {"n", n}}, {"y"})[0];
  REQUIRE(y.dtype() == DType::f32);
  REQUIRE_CLOSE(y, a * n + n);
}

TEST_CASE("executor: every intermediate is freed, run_ordered takes feeds by position", "[executor]") {
  Tensor w = rnd({32, 32}, 21, -0.3, 0.3, DType::f32);
  Graph g;
  {
    GraphScope scope(g);
    Tensor x = g.placeholder("x", {-1, 32}), s = g.placeholder("s", {});
    Tensor h = x;
    for (int i = 0; i < 4; ++i) h = relu(matmul(h, w)) * s + h;
    g.mark_output("y", h);
    g.mark_output("t", sum(h));
  }
  Tensor x = rnd({16, 32}, 22, -1, 1, DType::f32), s = scalar(0.5);
  for (bool planning : {false, true}) {
    CompiledGraph cg(g, {"t", "y"}, {}, threads(2, planning));
    REQUIRE(cg.feed_names() == std::vector<std::string>{"x", "s"});
    cg.run_ordered(std::vector<Tensor>{x, s});  // plans and caches are built
    size_t before = cpu_allocator().stats().bytes_in_use;
    {
      RunStats stats;
      auto out = cg.run_ordered(std::vector<Tensor>{x, s}, &stats);
      REQUIRE_CLOSE(out[1], cg.run({{"s", s}, {"x", x}})[1], 0, 0);
      REQUIRE(stats.kernels_executed > 0);
      REQUIRE(stats.peak_bytes >= before);
    }
    REQUIRE(cpu_allocator().stats().bytes_in_use == before);  // nothing held once results are gone
  }
}

TEST_CASE("executor: thread counts never oversubscribe by default", "[executor]") {
  int cores = available_cores();
  int inter = resolve_inter_op_threads(0);
  REQUIRE(inter == (cores <= 4 ? 1 : cores / 2));
  REQUIRE(resolve_intra_op_threads(0, inter) * inter <= std::max(cores, inter));
  REQUIRE(resolve_inter_op_threads(3) == 3);
  REQUIRE(resolve_intra_op_threads(2, 3) == 2);
  REQUIRE_THROWS_AS(resolve_inter_op_threads(-1), ValueError);
  REQUIRE_THROWS_AS(resolve_intra_op_threads(-2, 1), ValueError);

  Graph g;
  {
    GraphScope scope(g);
    g.mark_output("y", g.placeholder("x", {2}) * 2.0);
  }
  CompiledGraph one(g, {"y"}, {}, threads(1)), three(g, {"y"}, {}, threads(3));
  REQUIRE(one.inter_op_threads() == 1);
  REQUIRE(three.inter_op_threads() == 3);  // the caller and two pool workers
  REQUIRE(three.intra_op_threads() == std::max(1, cores / 3));

  std::atomic<int> ran{0};
  {
    ThreadPool pool(2);
    for (int i = 0; i < 100; ++i) pool.schedule([&] { ran.fetch_add(1); });
  }  // the destructor drains the queue
  REQUIRE(ran.load() == 100);
}
