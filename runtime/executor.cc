// Run half of the executor: dataflow scheduling of one step over the records
// built by executor_build.cc.
//
// A node becomes ready when its pending count (distinct predecessors through
// data and control edges) reaches zero. The thread that completes a node runs
// the cheap successors itself (views, structural nodes, tiny kernels) and
// keeps one expensive successor when it has nothing else to do; the rest go
// to the inter-op pool, or — with no pool — to the calling thread, which
// takes part in the step. Completion order never changes results: values flow
// only along edges and buffers are shared only as the memory plan proves safe.
//
// NOTE: once a thread has decremented `remaining` to zero and signalled the
// caller, the step may be reset or reused at once; no code touches the
// StepState after that point.
#include <chrono>

#include "core/device_name.h"
#include "distributed/cluster.h"
#include "runtime/multi_device.h"
#include "runtime/executor.h"
#include "distributed/collective_queue.h"
#include "runtime/executor_impl.h"
#include "runtime/thread_pool.h"

namespace ndflow {

StepState::StepState(const ExecPlan& p)
    : plan(&p), slots(p.slots.size()), box(p.slots.size()),
      pending(new std::atomic<int32_t>[p.nodes.size()]), refs(new std::atomic<int32_t>[p.slots.size()]) {}

namespace {

using Clock = std::chrono::steady_clock;

int64_t ns_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// A LIFO of ready nodes on one thread's stack; spills to the heap only for
// very wide fan-out.
class ReadyStack {
 public:
  bool empty() const { return n_ == 0 && spill_.empty(); }
  void push(int32_t id) {
    if (n_ < kInline) items_[n_++] = id;
    else spill_.push_back(id);
  }
  int32_t pop() {
    if (!spill_.empty()) {
      int32_t v = spill_.back();
      spill_.pop_back();
      return v;
    }
    return items_[--n_];
  }

