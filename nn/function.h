// Compiled steps for C++ (the counterpart of Python's @ndflow.function,
// DESIGN.md §5): nn::Function runs a C++ function of tensors once on
// placeholders, records the graph — forward, gradient nodes from
// nn::backward and the optimizer's fused update nodes — compiles it into a
// Session and from then on runs the compiled graph. The step is written as in
// PyTorch and the same code runs eagerly:
//
//   auto step = [&](const std::vector<Tensor>& in) {
//     opt.zero_grad();
//     Tensor loss = cross_entropy(model(in[0]), in[1]);
//     nn::backward(loss);     // eager: the tape; traced: symbolic gradients
//     opt.step();             // eager: updates now; traced: update nodes
//     return std::vector<Tensor>{loss};
//   };
//   nn::Function compiled(step);
//   Tensor loss = compiled({x, y})[0];   // traced on the first call, then compiled runs
//
// Parameters, buffers and optimizer state are Variables captured by reference,
// so a compiled step updates the tensors the model and optimizer hold, and
// set_lr() takes effect without retracing. The function traces again when the
// input shapes/dtypes or grad mode differ from every earlier call, when a
// module it ran switched train()/eval(), or when an optimizer it stepped
// changed its settings (set_options).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "nn/optim.h"
#include "runtime/session.h"

namespace ndflow::nn {

// loss.backward() for eager and symbolic losses alike. On a symbolic loss it
// adds gradient nodes (runtime/trace.h gradients()) for every Variable that
// requires grad and that the loss depends on, and sets their .grad() to
// them, for an optimizer's step() to read.
NDF_EXPORT void backward(const Tensor& loss);

struct FunctionOptions {
  SessionOptions session;    // passes and threads of the compiled graph
  bool fetch_grads = false;  // after each call, .grad() of the parameters holds this step's gradient
};

class NDF_EXPORT Function {
 public:
  using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
  explicit Function(Fn fn, FunctionOptions options = {});
  ~Function();
  Function(const Function&) = delete;
  Function& operator=(const Function&) = delete;

  // Runs the compiled graph for these inputs' signature (tracing it first if
  // needed) and returns fn's outputs. Called while a graph is being built
  // (from another Function's step, or in a GraphScope), it runs fn inline.
  std::vector<Tensor> operator()(const std::vector<Tensor>& args);

  int trace_count() const { return trace_count_; }  // how often fn ran on placeholders
  const Graph& graph() const;                       // of the latest call's signature
  Session& session();                               // of the latest call's signature

 private:
  struct Entry;
  std::unique_ptr<Entry> build(const std::vector<Tensor>& args);
  Fn fn_;
  FunctionOptions options_;
  std::vector<std::unique_ptr<Entry>> entries_;
  Entry* last_ = nullptr;
  int trace_count_ = 0;
};

// One training step on (x, y): zero_grad, loss_fn(x, y), backward, step —
// compiled with nn::Function, or run eagerly op by op with the same code.
//
//   nn::TrainStep step([&](const Tensor& x, const Tensor& y) {
//     return cross_entropy((*model)(x), y);
//   }, opt);
//   double loss = step(xb, yb).item<double>();
class NDF_EXPORT TrainStep {
 public:
  using LossFn = std::function<Tensor(const Tensor& x, const Tensor& y)>;
  TrainStep(LossFn loss_fn, optim::Optimizer& opt, bool compiled = true, FunctionOptions options = {});
  Tensor operator()(const Tensor& x, const Tensor& y);  // the loss (before the update)
  bool compiled() const { return function_ != nullptr; }
  Function* function() { return function_.get(); }  // null when eager

 private:
  std::vector<Tensor> run(const std::vector<Tensor>& in);
  LossFn loss_fn_;
  optim::Optimizer& opt_;
  std::unique_ptr<Function> function_;
};

}  // namespace ndflow::nn
