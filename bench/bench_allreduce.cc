// Allreduce throughput of ndflow's Communicator (distributed/communicator.h)
// against a bare MPI_Allreduce on the same buffers: f32 sum in place, 1 KB to
// 64 MB. Both run in the same process, alternately and in a rotating order;
// a batch's time is the slowest rank's. "ratio" is bare time / ndflow time of
// the best batches (1 = no overhead; the target is >= 0.9 from 1 MB up),
// "median" the median over rounds of that ratio within a round (steadier on a
// loaded machine), "ratio nocheck" the best ratio with the cross-rank
// signature check turned off.
// Run it under mpirun (tools/bench.sh bench_allreduce does, with 2 and 4 ranks):
//
//   mpirun --oversubscribe -np 2 build/bench/bench_allreduce [--max-mb 64] [--rounds 9]
//   (as root add --allow-run-as-root)
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <ndflow/ndflow.h>

#include "bench_util.h"
#include "distributed/cluster.h"
#include "distributed/communicator.h"

using namespace ndflow_bench;
namespace dist = ndflow::distributed;

namespace {

// Seconds per call of `fn` over `iters` calls, the slowest rank's.
template <typename Fn>
double time_batch(int iters, Fn&& fn) {
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  for (int i = 0; i < iters; ++i) fn();
  double dt = MPI_Wtime() - t0, worst = 0;
  MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return worst / iters;
}

std::string human(size_t bytes) {
  if (bytes >= (1u << 20)) return fmt("%zu MB", bytes >> 20);
  return fmt("%zu KB", bytes >> 10);
}

}  // namespace

int main(int argc, char** argv) {
  init_bench_process();
  size_t max_mb = 64;
  int rounds = 9;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--max-mb")) max_mb = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  if (!dist::launched_by_mpi()) {
    std::printf("bench_allreduce: run it under mpirun, e.g.\n"
                "  mpirun --oversubscribe -np 2 %s   (as root: add --allow-run-as-root)\n", argv[0]);
    return 0;
  }
  dist::init();
  dist::Communicator& comm = dist::world();
  const int rank = comm.rank(), size = comm.size();
  if (rank == 0)
    std::printf("== allreduce, f32 sum in place, %d ranks (MPI thread level %s), best of %d alternated "
                "batches\n%10s %12s %12s %8s %8s %14s\n",
                size, dist::mpi_thread_level().c_str(), rounds, "size", "MPI GB/s", "ndflow GB/s", "ratio",
                "median", "ratio nocheck");

  for (size_t bytes = 1024; bytes <= max_mb << 20; bytes *= 4) {
    const int64_t n = static_cast<int64_t>(bytes / sizeof(float));
    std::vector<float> buf(static_cast<size_t>(n), 0.f);  // zeros: sums stay finite and normal
    ndflow::Tensor t = ndflow::Tensor::from_blob(buf.data(), {n}, {1}, ndflow::DType::f32,
                                                 ndflow::Device::cpu(), nullptr);
    // About 20 ms of traffic per batch at 5 GB/s, between 3 and 2000 calls.
    const int iters = static_cast<int>(std::clamp<size_t>((size_t{100} << 20) / bytes, 3, 2000));
    auto bare = [&] { MPI_Allreduce(MPI_IN_PLACE, buf.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); };
    auto ours = [&] { comm.allreduce(t, dist::ReduceOp::Sum); };
    bare();  // warm both paths (and the pages)
    ours();
    double best_bare = 1e30, best_ours = 1e30, best_nocheck = 1e30;
    std::vector<double> paired;  // bare / ndflow of the batches of one round
    for (int r = 0; r < rounds; ++r) {
      // The three variants in a rotating order: none always runs first.
      double b = 0, o = 0, nc = 0;
      for (int k = 0; k < 3; ++k) {
        switch ((r + k) % 3) {
          case 0: b = time_batch(iters, bare); break;
          case 1: o = time_batch(iters, ours); break;
          case 2:
            comm.set_check_signatures(false);
            nc = time_batch(iters, ours);
            comm.set_check_signatures(true);
            break;
        }
      }
      best_nocheck = std::min(best_nocheck, nc);
      best_bare = std::min(best_bare, b);
      best_ours = std::min(best_ours, o);
      paired.push_back(b / o);
    }
    std::sort(paired.begin(), paired.end());
    if (rank == 0) {
      double ratio = best_bare / best_ours;
      std::printf("%10s %12.2f %12.2f %8.2f %8.2f %14.2f\n", human(bytes).c_str(), bytes / best_bare * 1e-9,
                  bytes / best_ours * 1e-9, ratio, paired[paired.size() / 2], best_bare / best_nocheck);
      summary("allreduce f32 sum", fmt("%s, %d ranks", human(bytes).c_str(), size),
              fmt("%.2f GB/s", bytes / best_ours * 1e-9), fmt("%.2f GB/s (MPI)", bytes / best_bare * 1e-9),
              fmt("%.2fx speed", ratio));
    }
  }
  return 0;
}
