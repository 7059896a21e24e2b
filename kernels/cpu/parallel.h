// Intra-op parallelism for CPU kernels: one OpenMP-based parallel_for (the
// runtime oneDNN already uses, DESIGN.md §4). The thread count is passed
// explicitly, and an exception thrown inside the region is carried out of it
// (an exception escaping an OpenMP region would call std::terminate).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>

namespace ndflow::cpu {

// Work below this many elements stays on the calling thread: waking the
// OpenMP team costs more than it saves.
inline constexpr int64_t kParallelGrain = 32768;

// Calls f(begin, end) over contiguous chunks of [0, n), on up to
// `num_threads` threads, each chunk at least `grain` long.
template <typename F>
void parallel_for(int64_t n, int64_t grain, int num_threads, F&& f) {
  if (n <= 0) return;
  int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
  int nt = static_cast<int>(std::min<int64_t>(num_threads, max_chunks));
  if (nt <= 1 || omp_in_parallel()) {
    f(int64_t(0), n);
    return;
  }
  std::exception_ptr error;
#pragma omp parallel num_threads(nt)
  {
    int tid = omp_get_thread_num();
    int team = omp_get_num_threads();
    int64_t chunk = (n + team - 1) / team;
    int64_t b = tid * chunk, e = std::min(n, b + chunk);
    if (b < e) {
      try {
        f(b, e);
      } catch (...) {
#pragma omp critical(ndflow_parallel_for_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace ndflow::cpu
