// Optimizers with torch.optim's semantics: SGD (momentum, Nesterov),
// Adagrad, RMSprop, Adam, AdamW, with parameter groups. step() runs the fused
// update ops of ops/optim.cc on each parameter that has a gradient — eagerly,
// or as graph nodes when the gradients are symbolic (inside nn::Function or a
// GraphScope).
//
// All state is Variables created eagerly at construction (DESIGN.md §5):
// slots, step counts and each group's learning rate (a 0-d f64 Variable), so
// a compiled step updates them in place and set_lr() — what a scheduler does
// — is seen by the compiled step without retracing. Other hyperparameters
// are attributes of the update nodes: set_options() bumps
// hyperparameter_version() and nn::Function retraces.
//
//   optim::SGD opt(model.parameters(), {.lr = 0.05, .momentum = 0.9});
//   opt.zero_grad(); loss.backward(); opt.step();
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "ops/api.h"

namespace ndflow::optim {

using nn::StateDict;
// A parameter's optimizer state: slot name -> Variable. Optional slots a
// setting leaves unused are "unused.<name>", empty ([0]) Variables that the
// fused op takes in their place; state dicts leave them out.
using Slots = std::vector<std::pair<std::string, Tensor>>;

class NDF_EXPORT Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Drops the gradient of every parameter (inside a compiled function: the
  // compiled step starts them from zero).
  void zero_grad();
  // One update of every parameter that has a gradient.
  void step();

  size_t num_param_groups() const { return groups_.size(); }
  const std::vector<Tensor>& params(size_t group = 0) const;
  double lr(size_t group = 0) const;
  void set_lr(double lr);                // every group
  void set_lr(size_t group, double lr);  // writes the group's lr Variable (no retrace)
  const Tensor& lr_variable(size_t group = 0) const;
  // The slots of `param` ("momentum_buffer", "step", "exp_avg", ...).
  const Slots& state(const Tensor& param) const;
  uint64_t hyperparameter_version() const { return *version_; }
  std::shared_ptr<const uint64_t> version_flag() const { return version_; }
  const std::string& name() const { return name_; }

  // "state.<param index>.<slot>" (copies) and "param_groups.<g>.lr", with
  // parameters numbered across groups in order, as torch.optim does.
  StateDict state_dict() const;
  // Copies into the existing Variables; every entry is checked first.
  void load_state_dict(const StateDict& sd);

 protected:
  explicit Optimizer(std::string name);
  // Adds a group (checks the params, creates its lr Variable); returns its index.
  size_t add_group(const std::vector<Tensor>& params, double lr);
  // Creates the slots the group's settings need that do not exist yet.
  void ensure_state(size_t group);
  // Validates the group's settings, creates slots, bumps the version.
  void settings_changed(size_t group);
  static const Tensor& slot(const Slots& s, const char* name);

  virtual void check(size_t group) const = 0;
  virtual Slots init_state(size_t group, const Tensor& param) const = 0;
  virtual void update(size_t group, const Tensor& param, const Tensor& grad, const Slots& s) = 0;

 private:
  struct Group {
    std::vector<Tensor> params;
    Tensor lr;  // 0-d f64 Variable
  };
  std::string name_;
  std::vector<Group> groups_;
  std::vector<std::pair<const TensorImpl*, Slots>> state_;  // in parameter order
  std::shared_ptr<uint64_t> version_ = std::make_shared<uint64_t>(0);
};

// Per-group hyperparameters of type Options (which has a `lr` member).
template <typename Options>
class OptimizerWith : public Optimizer {
 public:
  // The group's settings; `lr` is the current learning rate.
  Options options(size_t group = 0) const {
    Options o = options_.at(group);
    o.lr = lr(group);
    return o;
  }
  // Changes a group's settings (outside compiled functions): slots a new
  // setting needs are created, and compiled steps retrace.
  void set_options(size_t group, const Options& o) {
    Options old = options_.at(group);
    options_[group] = o;
    try {
      settings_changed(group);
    } catch (...) {
      options_[group] = old;
      throw;
    }
    set_lr(group, o.lr);
  }
  // A new group with its own settings (the defaults when not given).
  void add_param_group(const std::vector<Tensor>& params, std::optional<Options> o = std::nullopt) {
    options_.push_back(o.value_or(defaults_));
    try {
      check(options_.size() - 1);
    } catch (...) {
      options_.pop_back();
      throw;
    }
    size_t g = add_group(params, options_.back().lr);
    ensure_state(g);
  }

