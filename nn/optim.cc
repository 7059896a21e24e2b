#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <unordered_map>

#include "core/error.h"
#include "nn/trace_internal.h"
#include "runtime/eager.h"

namespace ndflow::optim {

namespace {

void check_nonneg(const std::string& who, const char* what, double v) {
  NDF_CHECK(v >= 0, ValueError, "[", who, "] ", what, " must be >= 0, got ", v);
}

void refuse_in_graph(const std::string& who, const char* what) {
  NDF_CHECK(current_graph_builder() == nullptr, ValueError, "[", who, "] ", what,
            " inside a graph scope or compiled function would take effect only while tracing; "
            "do it outside (a compiled step reads the learning rate from its Variable)");
}

// An empty stand-in for an optional slot the settings leave unused.
bool internal_slot(const std::string& name) { return name.starts_with("unused."); }

}  // namespace

// ----------------------------------------------------------------- Optimizer

Optimizer::Optimizer(std::string name) : name_(std::move(name)) {}

size_t Optimizer::add_group(const std::vector<Tensor>& params, double lr) {
  refuse_in_graph(name_, "adding a parameter group");
  check_nonneg(name_, "lr", lr);
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    NDF_CHECK(p.defined() && !p.is_symbolic(), ValueError, "[", name_, "] parameter ", i,
              " is undefined or symbolic; pass the model's parameters (eager Variables)");
    NDF_CHECK(p.is_variable(), TypeError, "[", name_, "] parameter ", i, " (shape ", shape_str(p.shape()),
              ") is not a Variable; use nn::make_parameter or Tensor::mark_variable so that updates "
              "reach it in compiled steps");
    NDF_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, TypeError, "[", name_, "] parameter ", i,
              " must be f32 or f64, got ", dtype_name(p.dtype()));
    for (const Group& g : groups_)
      for (const Tensor& q : g.params)
        NDF_CHECK(!q.same(p), ValueError, "[", name_, "] a parameter appears in more than one group");
    for (size_t j = 0; j < i; ++j)
      NDF_CHECK(!params[j].same(p), ValueError, "[", name_, "] parameter ", i, " appears twice");
  }
  Group g;
  g.params = params;
  {
    EagerScope eager;
    g.lr = scalar(lr, DType::f64).mark_variable("lr");
  }
  groups_.push_back(std::move(g));
  ++*version_;
  return groups_.size() - 1;
}

void Optimizer::ensure_state(size_t group) {
  for (const Tensor& p : groups_.at(group).params) {
    auto it = std::find_if(state_.begin(), state_.end(), [&](const auto& e) { return e.first == p.impl(); });
    if (it == state_.end()) {
      state_.emplace_back(p.impl(), Slots{});
      it = std::prev(state_.end());
    }
    Slots& have = it->second;
    Slots want;
    {
      EagerScope eager;
      NoGradGuard no_grad;
      want = init_state(group, p);
    }
    for (auto& [name, t] : want) {
      bool exists = std::any_of(have.begin(), have.end(), [&](const auto& e) { return e.first == name; });
      if (exists) continue;
      refuse_in_graph(name_, "a setting that needs new state slots");
      have.emplace_back(name, t.mark_variable(name));
    }
  }
}

void Optimizer::settings_changed(size_t group) {
  refuse_in_graph(name_, "changing a setting");
  check(group);
  ensure_state(group);
  ++*version_;
}

const Tensor& Optimizer::slot(const Slots& s, const char* name) {
  for (const auto& [n, t] : s)
    if (n == name) return t;
  fail<InternalError>("optimizer slot '", name, "' missing");
}

const std::vector<Tensor>& Optimizer::params(size_t group) const {
  NDF_CHECK(group < groups_.size(), IndexError, "[", name_, "] has ", groups_.size(),
            " parameter groups, asked for group ", group);
  return groups_[group].params;
}

const Tensor& Optimizer::lr_variable(size_t group) const {
  NDF_CHECK(group < groups_.size(), IndexError, "[", name_, "] has ", groups_.size(),
            " parameter groups, asked for group ", group);
  return groups_[group].lr;
}

double Optimizer::lr(size_t group) const { return lr_variable(group).item<double>(); }

void Optimizer::set_lr(double lr) {
  for (size_t g = 0; g < groups_.size(); ++g) set_lr(g, lr);
}

void Optimizer::set_lr(size_t group, double lr) {
  refuse_in_graph(name_, "setting the learning rate");
  check_nonneg(name_, "lr", lr);
  NoGradGuard no_grad;
  Tensor(lr_variable(group)).fill_(lr);
}

const Slots& Optimizer::state(const Tensor& param) const {
  for (const auto& [impl, s] : state_)
    if (impl == param.impl()) return s;
  fail<NotFoundError>("[", name_, "] the tensor (shape ", shape_str(param.shape()),
                      ") is not one of this optimizer's parameters");
}

void Optimizer::zero_grad() {
  bool tracing = nn::detail::current_trace() != nullptr;
  for (Group& g : groups_)
    for (Tensor& p : g.params) {
      if (tracing) nn::detail::note_zeroed(p);
      p.zero_grad();
    }
}

