#include "runtime/session.h"

#include "runtime/executor.h"
#include "runtime/thread_pool.h"

namespace ndflow {

namespace {

// Unambiguous: names may contain anything but the length prefixes keep
// ("a,b") and ("a", "b") apart.
std::string cache_key(const std::vector<std::string>& fetches, const std::vector<std::string>& targets) {
  std::string key;
  for (auto& f : fetches) key += std::to_string(f.size()) + "f" + f;
  for (auto& t : targets) key += std::to_string(t.size()) + "t" + t;
  return key;
}

}  // namespace

Session::Session(Graph graph, SessionOptions options) : graph_(std::move(graph)), options_(options) {
  int inter = resolve_inter_op_threads(options_.inter_op_threads);
  resolve_intra_op_threads(options_.intra_op_threads, inter);  // reject bad values now
  // The calling thread takes part in every step, so the pool has one fewer.
  if (inter > 1) pool_ = std::make_shared<ThreadPool>(inter - 1);
}

Session::~Session() = default;

CompiledGraph& Session::compiled(const std::vector<std::string>& fetches,
                                 const std::vector<std::string>& targets) {
  std::string key = cache_key(fetches, targets);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_.find(key);
  if (it != cache_.end() && it->second->source_id_bound() == graph_.id_bound()) return *it->second;
  auto cg = std::make_unique<CompiledGraph>(graph_, fetches, targets, options_, pool_);
  CompiledGraph& ref = *cg;
  if (it != cache_.end()) retired_.push_back(std::move(it->second));
  cache_[key] = std::move(cg);
  return ref;
}

std::vector<Tensor> Session::run(const std::vector<std::pair<std::string, Tensor>>& feeds,
                                 const std::vector<std::string>& fetches,
                                 const std::vector<std::string>& targets) {
  CompiledGraph& cg = compiled(fetches, targets);
  RunStats stats;
  std::vector<Tensor> out = cg.run(feeds, &stats);
  std::lock_guard<std::mutex> lock(mu_);
  last_ = stats;
  return out;
}

const RunStats& Session::last_run_stats() const { return last_; }

}  // namespace ndflow
