// Generic op tests driven by the per-family sample lists (op_samples.h):
// every sample runs forward (against expected values), again on
// non-contiguous copies of its inputs, has its inferred metadata checked
// against the real outputs, and — for differentiable ops — is gradchecked in
// f64 on both layouts. The registry walk makes sure no op escapes this.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "op_samples.h"

using namespace ndflow;
using namespace ndflow::testing;

namespace {

// The same values in a non-contiguous layout (a transposed copy transposed
// back), so kernels' strided paths are exercised.
Tensor non_contiguous(const Tensor& t) {
  if (t.rank() < 2 || t.numel() < 2) return t;
  NoGradGuard ng;
  Tensor r = t.transpose(0, -1).contiguous().transpose(0, -1);
  return r;
}

std::string describe(const OpSample& s) {
  std::string d = s.op + "(";
  for (size_t i = 0; i < s.inputs.size(); ++i)
    d += (i ? ", " : "") + shape_str(s.inputs[i].shape()) + ":" + std::string(dtype_name(s.inputs[i].dtype()));
  return d + ")";
}

std::vector<Tensor> run(const OpSample& s, const std::vector<Tensor>& inputs) {
  return call_op(op_def(s.op), inputs, s.attrs);
}

// One scalar-friendly function of the op's outputs for gradcheck.
Tensor joined_output(const OpSample& s, const std::vector<Tensor>& inputs) {
  auto outs = run(s, inputs);
  if (outs.size() == 1) return outs[0];
  std::vector<Tensor> flat;
  for (auto& o : outs)
    if (is_floating(o.dtype())) flat.push_back(reshape(o, {-1}));
  return concat(flat, 0);
}

void check_grad(const OpSample& s, std::vector<Tensor> inputs) {
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    bool want = s.grad_inputs.empty()
                    ? is_floating(inputs[i].dtype()) && inputs[i].dtype() != DType::f16 &&
                          inputs[i].dtype() != DType::bf16
                    : std::find(s.grad_inputs.begin(), s.grad_inputs.end(), int(i)) != s.grad_inputs.end();
    inputs[i] = inputs[i].detach();
    if (want) {
      if (inputs[i].dtype() != DType::f64) inputs[i] = inputs[i].to(DType::f64);
      inputs[i].set_requires_grad(true);
      any = true;
    }
  }
  if (!any) return;  // e.g. integer arithmetic: nothing to differentiate
  gradcheck([&](const std::vector<Tensor>& xs) { return joined_output(s, xs); }, inputs);
}

}  // namespace

TEST_CASE("every op sample: forward, layouts, inferred metadata", "[ops][samples]") {
  for (const OpSample& s : all_samples()) {
    INFO("sample " << describe(s));
    const OpDef& op = op_def(s.op);
    std::vector<Tensor> outs = run(s, s.inputs);
    REQUIRE(outs.size() == op.num_outputs());

    std::vector<TensorMeta> metas;
    for (auto& t : s.inputs) metas.push_back({t.shape(), t.dtype(), t.device()});
    auto inferred = op.run_infer(metas, s.attrs);
    REQUIRE(inferred.size() == outs.size());
    for (size_t j = 0; j < outs.size(); ++j) {
      CHECK(inferred[j].shape == outs[j].shape());
      CHECK(inferred[j].dtype == outs[j].dtype());
    }
    for (size_t j = 0; j < s.expected.size(); ++j) REQUIRE_CLOSE(outs[j], s.expected[j], s.atol, s.rtol);

    std::vector<Tensor> strided;
    bool any_changed = false;
    for (auto& t : s.inputs) {
      strided.push_back(non_contiguous(t));
      any_changed |= !strided.back().is_contiguous();
    }
    if (any_changed && s.expected.size() == outs.size() && !op.is_stateful()) {
      auto outs2 = run(s, strided);
      for (size_t j = 0; j < outs.size(); ++j) REQUIRE_CLOSE(outs2[j], s.expected[j], s.atol, s.rtol);
    }
  }
}

TEST_CASE("every differentiable op sample passes gradcheck in f64", "[ops][samples][grad]") {
  for (const OpSample& s : all_samples()) {
    const OpDef& op = op_def(s.op);
    if (!op.differentiable() || !s.check_grad) continue;
    INFO("gradcheck " << describe(s));
    REQUIRE_NOTHROW(check_grad(s, s.inputs));
    std::vector<Tensor> strided;
    for (auto& t : s.inputs) strided.push_back(non_contiguous(t));
    INFO("non-contiguous inputs");
    REQUIRE_NOTHROW(check_grad(s, strided));
  }
}

TEST_CASE("no registered op escapes the sample tests", "[ops][samples][registry]") {
  std::map<std::string, int> samples, gradchecked;
  for (const OpSample& s : all_samples()) {
    samples[s.op]++;
    if (s.check_grad) gradchecked[s.op]++;
  }
  std::set<std::string> registered;
  for (const OpDef* op : OpRegistry::global().all()) {
    registered.insert(op->name());
    if (op->is_graph_only()) continue;  // placeholder, variable: covered by the graph tests
    if (op->is_asynchronous()) continue;  // send/recv, collectives: test_placement.cc, tests/dist
    INFO("op '" << op->name() << "' needs samples in tests/cpp/samples_<family>.cc");
    CHECK(samples.count(op->name()) == 1);
    if (op->differentiable()) {
      INFO("differentiable op '" << op->name() << "' needs a sample with check_grad = true");
      CHECK(gradchecked.count(op->name()) == 1);
    }
  }
  for (auto& [name, n] : samples) {
    INFO("sample names op '" << name << "', which is not registered");
    CHECK(registered.count(name) == 1);
  }
}