void Optimizer::step() {
  if (nn::detail::current_trace()) nn::detail::note_optimizer(version_);
  bool graph = current_graph_builder() != nullptr;
  NoGradGuard no_grad;  // updates of parameters are not recorded
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    for (const Tensor& p : groups_[gi].params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      NDF_CHECK(graph || !grad.is_symbolic(), ValueError, "[", name_,
                "] a parameter's gradient is a symbolic tensor left over from a graph; call zero_grad() "
                "first");
      update(gi, p, grad, state(p));
    }
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  size_t index = 0;
  EagerScope eager;
  for (const Group& g : groups_)
    for (const Tensor& p : g.params) {
      for (const auto& [name, t] : state(p))
        if (!internal_slot(name)) out.emplace_back(str_cat("state.", index, ".", name), t.clone());
      ++index;
    }
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    out.emplace_back(str_cat("param_groups.", gi, ".lr"), groups_[gi].lr.clone());
  return out;
}

void Optimizer::load_state_dict(const StateDict& sd) {
  refuse_in_graph(name_, "load_state_dict");
  std::unordered_map<std::string, Tensor> own;
  size_t index = 0;
  for (const Group& g : groups_)
    for (const Tensor& p : g.params) {
      for (const auto& [name, t] : state(p))
        if (!internal_slot(name)) own[str_cat("state.", index, ".", name)] = t;
      ++index;
    }
  for (size_t gi = 0; gi < groups_.size(); ++gi) own[str_cat("param_groups.", gi, ".lr")] = groups_[gi].lr;
  std::vector<std::pair<Tensor, Tensor>> copies;
  for (const auto& [key, src] : sd) {
    auto it = own.find(key);
    NDF_CHECK(it != own.end(), NotFoundError, "[", name_, "] load_state_dict: '", key,
              "' is not a slot or setting of this optimizer (a different optimizer, settings or model?)");
    NDF_CHECK(src.defined() && !src.is_symbolic(), ValueError, "[", name_, "] load_state_dict: '", key,
              "' must be a concrete tensor");
    NDF_CHECK(src.shape() == it->second.shape(), ShapeError, "[", name_, "] load_state_dict: '", key,
              "' has shape ", shape_str(src.shape()), ", expected ", shape_str(it->second.shape()));
    copies.emplace_back(it->second, src);
  }
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

// ----------------------------------------------------------------------- SGD

SGD::SGD(const std::vector<Tensor>& params, const Options& o) : OptimizerWith("SGD", o) {
  NDF_CHECK(!params.empty(), ValueError, "[SGD] got an empty parameter list");
  add_param_group(params);
}

void SGD::check(size_t g) const {
  const Options& o = opt(g);
  check_nonneg(name(), "lr", o.lr);
  check_nonneg(name(), "momentum", o.momentum);
  check_nonneg(name(), "weight_decay", o.weight_decay);
  NDF_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), ValueError,
            "[SGD] Nesterov momentum needs momentum > 0 and dampening = 0");
}

Slots SGD::init_state(size_t g, const Tensor& p) const {
  if (opt(g).momentum == 0) return {};
  return {{"momentum_buffer", zeros_like(p)}, {"step", zeros({}, DType::i64)}};
}

void SGD::update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) {
  const Options& o = opt(g);
  if (o.momentum == 0) {
    apply_sgd(p, grad, lr_variable(g), {o.weight_decay});
  } else {
    apply_momentum(p, grad, slot(s, "momentum_buffer"), slot(s, "step"), lr_variable(g),
                   {o.momentum, o.dampening, o.nesterov, o.weight_decay});
  }
}

// ------------------------------------------------------------------- Adagrad

Adagrad::Adagrad(const std::vector<Tensor>& params, const Options& o) : OptimizerWith("Adagrad", o) {
  NDF_CHECK(!params.empty(), ValueError, "[Adagrad] got an empty parameter list");
  add_param_group(params);
}

void Adagrad::check(size_t g) const {
  const Options& o = opt(g);
  check_nonneg(name(), "lr", o.lr);
  check_nonneg(name(), "lr_decay", o.lr_decay);
  check_nonneg(name(), "weight_decay", o.weight_decay);
  check_nonneg(name(), "initial_accumulator_value", o.initial_accumulator_value);
  check_nonneg(name(), "eps", o.eps);
}

Slots Adagrad::init_state(size_t g, const Tensor& p) const {
  return {{"sum", full_like(p, opt(g).initial_accumulator_value)}, {"step", zeros({}, DType::i64)}};
}

void Adagrad::update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) {
  const Options& o = opt(g);
  apply_adagrad(p, grad, slot(s, "sum"), slot(s, "step"), lr_variable(g), {o.eps, o.weight_decay, o.lr_decay});
}

// ------------------------------------------------------------------- RMSprop

RMSprop::RMSprop(const std::vector<Tensor>& params, const Options& o) : OptimizerWith("RMSprop", o) {
  NDF_CHECK(!params.empty(), ValueError, "[RMSprop] got an empty parameter list");
  add_param_group(params);
}

