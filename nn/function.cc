#include "nn/function.h"

#include <algorithm>

#include "core/error.h"
#include "nn/trace_internal.h"
#include "runtime/autograd.h"
#include "runtime/eager.h"
#include "runtime/executor.h"
#include "runtime/trace.h"

namespace ndflow::nn {

// ------------------------------------------------------------ trace state

namespace detail {

namespace {
thread_local std::vector<TraceState*> trace_stack;
}

TraceState* current_trace() { return trace_stack.empty() ? nullptr : trace_stack.back(); }
void push_trace(TraceState* s) { trace_stack.push_back(s); }
void pop_trace() { trace_stack.pop_back(); }

void note_module(const std::shared_ptr<const bool>& training) {
  TraceState* s = current_trace();
  if (!s) return;
  for (const auto& [flag, value] : s->module_flags)
    if (flag == training) return;
  s->module_flags.emplace_back(training, *training);
}

void note_optimizer(const std::shared_ptr<const uint64_t>& version) {
  TraceState* s = current_trace();
  if (!s) return;
  for (const auto& [v, value] : s->optimizer_versions)
    if (v == version) return;
  s->optimizer_versions.emplace_back(version, *version);
}

void note_zeroed(const Tensor& p) {
  TraceState* s = current_trace();
  if (s && std::find(s->zeroed.begin(), s->zeroed.end(), p.impl()) == s->zeroed.end())
    s->zeroed.push_back(p.impl());
}

}  // namespace detail

// ----------------------------------------------------------------- backward

void backward(const Tensor& loss) {
  NDF_CHECK(loss.defined(), ValueError, "nn::backward: the loss is undefined");
  if (!loss.is_symbolic()) {
    loss.backward();
    return;
  }
  std::vector<Tensor> params = trainable_variables({loss});
  std::vector<Tensor> grads = gradients({loss}, params);
  detail::TraceState* state = detail::current_trace();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!grads[i].defined()) continue;
    Tensor& p = params[i];
    Tensor old = p.grad();
    NDF_CHECK(!old.defined() || old.is_symbolic(), ValueError, "nn::backward: a parameter (shape ",
              shape_str(p.shape()), ") already holds an eager gradient while a graph is being built; "
              "gradients cannot accumulate across compiled calls. Call zero_grad() before backward() "
              "in the step.");
    if (state && std::none_of(state->saved_grads.begin(), state->saved_grads.end(),
                              [&](const auto& e) { return e.first.same(p); }))
      state->saved_grads.emplace_back(p, old);
    p.set_grad(old.defined() ? old + grads[i] : grads[i]);
  }
}

// ----------------------------------------------------------------- Function

struct Function::Entry {
  std::vector<std::pair<Shape, DType>> signature;
  bool grad_mode = true;
  Graph graph;
  std::unique_ptr<Session> session;
  CompiledGraph* compiled = nullptr;
  std::vector<std::string> input_names, fetches, targets;
  std::vector<size_t> order;  // compiled feed k <- argument order[k]
  size_t num_outputs = 0;
  std::vector<Tensor> grad_params;  // fetched after the outputs when fetch_grads
  std::vector<Tensor> unzeroed;     // grad params the step does not reset itself
  std::vector<std::pair<std::shared_ptr<const bool>, bool>> module_flags;
  std::vector<std::pair<std::shared_ptr<const uint64_t>, uint64_t>> optimizer_versions;

  bool matches(const std::vector<Tensor>& args) const {
    if (args.size() != signature.size() || grad_mode != GradMode::enabled()) return false;
    for (size_t i = 0; i < args.size(); ++i)
      if (args[i].dtype() != signature[i].second || args[i].shape() != signature[i].first) return false;
    return true;
  }
  // Traced with the current training flags.
  bool current() const {
    for (const auto& [flag, value] : module_flags)
      if (*flag != value) return false;
    return true;
  }
  // An optimizer it stepped has other settings now.
  bool stale() const {
    for (const auto& [version, value] : optimizer_versions)
      if (*version != value) return true;
    return false;
  }
  void bind() {
    compiled = &session->compiled(fetches, targets);
    order.clear();
    for (const std::string& name : compiled->feed_names()) {
      auto it = std::find(input_names.begin(), input_names.end(), name);
      NDF_CHECK(it != input_names.end(), InternalError, "nn::Function: the graph needs input '", name,
                "' that is not among its arguments");
      order.push_back(static_cast<size_t>(it - input_names.begin()));
    }
  }
};

Function::Function(Fn fn, FunctionOptions options) : fn_(std::move(fn)), options_(std::move(options)) {
  NDF_CHECK(fn_ != nullptr, ValueError, "nn::Function: the function is empty");
}

Function::~Function() = default;

