// Internal to the parameter server: a table's update rule with its optimizer
// state (server.h UpdateRule), applied densely or by rows. server_update.cc.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "distributed/ps/server.h"

namespace ndflow::ps::detail {

struct TableOptimizer {
  UpdateRule rule = UpdateRule::accumulate;
  Tensor lr;  // 0-d f32
  OptimizerHyper hyper;
  // The rule's state tensors, each shaped as the table: "velocity", "accum",
  // "square_avg", "momentum_buffer", "grad_avg", "m", "v", "max_v".
  std::map<std::string, Tensor> slots;
  Tensor step;       // 0-d i64: the optimizer steps of dense pushes
  Tensor row_steps;  // i64 [rows]: the steps each row took through row pushes (lazy semantics)

  // Zeroed state for a table shaped like `value`; throws ValueError on bad hyperparameters.
  static TableOptimizer make(const std::string& table, const Tensor& value, UpdateRule rule, double lr,
                             const OptimizerHyper& hyper);
  // Whether a step with a sum of gradients equals the steps with each (accumulate, sgd).
  bool linear() const { return rule == UpdateRule::accumulate || rule == UpdateRule::sgd; }
  TableOptimizer clone() const;  // with copies of the state
  // One step (or table += grad for accumulate) on the whole table.
  void dense(const Tensor& param, const Tensor& grad);
  // One step on each of rows ids[0..k) with grads[i], in order (a repeated id
  // takes a step per occurrence); the state of the other rows stays as is.
  void rows(const Tensor& param, const int64_t* ids, int64_t k, const Tensor& grads);
  // The state by name ("lr", "step", "row_steps", the slots), for checkpoints.
  std::vector<std::pair<std::string, Tensor>> state() const;
  // The tensor state() named `key`, or an undefined one.
  Tensor find(const std::string& key) const;
};

// Row ids (ascending) of `sum`'s rows that are not all zero.
std::vector<int64_t> nonzero_rows(const Tensor& sum);

}  // namespace ndflow::ps::detail
