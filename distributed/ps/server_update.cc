// Server-side update rules and their optimizer state (server_update.h).
#include "distributed/ps/server_update.h"

#include "ops/api.h"
#include "runtime/eager.h"

namespace ndflow::ps::detail {

namespace {

std::vector<const char*> slot_names(UpdateRule rule, const OptimizerHyper& h) {
  switch (rule) {
    case UpdateRule::momentum: return {"velocity"};
    case UpdateRule::adagrad: return {"accum"};
    case UpdateRule::rmsprop: {
      std::vector<const char*> s{"square_avg"};
      if (h.rmsprop_momentum > 0) s.push_back("momentum_buffer");
      if (h.centered) s.push_back("grad_avg");
      return s;
    }
    case UpdateRule::adam: {
      std::vector<const char*> s{"m", "v"};
      if (h.amsgrad) s.push_back("max_v");
      return s;
    }
    default: return {};
  }
}

Tensor slot_or_none(const std::map<std::string, Tensor>& slots, const char* name) {
  auto it = slots.find(name);
  return it == slots.end() ? Tensor() : it->second;
}

// One fused step of `o`'s rule on param (a table or one row of it) with its state views.
void step_with(const TableOptimizer& o, const Tensor& param, const Tensor& grad, const Tensor& step,
               const std::map<std::string, Tensor>& slots) {
  const OptimizerHyper& h = o.hyper;
  switch (o.rule) {
    case UpdateRule::accumulate: Tensor(param).add_(grad); return;
    case UpdateRule::sgd: apply_sgd(param, grad, o.lr, {.weight_decay = h.weight_decay}); return;
    case UpdateRule::momentum:
      apply_momentum(param, grad, slots.at("velocity"), step, o.lr,
                     {.momentum = h.momentum, .dampening = h.dampening, .nesterov = h.nesterov,
                      .weight_decay = h.weight_decay});
      return;
    case UpdateRule::adagrad:
      apply_adagrad(param, grad, slots.at("accum"), step, o.lr,
                    {.eps = h.eps < 0 ? 1e-10 : h.eps, .weight_decay = h.weight_decay, .lr_decay = h.lr_decay});
      return;
    case UpdateRule::rmsprop:
      apply_rmsprop(param, grad, slots.at("square_avg"), o.lr,
                    {.alpha = h.alpha, .eps = h.eps < 0 ? 1e-8 : h.eps, .weight_decay = h.weight_decay,
                     .momentum = h.rmsprop_momentum, .centered = h.centered},
                    slot_or_none(slots, "momentum_buffer"), slot_or_none(slots, "grad_avg"));
      return;
    case UpdateRule::adam:
      apply_adam(param, grad, slots.at("m"), slots.at("v"), step, o.lr,
                 {.beta1 = h.beta1, .beta2 = h.beta2, .eps = h.eps < 0 ? 1e-8 : h.eps,
                  .weight_decay = h.weight_decay, .decoupled_weight_decay = h.decoupled_weight_decay,
                  .amsgrad = h.amsgrad},
                 slot_or_none(slots, "max_v"));
      return;
  }
}

}  // namespace

TableOptimizer TableOptimizer::make(const std::string& table, const Tensor& value, UpdateRule rule, double lr,
                                    const OptimizerHyper& hyper) {
  NDF_CHECK(uint8_t(rule) <= uint8_t(UpdateRule::adam), ValueError, "[ps.server] table '", table,
            "': unknown update rule ", int(rule));
  NDF_CHECK(!hyper.nesterov || (hyper.momentum > 0 && hyper.dampening == 0), ValueError, "[ps.server] table '",
            table, "': nesterov needs momentum > 0 and dampening 0");
  EagerScope eager;
  NoGradGuard no_grad;
  TableOptimizer o;
  o.rule = rule;
  o.lr = scalar(lr);
  o.hyper = hyper;
  NDF_CHECK(hyper.initial_accumulator_value >= 0, ValueError, "[ps.server] table '", table,
            "': initial_accumulator_value must be >= 0, got ", hyper.initial_accumulator_value);
  for (const char* name : slot_names(rule, hyper)) o.slots[name] = zeros(value.shape(), DType::f32);
  if (rule == UpdateRule::adagrad && hyper.initial_accumulator_value != 0)
    o.slots["accum"].fill_(hyper.initial_accumulator_value);
  o.step = zeros({}, DType::i64);
  o.row_steps = zeros({value.rank() >= 1 ? value.size(0) : 0}, DType::i64);
  return o;
}

TableOptimizer TableOptimizer::clone() const {
  EagerScope eager;
  NoGradGuard no_grad;
  TableOptimizer o = *this;
  for (auto& [name, t] : o.slots) t = t.clone();
  o.lr = lr.clone();
  o.step = step.clone();
  o.row_steps = row_steps.clone();
  return o;
}

void TableOptimizer::dense(const Tensor& param, const Tensor& grad) { step_with(*this, param, grad, step, slots); }

void TableOptimizer::rows(const Tensor& param, const int64_t* ids, int64_t k, const Tensor& grads) {
  if (rule == UpdateRule::accumulate) {
    const int64_t width = k ? grads.numel() / k : 0;
    float* dst = param.data<float>();
    const float* src = grads.data<float>();
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < width; ++j) dst[ids[i] * width + j] += src[i * width + j];
    return;
  }
  // Row by row, in order, so that a repeated id gets both steps.
  std::map<std::string, Tensor> row_slots;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t r = ids[i];
    for (const auto& [name, t] : slots) row_slots[name] = t.slice(0, r, r + 1);
    step_with(*this, param.slice(0, r, r + 1), grads.slice(0, i, i + 1), row_steps.slice(0, r, r + 1), row_slots);
  }
}

std::vector<std::pair<std::string, Tensor>> TableOptimizer::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  if (rule == UpdateRule::accumulate) return out;
  out.emplace_back("lr", lr);  // set_lr may have changed it
  if (linear()) return out;
  out.emplace_back("step", step);
  out.emplace_back("row_steps", row_steps);
  for (const auto& [name, t] : slots) out.emplace_back(name, t);
  return out;
}

Tensor TableOptimizer::find(const std::string& key) const {
  for (auto& [name, t] : state())
    if (name == key) return t;
  return Tensor();
}

std::vector<int64_t> nonzero_rows(const Tensor& sum) {
  std::vector<int64_t> rows;
  if (sum.rank() < 1) return rows;
  const int64_t n = sum.size(0), width = n ? sum.numel() / n : 0;
  const float* p = sum.data<float>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < width; ++j)
      if (p[r * width + j] != 0.0f) {
        rows.push_back(r);
        break;
      }
  return rows;
}

}  // namespace ndflow::ps::detail