 protected:
  OptimizerWith(std::string name, const Options& defaults) : Optimizer(std::move(name)), defaults_(defaults) {}
  const Options& opt(size_t group) const { return options_[group]; }

  Options defaults_;
  std::vector<Options> options_;
};

namespace detail {
struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};
struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0;
  double weight_decay = 0;
  double initial_accumulator_value = 0;
  double eps = 1e-10;
};
struct RMSpropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
  bool centered = false;
};
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
};
struct AdamWOptions {  // AdamOptions with torch.optim.AdamW's default weight decay
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  operator AdamOptions() const { return {lr, beta1, beta2, eps, weight_decay, amsgrad}; }  // NOLINT
};
}  // namespace detail

// torch.optim.SGD: plain, with momentum (slots momentum_buffer, step), or Nesterov.
class NDF_EXPORT SGD : public OptimizerWith<detail::SGDOptions> {
 public:
  using Options = detail::SGDOptions;
  SGD(const std::vector<Tensor>& params, const Options& o = {});

 protected:
  void check(size_t g) const override;
  Slots init_state(size_t g, const Tensor& p) const override;
  void update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) override;
};

// torch.optim.Adagrad (slots sum, step).
class NDF_EXPORT Adagrad : public OptimizerWith<detail::AdagradOptions> {
 public:
  using Options = detail::AdagradOptions;
  Adagrad(const std::vector<Tensor>& params, const Options& o = {});

 protected:
  void check(size_t g) const override;
  Slots init_state(size_t g, const Tensor& p) const override;
  void update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) override;
};

// torch.optim.RMSprop (slots square_avg, and momentum_buffer / grad_avg when used).
class NDF_EXPORT RMSprop : public OptimizerWith<detail::RMSpropOptions> {
 public:
  using Options = detail::RMSpropOptions;
  RMSprop(const std::vector<Tensor>& params, const Options& o = {});

 protected:
  void check(size_t g) const override;
  Slots init_state(size_t g, const Tensor& p) const override;
  void update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) override;
};

// torch.optim.Adam (slots exp_avg, exp_avg_sq, step, and max_exp_avg_sq for amsgrad).
class NDF_EXPORT Adam : public OptimizerWith<detail::AdamOptions> {
 public:
  using Options = detail::AdamOptions;
  Adam(const std::vector<Tensor>& params, const Options& o = {});

 protected:
  Adam(std::string name, bool decoupled, const Options& o);
  void init_groups(const std::vector<Tensor>& params);
  void check(size_t g) const override;
  Slots init_state(size_t g, const Tensor& p) const override;
  void update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) override;

 private:
  bool decoupled_ = false;
};

// torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2).
class NDF_EXPORT AdamW : public Adam {
 public:
  using Options = detail::AdamWOptions;
  AdamW(const std::vector<Tensor>& params, const Options& o = {});
};

// ------------------------------------------------------------- schedulers
// They write each group's lr Variable, so a compiled step sees the new rate.
class NDF_EXPORT LRScheduler {
 public:
  explicit LRScheduler(Optimizer& opt);
  virtual ~LRScheduler() = default;
  void step();  // one epoch (or whatever unit the caller counts)
  int64_t last_epoch() const { return last_epoch_; }

 protected:
  virtual double lr_at(double base_lr, int64_t epoch) const = 0;
  void apply();

  Optimizer& opt_;
  std::vector<double> base_lrs_;
  int64_t last_epoch_ = 0;
};

// lr = base * gamma^(epoch / step_size).
class NDF_EXPORT StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& opt, int64_t step_size, double gamma = 0.1);

 protected:
  double lr_at(double base, int64_t epoch) const override;
  int64_t step_size_;
  double gamma_;
};

// lr = eta_min + (base - eta_min) (1 + cos(pi epoch / T_max)) / 2.
class NDF_EXPORT CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& opt, int64_t t_max, double eta_min = 0);

 protected:
  double lr_at(double base, int64_t epoch) const override;
  int64_t t_max_;
  double eta_min_;
};

}  // namespace ndflow::optim
