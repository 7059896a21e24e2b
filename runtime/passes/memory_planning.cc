#include "runtime/passes/memory_planning.h"

#include <algorithm>
#include <memory>

namespace ndflow {

namespace {

// ancestors[n] as a bitset over node indices: m is set when m happens-before
// n, i.e. n is reachable from m through data or control edges.
class Reachability {
 public:
  explicit Reachability(const PlanGraph& g)
      : words_((g.nodes.size() + 63) / 64), bits_(g.nodes.size() * words_, 0) {
    for (size_t n = 0; n < g.nodes.size(); ++n) {
      uint64_t* row = &bits_[n * words_];
      for (int32_t p : g.nodes[n].preds) {
        const uint64_t* prow = &bits_[static_cast<size_t>(p) * words_];
        for (size_t w = 0; w < words_; ++w) row[w] |= prow[w];
        row[static_cast<size_t>(p) / 64] |= uint64_t(1) << (static_cast<size_t>(p) % 64);
      }
    }
  }
  bool before(int32_t a, int32_t b) const {  // a happens-before b
    auto ua = static_cast<size_t>(a);
    return (bits_[static_cast<size_t>(b) * words_ + ua / 64] >> (ua % 64)) & 1;
  }

 private:
  size_t words_;
  std::vector<uint64_t> bits_;
};

void check_graph(const PlanGraph& g) {
  auto nn = static_cast<int32_t>(g.nodes.size());
  auto nv = static_cast<int32_t>(g.values.size());
  for (int32_t n = 0; n < nn; ++n) {
    const PlanNode& node = g.nodes[static_cast<size_t>(n)];
    for (int32_t p : node.preds)
      NDF_CHECK(p >= 0 && p < n, InternalError, "memory planning: node ", n, " has predecessor ", p,
                "; nodes must come in topological order");
    for (int32_t v : node.inputs)
      NDF_CHECK(v >= 0 && v < nv, InternalError, "memory planning: node ", n, " reads missing value ", v);
    for (int32_t v : node.outputs)
      NDF_CHECK(v >= 0 && v < nv && g.values[static_cast<size_t>(v)].producer == n, InternalError,
                "memory planning: node ", n, " lists output ", v, " that it does not produce");
  }
  for (int32_t v = 0; v < nv; ++v) {
    const PlanValue& val = g.values[static_cast<size_t>(v)];
    NDF_CHECK(val.producer >= 0 && val.producer < nn, InternalError, "memory planning: value ", v,
              " has no producer");
    NDF_CHECK(!val.reusable || val.fresh, InternalError, "memory planning: value ", v,
              " is reusable but not allocated by the executor");
  }
}

}  // namespace

MemoryPlan plan_memory(const PlanGraph& g) {
  check_graph(g);
  const size_t nv = g.values.size();
  MemoryPlan plan;
  plan.in_place_of.assign(nv, -1);
  plan.reuse_of.assign(nv, -1);
  plan.hand_to.assign(nv, -1);
  for (const PlanValue& v : g.values)
    if (v.fresh) {
      ++plan.buffers_naive;
      plan.bytes_naive += v.bytes;
    }

  // Consumer nodes of each value (a node reading a value twice counts once).
  std::vector<std::vector<int32_t>> consumers(nv);
  for (size_t n = 0; n < g.nodes.size(); ++n)
    for (int32_t v : g.nodes[n].inputs) {
      auto& c = consumers[static_cast<size_t>(v)];
      if (c.empty() || c.back() != static_cast<int32_t>(n)) c.push_back(static_cast<int32_t>(n));
    }

  plan.reachability_limited = g.nodes.size() > kMaxPlannedReachabilityNodes;
  std::unique_ptr<Reachability> reach;
  if (!plan.reachability_limited) reach = std::make_unique<Reachability>(g);

  // Every consumer of `v` other than `except` happens-before node `p`; a value
  // nobody reads is dead once its producer has finished.
  auto dead_before = [&](int32_t v, int32_t p, int32_t except) {
    const auto& cons = consumers[static_cast<size_t>(v)];
    if (!reach) return cons.size() == 1 && cons[0] == except;
    if (cons.empty()) return reach->before(g.values[static_cast<size_t>(v)].producer, p);
    for (int32_t c : cons)
      if (c != except && !reach->before(c, p)) return false;
    return true;
  };

  std::vector<char> handed(nv, 0);  // its buffer has been given to another value
  std::vector<int32_t> pool;        // reusable values whose buffer may still be free
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    const PlanNode& node = g.nodes[n];
    auto p = static_cast<int32_t>(n);
    for (int32_t b : node.outputs) {
      const PlanValue& out = g.values[static_cast<size_t>(b)];
      if (!out.fresh) continue;
      // In place: an elementwise op may write over an input that dies with it,
      // as long as the layouts match element for element.
      if (node.elementwise) {
        for (int32_t a : node.inputs) {
          const PlanValue& in = g.values[static_cast<size_t>(a)];
          if (!in.reusable || handed[static_cast<size_t>(a)] || in.dtype != out.dtype ||
              in.bytes != out.bytes || !(in.shape == out.shape) || !dead_before(a, p, p))
            continue;
          plan.in_place_of[static_cast<size_t>(b)] = a;
          handed[static_cast<size_t>(a)] = 1;
          ++plan.num_in_place;
          break;
        }
        if (plan.in_place_of[static_cast<size_t>(b)] >= 0) continue;
      }
      if (!reach) continue;
      // Reuse: the smallest dead buffer that fits without wasting more than half.
      int32_t best = -1;
      size_t best_bytes = 0;
      for (int32_t a : pool) {
        size_t have = g.values[static_cast<size_t>(a)].bytes;
        if (handed[static_cast<size_t>(a)] || have < out.bytes || have > 2 * out.bytes) continue;
        if (best >= 0 && have >= best_bytes) continue;
        if (!dead_before(a, p, -1)) continue;
        best = a;
        best_bytes = have;
      }
      if (best >= 0) {
        plan.reuse_of[static_cast<size_t>(b)] = best;
        plan.hand_to[static_cast<size_t>(best)] = b;
        handed[static_cast<size_t>(best)] = 1;
        ++plan.num_reused;
      }
    }
    for (int32_t b : node.outputs)
      if (g.values[static_cast<size_t>(b)].reusable) pool.push_back(b);
    // Keep the scan short: drop buffers that have been handed on.
    if (pool.size() > 64)
      pool.erase(std::remove_if(pool.begin(), pool.end(), [&](int32_t a) { return handed[static_cast<size_t>(a)]; }),
                 pool.end());
  }

  for (size_t v = 0; v < nv; ++v)
    if (g.values[v].fresh && plan.in_place_of[v] < 0 && plan.reuse_of[v] < 0) {
      ++plan.buffers_planned;
      plan.bytes_planned += g.values[v].bytes;
    }
  return plan;
}

}  // namespace ndflow