std::unique_ptr<Function::Entry> Function::build(const std::vector<Tensor>& args) {
  auto e = std::make_unique<Entry>();
  e->grad_mode = GradMode::enabled();
  detail::TraceState state;
  std::vector<Tensor> outs;
  detail::push_trace(&state);
  // Whatever happens, the eager .grad() of the parameters is what it was
  // before the trace (the symbolic gradients must not escape it).
  auto restore = [&] {
    detail::pop_trace();
    for (auto& [p, before] : state.saved_grads) p.set_grad(before);
  };
  try {
    GraphScope scope(e->graph);
    std::vector<Tensor> placeholders;
    for (size_t i = 0; i < args.size(); ++i) {
      e->signature.emplace_back(args[i].shape(), args[i].dtype());
      e->input_names.push_back("input_" + std::to_string(i));
      placeholders.push_back(e->graph.placeholder(e->input_names.back(), args[i].shape(), args[i].dtype()));
    }
    ++trace_count_;
    outs = fn_(placeholders);
    for (size_t i = 0; i < outs.size(); ++i) {
      NDF_CHECK(outs[i].defined(), ValueError, "nn::Function: output ", i, " of the function is undefined");
      Tensor t = outs[i].is_symbolic() ? outs[i] : identity(outs[i]);  // a constant or Variable returned as is
      e->fetches.push_back("output_" + std::to_string(i));
      e->graph.mark_output(e->fetches.back(), t);
    }
    e->num_outputs = outs.size();
    for (auto& [p, before] : state.saved_grads) {
      if (options_.fetch_grads) {
        e->fetches.push_back("grad_" + std::to_string(e->grad_params.size()));
        e->graph.mark_output(e->fetches.back(), p.grad());
      }
      e->grad_params.push_back(p);
      if (std::find(state.zeroed.begin(), state.zeroed.end(), p.impl()) == state.zeroed.end())
        e->unzeroed.push_back(p);
    }
  } catch (...) {
    restore();
    throw;
  }
  restore();
  e->module_flags = state.module_flags;
  e->optimizer_versions = state.optimizer_versions;
  // Every node with effects (optimizer updates, assignments, generator
  // advances) runs each call, whether or not an output depends on it.
  for (const Node* n : e->graph.nodes())
    if (n->op->has_side_effects()) e->targets.push_back(n->name);
  e->session = std::make_unique<Session>(e->graph, options_.session);
  e->bind();
  return e;
}

std::vector<Tensor> Function::operator()(const std::vector<Tensor>& args) {
  if (current_graph_builder() != nullptr) return fn_(args);  // inside another trace or scope: inline it
  for (size_t i = 0; i < args.size(); ++i)
    NDF_CHECK(args[i].defined() && !args[i].is_symbolic(), ValueError, "nn::Function: argument ", i,
              " must be a concrete tensor (undefined, or symbolic from a graph that has ended)");
  // Optimizer versions only grow: a trace of older settings never matches again.
  std::erase_if(entries_, [&](const std::unique_ptr<Entry>& c) {
    if (!c->stale()) return false;
    if (c.get() == last_) last_ = nullptr;
    return true;
  });
  Entry* e = nullptr;
  for (auto& cand : entries_)
    if (cand->matches(args) && cand->current()) {
      e = cand.get();
      break;
    }
  if (!e) {
    entries_.push_back(build(args));
    e = entries_.back().get();
  }
  last_ = e;
  for (const Tensor& p : e->unzeroed)
    NDF_CHECK(!p.grad().defined(), ValueError, "nn::Function: a parameter (shape ", shape_str(p.shape()),
              ") holds a gradient from an earlier call, and the step does not reset it before backward(): "
              "a compiled step cannot add to an existing gradient. Call zero_grad() inside the step.");
  if (e->compiled->source_id_bound() != e->session->graph().id_bound()) e->bind();  // the graph grew
  std::vector<Tensor> feeds;
  feeds.reserve(e->order.size());
  for (size_t i : e->order) feeds.push_back(args[i]);
  std::vector<Tensor> outs = e->compiled->run_ordered(feeds);
  if (options_.fetch_grads)
    for (size_t j = 0; j < e->grad_params.size(); ++j) e->grad_params[j].set_grad(outs[e->num_outputs + j]);
  outs.resize(e->num_outputs);
  return outs;
}

const Graph& Function::graph() const {
  NDF_CHECK(last_ != nullptr, ValueError, "nn::Function: not called yet; call it once to trace it");
  return last_->graph;
}

Session& Function::session() {
  NDF_CHECK(last_ != nullptr, ValueError, "nn::Function: not called yet; call it once to trace it");
  return *last_->session;
}

// ---------------------------------------------------------------- TrainStep

TrainStep::TrainStep(LossFn loss_fn, optim::Optimizer& opt, bool compiled, FunctionOptions options)
    : loss_fn_(std::move(loss_fn)), opt_(opt) {
  NDF_CHECK(loss_fn_ != nullptr, ValueError, "nn::TrainStep: the loss function is empty");
  if (compiled)
    function_ = std::make_unique<Function>([this](const std::vector<Tensor>& in) { return run(in); },
                                           std::move(options));
}

std::vector<Tensor> TrainStep::run(const std::vector<Tensor>& in) {
  opt_.zero_grad();
  Tensor loss = loss_fn_(in[0], in[1]);
  backward(loss);
  opt_.step();
  return {loss};
}

Tensor TrainStep::operator()(const Tensor& x, const Tensor& y) {
  if (function_) return (*function_)({x, y})[0];
  Tensor loss = run({x, y})[0];
  return loss.detach();
}

}  // namespace ndflow::nn