 private:
  static constexpr int kInline = 32;
  int32_t items_[kInline];
  int n_ = 0;
  std::vector<int32_t> spill_;
};

void run_loop(StepState& s, ReadyStack& local);

void run_chain(StepState& s, int32_t first) {
  ReadyStack local;
  local.push(first);
  run_loop(s, local);
}

// Hands a ready node to another thread: a pool worker, or the caller.
void offload(StepState& s, int32_t id) {
  if (s.pool) {
    StepState* sp = &s;
    s.pool->schedule([sp, id] { run_chain(*sp, id); });
    return;
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.caller_queue.push_back(id);
  }
  s.cv.notify_all();
}

void record_error(StepState& s, int32_t id, std::exception_ptr e) {
  const Node& n = *s.plan->graph.node(s.plan->nodes[static_cast<size_t>(id)].graph_id);
  std::exception_ptr wrapped = with_node_context(std::move(e), n);
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.error) s.error = std::move(wrapped);
  s.cancelled.store(true, std::memory_order_release);
}

// Drops the step's reference to a slot; a dead value the memory plan hands
// on leaves its buffer in the receiver's box first.
void release(StepState& s, int32_t slot) {
  if (s.refs[slot].fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  Tensor& t = s.slots[static_cast<size_t>(slot)];
  if (s.memory && t.defined()) {
    int32_t to = s.memory->hand_to[static_cast<size_t>(slot)];
    if (to >= 0) s.box[static_cast<size_t>(to)] = t.impl()->storage;
  }
  t = Tensor();
}

// Bookkeeping once node `id` has run (or was skipped after an error):
// inputs released before successors are made ready — a receiver of a dead
// buffer must find it in its box — then outputs published, successors
// scheduled. `local` null (asynchronous completion on a foreign thread)
// offloads every successor. Returns true when this was the step's last node.
bool complete(StepState& s, int32_t id, ReadyStack* local) {
  const ExecPlan& plan = *s.plan;
  const NodeRecord& r = plan.nodes[static_cast<size_t>(id)];
  for (int32_t k = 0; k < r.num_in; ++k) release(s, plan.input_slots[static_cast<size_t>(r.in_begin + k)]);
  for (int32_t j = 0; j < r.num_out; ++j) {
    int32_t slot = r.out_begin + j;
    const SlotRecord& sr = plan.slots[static_cast<size_t>(slot)];
    const Tensor& t = s.slots[static_cast<size_t>(slot)];
    for (int32_t f = 0; f < sr.num_fetch; ++f)
      (*s.results)[static_cast<size_t>(plan.fetch_of_slot[static_cast<size_t>(sr.fetch_begin + f)])] = t;
    if (sr.initial_refs == 0) {  // nobody reads it: free (or hand on) at once
      s.refs[slot].store(1, std::memory_order_relaxed);
      release(s, slot);
    }
  }
  ReadyStack expensive;
  for (int32_t k = 0; k < r.num_succ; ++k) {
    int32_t succ = plan.successors[static_cast<size_t>(r.succ_begin + k)];
    if (s.pending[succ].fetch_sub(1, std::memory_order_acq_rel) != 1) continue;
    if (local && (!s.pool || s.shapes->run_inline[static_cast<size_t>(succ)])) local->push(succ);
    else expensive.push(succ);
  }
  // Keep one expensive node when this thread would otherwise go idle: it
  // saves a hand-off, and the kernel's intra-op threads do the parallel work.
  if (local && local->empty() && !expensive.empty()) local->push(expensive.pop());
  while (!expensive.empty()) offload(s, expensive.pop());
  if (s.remaining.fetch_sub(1, std::memory_order_acq_rel) != 1) return false;
  std::lock_guard<std::mutex> lock(s.mu);
  s.finished = true;
  s.cv.notify_all();
  return true;
}

void bump_versions(StepState& s, const NodeRecord& r) {
  for (int32_t k = 0; k < r.num_mut; ++k) {
    const Tensor& t = s.slots[static_cast<size_t>(s.plan->mutated_slots[static_cast<size_t>(r.mut_begin + k)])];
    if (t.defined()) t.impl()->storage->bump_version();
  }
}

// Completion of an asynchronous kernel, from whatever thread calls AsyncDone.
class AsyncToken final : public AsyncDone::Sink {
 public:
  AsyncToken(StepState& s, int32_t id, Clock::time_point start, std::string name)
      : s_(&s), id_(id), start_(start), name_(std::move(name)) {}
  // True for the first of the executor and the kernel to claim completion.
  bool claim() { return !fired_.exchange(true, std::memory_order_acq_rel); }
  void complete(std::exception_ptr error) override {
    // NOTE: a second call must not touch the step, which may be gone.
    NDF_CHECK(claim(), InternalError, "asynchronous kernel of node '", name_, "' completed twice");
    StepState& s = *s_;
    if (error) record_error(s, id_, std::move(error));
    else bump_versions(s, s.plan->nodes[static_cast<size_t>(id_)]);
    if (s.collect_stats) s.kernel_ns.fetch_add(ns_since(start_), std::memory_order_relaxed);
    ndflow::complete(s, id_, nullptr);
  }

 private:
  StepState* s_;
  int32_t id_;
  Clock::time_point start_;
  std::string name_;
  std::atomic<bool> fired_{false};
};

class AsyncHostImpl final : public KernelContext::AsyncHost {
 public:
  AsyncHostImpl(StepState& s, int32_t id, Clock::time_point start) : s_(s), id_(id), start_(start) {}
  AsyncDone begin_async() override {
    const Node& n = *s_.plan->graph.node(s_.plan->nodes[static_cast<size_t>(id_)].graph_id);
    token = std::make_shared<AsyncToken>(s_, id_, start_, n.name);
    return AsyncDone(token);
  }
  std::shared_ptr<AsyncToken> token;

 private:
  StepState& s_;
  int32_t id_;
  Clock::time_point start_;
};

// x converted to `dtype` (promotion of a kernel's inputs), or copied when
// the dtype is its own (a fetched Variable). Kernels directly, not call_op:
// the calling thread may be inside a GraphScope, where op calls add nodes.
Tensor convert_or_copy(const Tensor& x, DType dtype, int threads) {
  static const OpDef& cast_op = op_def("cast");
  static const OpDef& copy_op = op_def("contiguous");
  bool cast = dtype != x.dtype();
  const OpDef& op = cast ? cast_op : copy_op;
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  Attrs attrs;
  if (cast) attrs.set("dtype", dtype);
  KernelContext ctx(op, std::span<const Tensor>(&x, 1), std::span<Tensor>(&out, 1), attrs, threads);
  KernelFn k = op.kernel(x.device().type);
  NDF_CHECK(k, NotFoundError, "[", op.name(), "] has no kernel for device ", x.device().str());
  k(ctx);
  return out;
}

// A kernel output, in a buffer the memory plan hands it when there is one.
void allocate_output(StepState& s, int32_t slot) {
  const TensorMeta& m = s.shapes->slot_meta[static_cast<size_t>(slot)];
  std::shared_ptr<Storage> st;
  if (s.memory) {
    if (int32_t a = s.memory->in_place_of[static_cast<size_t>(slot)]; a >= 0) {
      if (const Tensor& src = s.slots[static_cast<size_t>(a)]; src.defined()) st = src.impl()->storage;
    } else if (s.memory->reuse_of[static_cast<size_t>(slot)] >= 0) {
      st = std::move(s.box[static_cast<size_t>(slot)]);
    }
  }
  if (st && st->nbytes() >= static_cast<size_t>(shape_numel(m.shape)) * dtype_size(m.dtype)) {
    auto impl = std::make_shared<TensorImpl>();
    impl->storage = std::move(st);
    impl->shape = m.shape;
    impl->strides = contiguous_strides(m.shape);
    impl->dtype = m.dtype;
    impl->device = m.device;
    s.slots[static_cast<size_t>(slot)] = Tensor(std::move(impl));
    return;
  }
  s.slots[static_cast<size_t>(slot)] = Tensor::empty(m.shape, m.dtype, m.device);
}

// Runs a kernel node; false when it completes asynchronously later.
bool run_kernel(StepState& s, int32_t id, const NodeRecord& r) {
  const ExecPlan& plan = *s.plan;
  Tensor inline_in[6];
  std::vector<Tensor> heap_in;
  Tensor* in = inline_in;
  if (r.num_in > 6) {
    heap_in.resize(static_cast<size_t>(r.num_in));
    in = heap_in.data();
  }
  for (int32_t k = 0; k < r.num_in; ++k) {
    in[k] = s.slots[static_cast<size_t>(plan.input_slots[static_cast<size_t>(r.in_begin + k)])];
    NDF_CHECK(in[k].defined(), InternalError, "input ", k, " was not produced");
    if (r.has_casts)
      if (int8_t to = plan.input_cast[static_cast<size_t>(r.in_begin + k)]; to >= 0)
        in[k] = convert_or_copy(in[k], static_cast<DType>(to), plan.intra_threads);
  }
  for (int32_t j = 0; j < r.num_out; ++j) allocate_output(s, r.out_begin + j);
  KernelContext ctx(*r.op, std::span<const Tensor>(in, static_cast<size_t>(r.num_in)),
                    std::span<Tensor>(s.slots.data() + r.out_begin, static_cast<size_t>(r.num_out)),
                    *r.attrs, plan.intra_threads);
  bool timed = s.collect_stats;
  Clock::time_point t0 = timed ? Clock::now() : Clock::time_point();
  AsyncHostImpl host(s, id, t0);
  ctx.async_host = &host;
  s.kernels.fetch_add(1, std::memory_order_relaxed);
  try {
    r.kernel(ctx);
  } catch (...) {
    // A kernel that deferred and then threw: whoever claims completion first
    // finishes the node; if its done() already did, the step may be gone.
    if (ctx.deferred && !host.token->claim()) return false;
    record_error(s, id, std::current_exception());
    return true;
  }
  if (ctx.deferred) return false;  // NOTE: the step may already be complete here
  if (timed) s.kernel_ns.fetch_add(ns_since(t0), std::memory_order_relaxed);
  bump_versions(s, r);
  return true;
}

bool execute(StepState& s, int32_t id) {
  const NodeRecord& r = s.plan->nodes[static_cast<size_t>(id)];
  Tensor* out = s.slots.data() + r.out_begin;  // only structural and view nodes write it here
  switch (r.kind) {
    case NodeKind::Placeholder: *out = s.feeds[r.feed_index]; return true;
    case NodeKind::Variable:
    case NodeKind::Constant: *out = *r.value; return true;
    case NodeKind::View: {
      const Tensor& x = s.slots[static_cast<size_t>(s.plan->input_slots[static_cast<size_t>(r.in_begin)])];
      NDF_CHECK(x.defined(), InternalError, "input 0 was not produced");
      *out = r.view(x, *r.attrs);
      return true;
    }
    case NodeKind::Kernel:
      if (s.shapes->forward_input[static_cast<size_t>(id)]) {
        *out = s.slots[static_cast<size_t>(s.plan->input_slots[static_cast<size_t>(r.in_begin)])];
        NDF_CHECK(out->defined(), InternalError, "input 0 was not produced");
        return true;
      }
      return run_kernel(s, id, r);
  }
  return true;
}

void run_loop(StepState& s, ReadyStack& local) {
  while (!local.empty()) {
    int32_t id = local.pop();
    bool sync = true;
    if (!s.cancelled.load(std::memory_order_acquire)) {
      try {
        sync = execute(s, id);
      } catch (...) {
        record_error(s, id, std::current_exception());
      }
    }
    if (sync && complete(s, id, &local)) return;
  }
}

// The caller's part of a step: the roots, then whatever is handed to it,
// until every node has completed.
void run_step(StepState& s) {
  const ExecPlan& plan = *s.plan;
  ReadyStack local, expensive;
  for (int32_t root : plan.roots) {
    if (!s.pool || s.shapes->run_inline[static_cast<size_t>(root)]) local.push(root);
    else expensive.push(root);
  }
  if (local.empty() && !expensive.empty()) local.push(expensive.pop());
  while (!expensive.empty()) offload(s, expensive.pop());
  run_loop(s, local);
  std::unique_lock<std::mutex> lock(s.mu);
  for (;;) {
    s.cv.wait(lock, [&] { return s.finished || !s.caller_queue.empty(); });
    if (s.caller_queue.empty()) return;  // finished
    int32_t id = s.caller_queue.front();
    s.caller_queue.pop_front();
    lock.unlock();
    run_chain(s, id);
    lock.lock();
  }
}

std::string shape_key(std::span<const Tensor> feeds) {
  std::string key;
  for (const Tensor& t : feeds) {
    auto rank = static_cast<int64_t>(t.shape().size());
    key.append(reinterpret_cast<const char*>(&rank), sizeof rank);
    key.append(reinterpret_cast<const char*>(t.shape().data()), t.shape().size() * sizeof(int64_t));
  }
  return key;
}

}  // namespace

CompiledGraph::CompiledGraph(const Graph& graph, const std::vector<std::string>& fetches,
                             const std::vector<std::string>& targets, const SessionOptions& options,
                             std::shared_ptr<ThreadPool> pool)
    : plan_(build_exec_plan(graph, fetches, targets, options)), pool_(std::move(pool)),
      source_bound_(graph.id_bound()), collect_stats_(options.collect_stats) {
  int inter = resolve_inter_op_threads(options.inter_op_threads);
  // The calling thread runs nodes too, so the pool needs one thread fewer.
  if (!pool_ && inter > 1) pool_ = std::make_shared<ThreadPool>(inter - 1);
  if (pool_ && pool_->num_threads() == 0) pool_.reset();
  inter_threads_ = pool_ ? pool_->num_threads() + 1 : 1;
  setup_placement(options);
}

void CompiledGraph::setup_placement(const SessionOptions& options) {
  if (!options.place) return;
  Graph& g = plan_->graph;
  bool names_worker = false;
  for (const Node* n : g.nodes())
    if (!n->device.empty() && DeviceName::parse(n->device).worker >= 0) names_worker = true;
  // A graph that names workers is one program over the whole cluster;
  // otherwise each rank runs its own copy on its own devices (data parallel).
  int world = 1, rank = 0;
  if (names_worker) {
    distributed::init();
    world = distributed::world_size();
    rank = distributed::rank();
  } else if (distributed::is_initialized()) {
    rank = distributed::rank();
  }
  PlacerOptions po;
  po.soft_placement = options.soft_placement;
  po.default_worker = names_worker ? 0 : rank;
  if (names_worker) {
    po.devices = cluster_devices(world);
  } else {
    for (int k = 0; k < num_cpu_devices(); ++k) po.devices.push_back(DeviceName::full(rank, DeviceType::CPU, k));
  }
  placement_ = place(g, po);
  std::vector<int> used = placement_.used_devices();
  bool local_cpu0 = used.size() == 1 &&
                    placement_.devices[static_cast<size_t>(used[0])] == DeviceName::full(rank, DeviceType::CPU, 0);
  if (used.empty() || local_cpu0) return;
  multi_ = std::make_unique<MultiDeviceRunner>(g.clone(), placement_, plan_->ends.fetches, plan_->ends.targets,
                                               plan_->feed_names, rank, options);
}

std::string CompiledGraph::placement_report() const {
  std::string r = placement_.report(plan_->graph);
  if (multi_) {
    const PartitionedGraph& p = multi_->partitions();
    r += str_cat(p.parts.size(), " partitions, ", p.num_sends, " send/recv pairs\n");
  } else {
    r += "1 partition (no send/recv)\n";
  }
  return r;
}

CompiledGraph::~CompiledGraph() = default;

const std::vector<std::string>& CompiledGraph::feed_names() const { return plan_->feed_names; }
const Graph& CompiledGraph::graph() const { return plan_->graph; }
size_t CompiledGraph::num_nodes() const { return plan_->nodes.size(); }
const std::vector<std::string>& CompiledGraph::pass_log() const { return plan_->pass_log; }
int CompiledGraph::intra_op_threads() const { return plan_->intra_threads; }

std::shared_ptr<const ShapePlan> CompiledGraph::shape_plan(std::span<const Tensor> feeds) {
  if (plan_->all_feeds_static) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!static_shapes_) static_shapes_ = build_shape_plan(*plan_, feeds.data());
    return static_shapes_;
  }
  std::string key = shape_key(feeds);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = shape_cache_.find(key); it != shape_cache_.end()) return it->second;
  }
  std::shared_ptr<const ShapePlan> sp = build_shape_plan(*plan_, feeds.data());
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = shape_cache_.emplace(key, sp);
  if (fresh) {
    shape_cache_order_.push_back(key);
    if (shape_cache_order_.size() > kMaxShapePlans) {
      shape_cache_.erase(shape_cache_order_.front());
      shape_cache_order_.erase(shape_cache_order_.begin());
    }
  }
  return it->second;
}

