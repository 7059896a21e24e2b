#include "runtime/thread_pool.h"

#include <algorithm>

#include "runtime/eager.h"

namespace ndflow {

ThreadPool::ThreadPool(int num_threads) {
  NDF_CHECK(num_threads >= 0, ValueError, "ThreadPool: thread count must be >= 0, got ", num_threads);
  workers_.reserve(static_cast<size_t>(num_threads));
  for (int i = 0; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::schedule(std::function<void()> task) {
  NDF_CHECK(!workers_.empty(), InternalError, "ThreadPool: a task was scheduled on a pool without threads");
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      // Drain before stopping: a queued task may be the one a waiting step needs.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

int available_cores() { return std::max(1, get_num_threads()); }

int resolve_inter_op_threads(int requested) {
  NDF_CHECK(requested >= 0, ValueError, "inter_op_threads must be >= 0 (0 = default), got ", requested);
  if (requested > 0) return requested;
  int cores = available_cores();
  // NOTE: on small machines a second inter-op thread only steals cores from
  // the intra-op OpenMP team of the big kernels (DESIGN.md §4).
  return cores <= 4 ? 1 : cores / 2;
}

int resolve_intra_op_threads(int requested, int inter_op_threads) {
  NDF_CHECK(requested >= 0, ValueError, "intra_op_threads must be >= 0 (0 = default), got ", requested);
  if (requested > 0) return requested;
  return std::max(1, available_cores() / std::max(1, inter_op_threads));
}

}  // namespace ndflow
