#include "runtime/multi_device.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>

#include "distributed/rendezvous.h"
#include "runtime/executor.h"
#include "runtime/thread_pool.h"

namespace ndflow {

struct MultiDeviceRunner::Compiled {
  std::vector<std::unique_ptr<CompiledGraph>> graphs;  // per local partition
  std::vector<std::vector<int>> fetch_index;           // per local partition: result index of each fetch
};

MultiDeviceRunner::MultiDeviceRunner(Graph placed, Placement placement, const std::vector<NodeOutput>& fetches,
                                     const std::vector<int64_t>& targets, std::vector<std::string> feed_names,
                                     int local_worker, const SessionOptions& options)
    : placed_(std::move(placed)), placement_(std::move(placement)), feed_names_(std::move(feed_names)),
      num_fetches_(fetches.size()), options_(options) {
  rendezvous_ = distributed::make_local_rendezvous();
  rendezvous_->set_timeout(distributed::default_rendezvous_timeout());
  rendezvous_id_ = distributed::register_rendezvous(rendezvous_);
  parts_ = partition(placed_, placement_, fetches, targets, rendezvous_id_);
  for (size_t i = 0; i < parts_.parts.size(); ++i)
    if (placement_.devices[static_cast<size_t>(parts_.parts[i].device)].worker == local_worker) local_.push_back(i);
  // Every fetch must be delivered here.
  std::vector<char> delivered(num_fetches_, 0);
  for (size_t i : local_)
    for (auto& [k, name] : parts_.parts[i].fetches) delivered[static_cast<size_t>(k)] = 1;
  for (size_t k = 0; k < num_fetches_; ++k)
    NDF_CHECK(delivered[k], InternalError, "multi-device run: fetch ", k, " is not delivered to worker ", local_worker);
  for (size_t i = 1; i < local_.size(); ++i) drivers_.push_back(std::make_unique<ThreadPool>(1));

  // Partitions are already optimized and pruned: only memory planning, per device.
  options_.place = false;
  options_.passes = PassOptions::none();
  options_.passes.memory_planning = options.passes.memory_planning;
  if (options_.intra_op_threads == 0)
    options_.intra_op_threads = std::max(1, available_cores() / std::max<int>(1, static_cast<int>(local_.size())));
  if (options_.inter_op_threads == 0) options_.inter_op_threads = 1;
}

MultiDeviceRunner::~MultiDeviceRunner() {
  drivers_.clear();  // joins the driver threads first: they use the partitions
  distributed::unregister_rendezvous(rendezvous_id_);
}

std::shared_ptr<MultiDeviceRunner::Compiled> MultiDeviceRunner::compiled_for(std::span<const Tensor> feeds) {
  std::vector<std::pair<std::string, TensorMeta>> metas;
  std::string key;
  for (size_t i = 0; i < feeds.size(); ++i) {
    metas.push_back({feed_names_[i], TensorMeta{feeds[i].shape(), feeds[i].dtype(), Device::cpu()}});
    key += shape_str(feeds[i].shape()) + ";";
  }
  if (auto it = cache_.find(key); it != cache_.end()) return it->second;

  // Recv shapes at these feed shapes, then one executor per local partition.
  std::vector<std::vector<TensorMeta>> concrete = concrete_metas(placed_, metas);
  auto c = std::make_shared<Compiled>();
  for (size_t i : local_) {
    const GraphPartition& p = parts_.parts[i];
    Graph g = p.graph.clone();
    for (auto& [rid, src] : p.recvs) {
      const TensorMeta& m = concrete[static_cast<size_t>(src.node)][static_cast<size_t>(src.index)];
      Node& r = *g.mutable_node(rid);
      r.attrs.set("shape", std::vector<int64_t>(m.shape.begin(), m.shape.end()));
      r.outputs[0].shape = m.shape;
    }
    std::vector<std::string> fetch_names;
    std::vector<int> index;
    for (auto& [k, name] : p.fetches) {
      fetch_names.push_back(name);
      index.push_back(k);
    }
    std::vector<std::string> targets = p.targets;
    if (fetch_names.empty() && targets.empty()) targets.push_back(kStepFeed);  // nothing to do but take part
    c->graphs.push_back(std::make_unique<CompiledGraph>(g, fetch_names, targets, options_));
    c->fetch_index.push_back(std::move(index));
  }
  if (cache_.size() >= kMaxShapePlans) cache_.clear();
  cache_.emplace(key, c);
  return c;
}

std::vector<Tensor> MultiDeviceRunner::run(std::span<const Tensor> feeds, RunStats* stats) {
  std::lock_guard<std::mutex> run_lock(mu_);
  auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<Compiled> c = compiled_for(feeds);
  Tensor step = Tensor::empty({}, DType::i64);
  *step.data<int64_t>() = next_step_.fetch_add(1);

  size_t n = local_.size();
  if (n == 0) return {};  // this worker has no part in a graph without fetches
  std::vector<std::vector<Tensor>> results(n);
  std::vector<RunStats> part_stats(n);
  std::vector<std::exception_ptr> errors(n);
  std::mutex done_mu;
  std::condition_variable done_cv;
  size_t remaining = n;
  std::exception_ptr first_error;

  auto run_part = [&](size_t k) {
    try {
      const GraphPartition& p = parts_.parts[local_[k]];
      std::vector<std::pair<std::string, Tensor>> f{{kStepFeed, step}};
      for (size_t i = 0; i < feed_names_.size(); ++i)
        if (std::find(p.feeds.begin(), p.feeds.end(), feed_names_[i]) != p.feeds.end())
          f.push_back({feed_names_[i], feeds[i]});
      results[k] = c->graphs[k]->run(f, stats ? &part_stats[k] : nullptr);
    } catch (...) {
      errors[k] = std::current_exception();
      bool first = false;
      {
        std::lock_guard<std::mutex> lock(done_mu);
        if (!first_error) first_error = errors[k], first = true;
      }
      // The other partitions may be waiting for what this one would have sent.
      if (first) rendezvous_->abort(errors[k]);
    }
    std::lock_guard<std::mutex> lock(done_mu);
    if (--remaining == 0) done_cv.notify_all();
  };
  for (size_t k = 1; k < n; ++k) drivers_[k - 1]->schedule([&run_part, k] { run_part(k); });
  run_part(0);
  {
    std::unique_lock<std::mutex> lock(done_mu);
    done_cv.wait(lock, [&] { return remaining == 0; });
  }
  if (first_error) {
    rendezvous_->reset();
    std::rethrow_exception(first_error);
  }

  std::vector<Tensor> out(num_fetches_);
  for (size_t k = 0; k < n; ++k)
    for (size_t j = 0; j < results[k].size(); ++j) {
      Tensor& slot = out[static_cast<size_t>(c->fetch_index[k][j])];
      if (!slot.defined()) slot = results[k][j];
    }
  if (stats) {
    *stats = RunStats{};
    for (auto& s : part_stats) {
      stats->kernels_executed += s.kernels_executed;
      stats->kernel_seconds += s.kernel_seconds;
      stats->peak_bytes = std::max(stats->peak_bytes, s.peak_bytes);
    }
    stats->total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return out;
}

}  // namespace ndflow
