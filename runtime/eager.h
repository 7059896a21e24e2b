// Eager dispatch: the single entry point every op call goes through. It
// validates, promotes dtypes, infers, allocates, runs the kernel now and, in
// grad mode, records the call on the autograd tape. Inside a graph scope (or
// when an input is symbolic) the same call is handed to the active
// GraphBuilder instead, which adds a node — one path, two modes (DESIGN.md §5).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/op_registry.h"

namespace ndflow {

// Implemented by graph building (runtime/trace, the static-graph half).
class NDF_EXPORT GraphBuilder {
 public:
  virtual ~GraphBuilder() = default;
  virtual std::vector<Tensor> add_op(const OpDef& op, std::span<const Tensor> inputs,
                                     const Attrs& attrs) = 0;
};
// The builder active on this thread, or null for eager execution.
NDF_EXPORT GraphBuilder* current_graph_builder();
NDF_EXPORT void set_current_graph_builder(GraphBuilder* b);

// RAII: op calls in its scope run eagerly even while a graph is being built
// (graph machinery that needs a concrete value, e.g. copying a constant).
class NDF_EXPORT EagerScope {
 public:
  EagerScope() : prev_(current_graph_builder()) { set_current_graph_builder(nullptr); }
  ~EagerScope() { set_current_graph_builder(prev_); }
  EagerScope(const EagerScope&) = delete;
  EagerScope& operator=(const EagerScope&) = delete;

 private:
  GraphBuilder* prev_;
};

// Runs (or, in graph mode, adds) one op. Returns its outputs.
NDF_EXPORT std::vector<Tensor> call_op(const OpDef& op, std::span<const Tensor> inputs,
                                       const Attrs& attrs = {});
// The same for an op with exactly one output.
NDF_EXPORT Tensor call_op1(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs = {});
inline Tensor call_op1(const OpDef& op, std::initializer_list<Tensor> inputs, const Attrs& attrs = {}) {
  return call_op1(op, std::span<const Tensor>(inputs.begin(), inputs.size()), attrs);
}
// Runs a one-output op writing into `out` (in-place update): the result must
// have out's shape; it is cast to out's dtype. Bumps out's version counter.
NDF_EXPORT void call_op_into(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                             const Tensor& out);

// Whether op calls on this thread are recorded for autograd.
class NDF_EXPORT GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool on);
};

// RAII: disables gradient recording in its scope (like torch.no_grad()).
class NDF_EXPORT NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// Opt-in timer of eager kernels, for benchmarks. While a KernelTimer is alive
// on a thread, call_op and call_op_into on that thread add the wall time of
// each kernel call (steady_clock around the kernel function alone: not
// validation, inference, output allocation or tape recording) to a
// thread-local total — the same definition as SessionOptions::collect_stats
// (RunStats::kernel_seconds), so eager and graph kernel times compare. Timers
// nest; when none is alive the cost is one predictable branch per op.
//
//   KernelTimer timer;
//   loss.backward();
//   double in_kernels = timer.seconds();
class NDF_EXPORT KernelTimer {
 public:
  KernelTimer();
  ~KernelTimer();
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;
  // Seconds spent inside eager kernels on this thread since construction or reset().
  double seconds() const;
  void reset();

 private:
  int64_t start_ns_;
  bool prev_;
};

// Intra-op threads used by kernels. Defaults to OMP_NUM_THREADS or the number
// of cores.
NDF_EXPORT int get_num_threads();
NDF_EXPORT void set_num_threads(int n);

// Overrides the intra-op thread count for the calling thread only while in
// scope: a service thread (the parameter server's) that must not wake a team
// of threads for every small update on cores its I/O threads need.
class NDF_EXPORT ThreadCountScope {
 public:
  explicit ThreadCountScope(int n);
  ~ThreadCountScope();
  ThreadCountScope(const ThreadCountScope&) = delete;
  ThreadCountScope& operator=(const ThreadCountScope&) = delete;

 private:
  int prev_;
};

}  // namespace ndflow