std::shared_ptr<const MemoryPlan> CompiledGraph::memory_plan(std::span<const Tensor> feeds) {
  check_feeds(*plan_, feeds.data(), feeds.size());
  return shape_plan(feeds)->memory;
}

std::unique_ptr<StepState> CompiledGraph::acquire_state() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!free_states_.empty()) {
      auto s = std::move(free_states_.back());
      free_states_.pop_back();
      return s;
    }
  }
  return std::make_unique<StepState>(*plan_);
}

void CompiledGraph::release_state(std::unique_ptr<StepState> s) {
  std::lock_guard<std::mutex> lock(mu_);
  free_states_.push_back(std::move(s));
}

std::vector<Tensor> CompiledGraph::run(const std::vector<std::pair<std::string, Tensor>>& feeds,
                                       RunStats* stats) {
  const ExecPlan& plan = *plan_;
  std::vector<Tensor> ordered(plan.feed_names.size());
  std::vector<char> seen(plan.feed_names.size(), 0);
  for (auto& [name, t] : feeds) {
    size_t i = 0;
    while (i < plan.feed_names.size() && plan.feed_names[i] != name) ++i;
    if (i == plan.feed_names.size()) {
      bool exists = std::find(plan.source_placeholders.begin(), plan.source_placeholders.end(), name) !=
                    plan.source_placeholders.end();
      if (exists) continue;  // a placeholder these fetches do not need
      std::string all;
      for (auto& n : plan.source_placeholders) all += (all.empty() ? "" : ", ") + n;
      fail<NotFoundError>("feed '", name, "' is not a placeholder of the graph (placeholders: ",
                          all.empty() ? "none" : all, ")");
    }
    NDF_CHECK(!seen[i], ValueError, "placeholder '", name, "' is fed twice");
    seen[i] = 1;
    ordered[i] = t;
  }
  for (size_t i = 0; i < ordered.size(); ++i) {
    if (seen[i]) continue;
    const Node& ph = *plan.graph.node(plan.nodes[static_cast<size_t>(plan.feed_nodes[i])].graph_id);
    fail<ValueError>("placeholder '", plan.feed_names[i], "' (", dtype_name(ph.outputs[0].dtype),
                     shape_str(ph.outputs[0].shape), ") needs a feed: the fetches and targets depend on it");
  }
  return run_ordered(ordered, stats);
}

