// Internals of the executor (runtime/executor.h), shared by its two halves:
// executor_build.cc turns a Graph into flat per-node records once, and per
// concrete feed-shape signature into a ShapePlan (output shapes, inline
// decisions, memory plan); executor.cc runs steps over those records. A step
// touches only these arrays — no maps, no strings (STYLE.md §4, like TF's
// executor.cc NodeItem).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/graph.h"
#include "runtime/passes/memory_planning.h"
#include "runtime/passes/pipeline.h"
#include "runtime/session.h"

namespace ndflow {

class ThreadPool;
namespace distributed { class CollectivePlan; }

enum class NodeKind : uint8_t {
  Kernel,       // runs op->kernel into preallocated outputs
  View,         // output = op->view_fn(input 0): shares storage
  Placeholder,  // output = the feed
  Variable,     // output = the Variable tensor itself, by reference
  Constant,     // output = the attribute tensor itself (never written: see compile checks)
};

struct NodeRecord {
  NodeKind kind = NodeKind::Kernel;
  bool elementwise = false;
  bool has_casts = false;  // some input is cast to the op's promoted dtype first
  const OpDef* op = nullptr;
  KernelFn kernel = nullptr;
  ViewFn view = nullptr;
  const Attrs* attrs = nullptr;
  const Tensor* value = nullptr;  // Variable / Constant: the attribute tensor
  int32_t in_begin = 0, num_in = 0;      // into ExecPlan::input_slots / input_cast
  int32_t out_begin = 0, num_out = 0;    // output slots out_begin .. out_begin + num_out
  int32_t succ_begin = 0, num_succ = 0;  // into ExecPlan::successors (distinct nodes)
  int32_t pred_begin = 0, num_pred = 0;  // into ExecPlan::predecessors (distinct nodes)
  int32_t mut_begin = 0, num_mut = 0;    // into ExecPlan::mutated_slots
  int32_t initial_pending = 0;           // = num_pred
  int32_t feed_index = -1;               // Placeholder: index into the ordered feeds
  int64_t graph_id = -1;                 // the node in ExecPlan::graph (errors only)
};

struct SlotRecord {
  int32_t producer = -1;
  int32_t initial_refs = 0;              // data edges reading it
  int32_t fetch_begin = 0, num_fetch = 0;  // into ExecPlan::fetch_of_slot
  bool variable_backed = false;          // a Variable or a view of one
  bool view_base = false;                // some view op reads it: its storage outlives it
  bool mutated = false;                  // some op writes it in place
  bool fetched = false;
};

// Everything compile produces; immutable while steps run.
struct ExecPlan {
  Graph graph;  // the private, pruned and optimized copy; records point into it
  std::vector<NodeRecord> nodes;  // in topological order
  std::vector<SlotRecord> slots;
  std::vector<int32_t> input_slots;
  std::vector<int8_t> input_cast;  // per input: DType to cast to, or -1
  std::vector<int32_t> successors;
  std::vector<int32_t> predecessors;
  std::vector<int32_t> mutated_slots;
  std::vector<int32_t> fetch_of_slot;  // result indices, grouped per slot
  std::vector<int32_t> fetch_slots;    // per fetch: its slot
  std::vector<int32_t> roots;          // nodes without predecessors
  std::vector<int32_t> feed_nodes;     // per feed: its placeholder node
  std::vector<std::string> feed_names;
  std::vector<std::string> source_placeholders;  // of the graph as given, for messages
  std::vector<std::string> pass_log;
  GraphEndpoints ends;  // fetches and targets in `graph`, after the passes
  std::shared_ptr<distributed::CollectivePlan> collectives;  // graph collectives in plan order, or null
  bool all_feeds_static = true;  // no placeholder has a -1 dim: one shape signature
  int intra_threads = 1;
  bool memory_planning = true;
};

// What depends on concrete feed shapes; built once per signature.
struct ShapePlan {
  std::vector<TensorMeta> slot_meta;  // concrete shapes of every slot
  std::vector<char> run_inline;       // per node: cheap enough for the current thread
  // Per node: a kernel that at these shapes returns input 0 unchanged (a
  // sum_to_like that sums nothing: gradients of broadcasting ops whose dims
  // were unknown when the graph was built). The executor passes the input on,
  // sharing its buffer as a view would, instead of allocating and running it.
  std::vector<char> forward_input;
  std::shared_ptr<const MemoryPlan> memory;  // null when planning is off
};

// The mutable state of one step; pooled and reused across runs.
struct StepState {
  explicit StepState(const ExecPlan& plan);

  const ExecPlan* plan;
  const ShapePlan* shapes = nullptr;
  const MemoryPlan* memory = nullptr;
  ThreadPool* pool = nullptr;
  const Tensor* feeds = nullptr;
  std::vector<Tensor>* results = nullptr;
  bool collect_stats = false;

  std::vector<Tensor> slots;
  std::vector<std::shared_ptr<Storage>> box;  // per slot: a dead value's buffer handed to it
  std::unique_ptr<std::atomic<int32_t>[]> pending;
  std::unique_ptr<std::atomic<int32_t>[]> refs;
  std::atomic<int32_t> remaining{0};
  std::atomic<bool> cancelled{false};
  std::atomic<int64_t> kernels{0};
  std::atomic<int64_t> kernel_ns{0};

  std::mutex mu;  // guards the fields below
  std::condition_variable cv;
  std::deque<int32_t> caller_queue;  // ready nodes for the calling thread (no pool, or async)
  bool finished = false;
  std::exception_ptr error;
};

// ---- executor_build.cc
std::unique_ptr<ExecPlan> build_exec_plan(const Graph& source, const std::vector<std::string>& fetches,
                                          const std::vector<std::string>& targets,
                                          const SessionOptions& options);
// Throws the node's errors (prefixed with its name) when shapes do not fit.
std::unique_ptr<ShapePlan> build_shape_plan(const ExecPlan& plan, const Tensor* feeds);
// Checks ordered feeds against the placeholders (dtype, known dims).
void check_feeds(const ExecPlan& plan, const Tensor* feeds, size_t count);

// The same error class, its message prefixed "node 'name' (op): ".
std::exception_ptr with_node_context(std::exception_ptr e, const Node& n);

// Inputs + outputs of a kernel at or under this many elements make it cheap
// enough to run inline on the thread that made it ready.
inline constexpr int64_t kInlineElements = 16384;

}  // namespace ndflow
