// The inter-op thread pool (DESIGN.md §4, §6): a few std::thread workers
// taking tasks from one FIFO queue. The executor hands it the nodes that are
// worth a thread hop; kernels parallelize inside themselves with OpenMP
// (intra-op threads), so inter × intra is kept within the cores.
//
//   ThreadPool pool(3);
//   pool.schedule([] { ... });   // runs on a worker; must not throw
//
// Tasks must not throw: an exception escaping a worker would terminate the
// process, so the executor catches everything inside its tasks.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"

namespace ndflow {

class NDF_EXPORT ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();  // finishes the queued tasks, then joins the workers
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void schedule(std::function<void()> task);
  int num_threads() const { return static_cast<int>(workers_.size()); }

 private:
  void worker_loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Cores this process may use for kernels: get_num_threads() (OMP_NUM_THREADS,
// set_num_threads, or the hardware cores).
NDF_EXPORT int available_cores();
// Inter-op threads for a requested count (0 = default: 1 on machines of 4
// cores or fewer, else cores / 2).
NDF_EXPORT int resolve_inter_op_threads(int requested);
// Intra-op threads per kernel for a requested count (0 = default: cores /
// inter-op threads, at least 1, so that inter × intra never exceeds the cores).
NDF_EXPORT int resolve_intra_op_threads(int requested, int inter_op_threads);

}  // namespace ndflow