std::vector<Tensor> CompiledGraph::run_ordered(std::span<const Tensor> feeds, RunStats* stats) {
  const ExecPlan& plan = *plan_;
  check_feeds(plan, feeds.data(), feeds.size());
  if (multi_) return multi_->run(feeds, stats);
  Clock::time_point t0 = Clock::now();
  if (stats) cpu_allocator().reset_peak();
  std::shared_ptr<const ShapePlan> shapes = shape_plan(feeds);
  std::vector<Tensor> results(plan.fetch_slots.size());

  std::unique_ptr<StepState> state = acquire_state();
  StepState& s = *state;
  s.shapes = shapes.get();
  s.memory = shapes->memory.get();
  s.pool = pool_.get();
  s.feeds = feeds.data();
  s.results = &results;
  s.collect_stats = collect_stats_;
  for (size_t i = 0; i < plan.nodes.size(); ++i) s.pending[i].store(plan.nodes[i].initial_pending, std::memory_order_relaxed);
  for (size_t i = 0; i < plan.slots.size(); ++i) s.refs[i].store(plan.slots[i].initial_refs, std::memory_order_relaxed);
  s.remaining.store(static_cast<int32_t>(plan.nodes.size()), std::memory_order_relaxed);
  s.cancelled.store(false, std::memory_order_relaxed);
  s.kernels.store(0, std::memory_order_relaxed);
  s.kernel_ns.store(0, std::memory_order_relaxed);
  s.finished = plan.nodes.empty();
  s.error = nullptr;

  distributed::CollectiveStep collectives;  // plan order and plan check (distributed/collective_queue.h)
  if (plan.collectives) collectives = plan.collectives->begin_step(shapes->slot_meta, &s.cancelled);
  run_step(s);
  collectives = distributed::CollectiveStep();  // over: the next step with collectives may begin

  std::exception_ptr error = s.error;
  if (error) {  // skipped receivers leave buffers in boxes; slots are already released
    for (auto& t : s.slots) t = Tensor();
    for (auto& b : s.box) b.reset();
  }
  int64_t kernels = s.kernels.load(std::memory_order_relaxed);
  int64_t kernel_ns = s.kernel_ns.load(std::memory_order_relaxed);
  s.caller_queue.clear();
  release_state(std::move(state));
  if (error) std::rethrow_exception(error);

  // Fetched Variables: the value after the step, not a live alias a later
  // update would change under the caller.
  for (size_t k = 0; k < results.size(); ++k)
    if (plan.slots[static_cast<size_t>(plan.fetch_slots[k])].variable_backed)
      results[k] = convert_or_copy(results[k], results[k].dtype(), plan.intra_threads);
  if (stats) {
    stats->kernels_executed = kernels;
    stats->kernel_seconds = static_cast<double>(kernel_ns) * 1e-9;
    stats->total_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    stats->peak_bytes = cpu_allocator().stats().peak_bytes_in_use;
  }
  return results;
}

}  // namespace ndflow
