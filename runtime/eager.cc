#include "runtime/eager.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/autograd.h"

namespace ndflow {

namespace {
thread_local GraphBuilder* tls_builder = nullptr;
thread_local bool tls_grad_enabled = true;
thread_local bool tls_kernel_timing = false;  // some KernelTimer is alive on this thread
thread_local int64_t tls_kernel_ns = 0;       // only ever grows; timers keep their start

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Calls kernel(ctx), timing it when a KernelTimer is alive on this thread.
inline void run_kernel(KernelFn kernel, KernelContext& ctx) {
  if (__builtin_expect(tls_kernel_timing, 0)) {
    int64_t t0 = now_ns();
    kernel(ctx);
    tls_kernel_ns += now_ns() - t0;  // NOTE: a throwing kernel's time is not counted
    return;
  }
  kernel(ctx);
}

int default_threads() {
  int n = omp_get_max_threads();  // honours OMP_NUM_THREADS
  return n > 0 ? n : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}
std::atomic<int> g_num_threads{0};

const OpDef& cast_op() {
  static const OpDef& op = op_def("cast");
  return op;
}

// Casts the inputs the OpDef promotes to their common dtype. Returns false when
// nothing needs a cast (the common case, kept allocation-free).
bool promote(const OpDef& op, std::span<const Tensor> in, std::vector<Tensor>& out) {
  TensorMeta metas[8];
  std::vector<TensorMeta> heap;
  std::span<TensorMeta> m(metas, std::min<size_t>(in.size(), 8));
  if (in.size() > 8) {
    heap.resize(in.size());
    m = heap;
  }
  for (size_t i = 0; i < in.size(); ++i) m[i].dtype = in[i].dtype();
  DType common = op.promoted_dtype(m);
  bool any = false;
  for (size_t i = 0; i < in.size(); ++i) any |= op.promotes_input(i) && in[i].dtype() != common;
  if (!any) return false;
  out.assign(in.begin(), in.end());
  for (size_t i = 0; i < in.size(); ++i)
    if (op.promotes_input(i) && in[i].dtype() != common)
      out[i] = call_op1(cast_op(), {in[i]}, Attrs{{"dtype", common}});
  return true;
}

void check_inputs(const OpDef& op, std::span<const Tensor> in, bool* symbolic) {
  op.check_num_inputs(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    NDF_CHECK(in[i].defined(), ValueError, "[", op.name(), "] input ", i, " ('",
              op.input_names()[std::min(i, op.input_names().size() - 1)], "') is an undefined tensor");
    if (in[i].is_symbolic()) *symbolic = true;
  }
}

}  // namespace

GraphBuilder* current_graph_builder() { return tls_builder; }
void set_current_graph_builder(GraphBuilder* b) { tls_builder = b; }
bool GradMode::enabled() { return tls_grad_enabled; }

KernelTimer::KernelTimer() : start_ns_(tls_kernel_ns), prev_(tls_kernel_timing) { tls_kernel_timing = true; }
KernelTimer::~KernelTimer() { tls_kernel_timing = prev_; }
double KernelTimer::seconds() const { return static_cast<double>(tls_kernel_ns - start_ns_) * 1e-9; }
void KernelTimer::reset() { start_ns_ = tls_kernel_ns; }
void GradMode::set_enabled(bool on) { tls_grad_enabled = on; }

thread_local int tls_num_threads = 0;  // 0: the process-wide setting

ThreadCountScope::ThreadCountScope(int n) : prev_(tls_num_threads) {
  NDF_CHECK(n >= 1, ValueError, "ThreadCountScope: need at least 1 thread, got ", n);
  tls_num_threads = n;
}
ThreadCountScope::~ThreadCountScope() { tls_num_threads = prev_; }

int get_num_threads() {
  if (tls_num_threads > 0) return tls_num_threads;
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = default_threads();
    g_num_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) {
  NDF_CHECK(n >= 1, ValueError, "set_num_threads: need at least 1 thread, got ", n);
  g_num_threads.store(n, std::memory_order_relaxed);
  omp_set_num_threads(n);  // oneDNN reads the OpenMP setting
}

std::vector<Tensor> call_op(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs) {
  bool symbolic = false;
  check_inputs(op, inputs, &symbolic);
  if (GraphBuilder* b = tls_builder) return b->add_op(op, inputs, attrs);
  NDF_CHECK(!op.is_graph_only(), ValueError, "[", op.name(), "] exists only in graphs; create it "
            "with the Graph methods (placeholder, constant, variable) inside a GraphScope");
  NDF_CHECK(!symbolic, ValueError, "[", op.name(),
            "] got a symbolic (graph) tensor outside of its graph scope; symbolic tensors can "
            "only be used while their graph is being built");

  std::vector<Tensor> promoted;
  if (op.promotes() && promote(op, inputs, promoted)) inputs = promoted;

  Device device = inputs.empty() ? Device::cpu() : inputs[0].device();
  TensorMeta metas_inline[4];
  std::vector<TensorMeta> metas_heap;
  TensorMeta* metas = metas_inline;
  if (inputs.size() > 4) {
    metas_heap.resize(inputs.size());
    metas = metas_heap.data();
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorImpl* t = inputs[i].impl();
    NDF_CHECK(t->device == device, ValueError, "[", op.name(), "] inputs are on different devices: ",
              device.str(), " and ", t->device.str(), " (input ", i, "); move them with .to(device)");
    metas[i].shape = t->shape;
    metas[i].dtype = t->dtype;
    metas[i].device = t->device;
  }
  std::vector<TensorMeta> out_meta = op.run_infer({metas, inputs.size()}, attrs);

  for (int i : op.mutated_inputs()) {
    if (static_cast<size_t>(i) >= inputs.size()) continue;  // an optional input left out
    const Tensor& t = inputs[static_cast<size_t>(i)];
    NDF_CHECK(!(tls_grad_enabled && t.impl()->requires_grad), ValueError, "[", op.name(),
              "] updates input ", i, " ('", op.input_names()[std::min<size_t>(i, op.input_names().size() - 1)],
              "', shape ", shape_str(t.shape()), ") in place, but it requires grad; run the update "
              "under NoGradGuard (no_grad)");
  }

  std::vector<Tensor> outputs;
  outputs.reserve(out_meta.size());
  if (op.is_view()) {
    outputs.push_back(op.view_fn()(inputs[0], attrs));
  } else {
    KernelFn kernel = op.kernel(device.type);
    NDF_CHECK(kernel, NotFoundError, "[", op.name(), "] has no kernel for device ", device.str());
    for (auto& m : out_meta) outputs.push_back(Tensor::empty(m.shape, m.dtype, m.device));
    KernelContext ctx(op, inputs, outputs, attrs, get_num_threads());
    run_kernel(kernel, ctx);
    for (int i : op.mutated_inputs())
      if (static_cast<size_t>(i) < inputs.size()) inputs[static_cast<size_t>(i)].impl()->storage->bump_version();
  }

  if (tls_grad_enabled && op.differentiable()) {
    for (auto& t : inputs)
      if (t.impl()->requires_grad) {
        record_op(op, inputs, attrs, outputs);
        break;
      }
  }
  return outputs;
}

Tensor call_op1(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs) {
  auto outs = call_op(op, inputs, attrs);
  NDF_CHECK(outs.size() == 1, InternalError, "[", op.name(), "] has ", outs.size(),
            " outputs where one was expected");
  return std::move(outs[0]);
}

void call_op_into(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                  const Tensor& out) {
  NDF_CHECK(out.defined() && !out.is_symbolic(), ValueError, "[", op.name(),
            "] in-place update needs an eager tensor to write into");
  NDF_CHECK(!(tls_grad_enabled && out.requires_grad()), ValueError, "[", op.name(),
            "] in-place update of a tensor that requires grad (shape ", shape_str(out.shape()),
            ") would corrupt autograd; do it under NoGradGuard (no_grad) or on a detach()ed copy");
  bool symbolic = false;
  check_inputs(op, inputs, &symbolic);
  NDF_CHECK(!symbolic && !tls_builder, ValueError, "[", op.name(),
            "] in-place updates are eager-only; in a graph use assign ops");
  std::vector<Tensor> promoted;
  if (op.promotes() && promote(op, inputs, promoted)) inputs = promoted;
  std::vector<TensorMeta> metas;
  for (auto& t : inputs) metas.push_back({t.shape(), t.dtype(), t.device()});
  auto out_meta = op.run_infer(metas, attrs);
  NDF_CHECK(out_meta.size() == 1, InternalError, "[", op.name(), "] in-place needs one output");
  NDF_CHECK(out_meta[0].shape == out.shape(), ShapeError, "[", op.name(),
            "] in-place result has shape ", shape_str(out_meta[0].shape),
            " but the tensor written into has shape ", shape_str(out.shape()));
  KernelFn kernel = op.kernel(out.device().type);
  NDF_CHECK(kernel && !op.is_view(), NotFoundError, "[", op.name(),
            "] has no kernel for device ", out.device().str());
  if (out_meta[0].dtype == out.dtype()) {
    Tensor target = out;
    KernelContext ctx(op, inputs, std::span<Tensor>(&target, 1), attrs, get_num_threads());
    run_kernel(kernel, ctx);
  } else {  // compute in the op's dtype, then cast into the destination
    Tensor tmp = Tensor::empty(out_meta[0].shape, out_meta[0].dtype, out.device());
    KernelContext ctx(op, inputs, std::span<Tensor>(&tmp, 1), attrs, get_num_threads());
    run_kernel(kernel, ctx);
    Tensor target = out;
    Attrs cast_attrs{{"dtype", out.dtype()}};
    KernelContext cctx(cast_op(), std::span<const Tensor>(&tmp, 1), std::span<Tensor>(&target, 1),
                       cast_attrs, get_num_threads());
    run_kernel(cast_op().kernel(out.device().type), cctx);
  }
  out.impl()->storage->bump_version();
}

}  // namespace ndflow
