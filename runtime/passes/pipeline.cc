// The pass pipeline of Session compile (DESIGN.md §6, steps 1-2). The order
// matters: prune first, so no pass spends time on nodes that will not run;
// fold constants next, so that CSE and simplification see the folded
// values (x * (2 - 1) is x * 1 once folded); merge duplicates before
// simplifying, so a rewrite is done once for all copies; fuse last, on the
// final set of elementwise ops (a fused node is opaque to the other passes);
// then prune again for whatever the rewrites left unreachable.
#include "runtime/passes/pipeline.h"

#include <sstream>

#include "runtime/passes/pass.h"

namespace ndflow {

std::vector<PassReport> run_passes(Graph& g, const PassOptions& opt, const std::vector<NodeOutput>& fetches,
                                   const std::vector<int64_t>& targets) {
  PassContext ctx(g, fetches, targets);
  std::vector<PassReport> reports;
  if (opt.prune) reports.push_back(prune_pass(g, ctx));
  if (opt.constant_folding) reports.push_back(constant_folding_pass(g, ctx));
  if (opt.cse) reports.push_back(cse_pass(g, ctx));
  if (opt.algebraic) reports.push_back(algebraic_pass(g, ctx));
  if (opt.fusion) reports.push_back(fusion_pass(g, ctx));
  if (opt.prune && (opt.constant_folding || opt.cse || opt.algebraic || opt.fusion)) {
    reports.push_back(prune_pass(g, ctx));
    reports.back().pass = "prune_final";
  }
  return reports;
}

namespace {

std::string line(const PassReport& r) {
  std::ostringstream os;
  os << r.pass << ": " << r.nodes_before << " -> " << r.nodes_after << " nodes (" << r.detail << ")";
  return os.str();
}

}  // namespace

std::string to_string(const std::vector<PassReport>& reports) {
  std::string s;
  for (const PassReport& r : reports) s += line(r) + "\n";
  return s;
}

// The executor's entry points (runtime/passes/pipeline.h). The passes keep
// fetched and target nodes at their ids, so `ends` stays valid as it is.
std::vector<std::string> run_passes(Graph& g, const PassOptions& options, GraphEndpoints& ends) {
  std::vector<std::string> log;
  for (const PassReport& r : run_passes(g, options, ends.fetches, ends.targets)) log.push_back(line(r));
  return log;
}

int64_t prune(Graph& g, const GraphEndpoints& ends) {
  PassReport r = prune_pass(g, PassContext(g, ends.fetches, ends.targets));
  return r.nodes_before - r.nodes_after;
}

}  // namespace ndflow