void RMSprop::check(size_t g) const {
  const Options& o = opt(g);
  check_nonneg(name(), "lr", o.lr);
  check_nonneg(name(), "alpha", o.alpha);
  check_nonneg(name(), "eps", o.eps);
  check_nonneg(name(), "weight_decay", o.weight_decay);
  check_nonneg(name(), "momentum", o.momentum);
}

Slots RMSprop::init_state(size_t g, const Tensor& p) const {
  const Options& o = opt(g);
  Slots s{{"square_avg", zeros_like(p)}};
  if (o.momentum > 0) s.emplace_back("momentum_buffer", zeros_like(p));
  if (o.centered) s.emplace_back("grad_avg", zeros_like(p));
  // Unused optional slots are [0] Variables: the op lists them among the
  // tensors it writes, so in a graph they must be Variables even when empty.
  if (o.momentum == 0) s.emplace_back("unused.momentum_buffer", zeros({0}, p.dtype()));
  if (!o.centered) s.emplace_back("unused.grad_avg", zeros({0}, p.dtype()));
  return s;
}

void RMSprop::update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) {
  const Options& o = opt(g);
  apply_rmsprop(p, grad, slot(s, "square_avg"), lr_variable(g),
                {o.alpha, o.eps, o.weight_decay, o.momentum, o.centered},
                slot(s, o.momentum > 0 ? "momentum_buffer" : "unused.momentum_buffer"),
                slot(s, o.centered ? "grad_avg" : "unused.grad_avg"));
}

// ---------------------------------------------------------------- Adam(W)

Adam::Adam(const std::vector<Tensor>& params, const Options& o) : Adam("Adam", false, o) { init_groups(params); }

Adam::Adam(std::string name, bool decoupled, const Options& o)
    : OptimizerWith(std::move(name), o), decoupled_(decoupled) {}

void Adam::init_groups(const std::vector<Tensor>& params) {
  NDF_CHECK(!params.empty(), ValueError, "[", name(), "] got an empty parameter list");
  add_param_group(params);
}

void Adam::check(size_t g) const {
  const Options& o = opt(g);
  check_nonneg(name(), "lr", o.lr);
  NDF_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, ValueError, "[", name(),
            "] betas must be in [0, 1), got (", o.beta1, ", ", o.beta2, ")");
  check_nonneg(name(), "eps", o.eps);
  check_nonneg(name(), "weight_decay", o.weight_decay);
}

Slots Adam::init_state(size_t g, const Tensor& p) const {
  Slots s{{"exp_avg", zeros_like(p)}, {"exp_avg_sq", zeros_like(p)}, {"step", zeros({}, DType::i64)}};
  if (opt(g).amsgrad) s.emplace_back("max_exp_avg_sq", zeros_like(p));
  else s.emplace_back("unused.max_exp_avg_sq", zeros({0}, p.dtype()));
  return s;
}

void Adam::update(size_t g, const Tensor& p, const Tensor& grad, const Slots& s) {
  const Options& o = opt(g);
  apply_adam(p, grad, slot(s, "exp_avg"), slot(s, "exp_avg_sq"), slot(s, "step"), lr_variable(g),
             {o.beta1, o.beta2, o.eps, o.weight_decay, decoupled_, o.amsgrad},
             slot(s, o.amsgrad ? "max_exp_avg_sq" : "unused.max_exp_avg_sq"));
}

AdamW::AdamW(const std::vector<Tensor>& params, const Options& o) : Adam("AdamW", true, o) {
  init_groups(params);
}

// ---------------------------------------------------------------- schedulers

LRScheduler::LRScheduler(Optimizer& opt) : opt_(opt) {
  for (size_t g = 0; g < opt.num_param_groups(); ++g) base_lrs_.push_back(opt.lr(g));
}

void LRScheduler::apply() {
  for (size_t g = 0; g < base_lrs_.size(); ++g) opt_.set_lr(g, lr_at(base_lrs_[g], last_epoch_));
}

void LRScheduler::step() {
  ++last_epoch_;
  apply();
}

StepLR::StepLR(Optimizer& opt, int64_t step_size, double gamma)
    : LRScheduler(opt), step_size_(step_size), gamma_(gamma) {
  NDF_CHECK(step_size >= 1, ValueError, "[StepLR] step_size must be >= 1, got ", step_size);
  apply();
}

double StepLR::lr_at(double base, int64_t epoch) const {
  return base * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

CosineAnnealingLR::CosineAnnealingLR(Optimizer& opt, int64_t t_max, double eta_min)
    : LRScheduler(opt), t_max_(t_max), eta_min_(eta_min) {
  NDF_CHECK(t_max >= 1, ValueError, "[CosineAnnealingLR] T_max must be >= 1, got ", t_max);
  apply();
}

double CosineAnnealingLR::lr_at(double base, int64_t epoch) const {
  return eta_min_ + (base - eta_min_) *
                        (1 + std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(t_max_))) / 2;
}

}  // namespace ndflow::optim
