#include "distributed/cluster.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

namespace ndflow::distributed {

namespace {

std::mutex g_mu;
bool g_initialized = false;
bool g_uses_mpi = false;
bool g_we_initialized_mpi = false;  // so finalize only what we started
int g_rank = 0;
int g_size = 1;
int g_thread_level = -1;

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0';
}

std::vector<std::function<void()>> g_pre_finalize_hooks;  // guarded by g_mu

void finalize_at_exit() { finalize(); }

}  // namespace

bool launched_by_mpi() {
  if (const char* force = std::getenv("NDFLOW_MPI"); force && *force)
    return std::string(force) != "0";
  // Open MPI (mpirun/orterun), PMIx launchers (prterun, srun --mpi=pmix),
  // Hydra (MPICH, Intel MPI), MVAPICH.
  return env_set("OMPI_COMM_WORLD_SIZE") || env_set("PMIX_RANK") || env_set("PMI_SIZE") ||
         env_set("PMI_RANK") || env_set("MV2_COMM_WORLD_SIZE");
}

void init() {
  std::lock_guard lock(g_mu);
  if (g_initialized) return;
  if (!launched_by_mpi()) {
    g_initialized = true;
    return;
  }
  int already = 0;
  MPI_Initialized(&already);
  if (already) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    NDF_CHECK(!finalized, ValueError,
              "[distributed.init] MPI was already finalized in this process; it cannot be restarted");
    MPI_Query_thread(&g_thread_level);
  } else {
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &g_thread_level);
    NDF_CHECK(rc == MPI_SUCCESS, Error, "[distributed.init] MPI_Init_thread failed with code ", rc);
    g_we_initialized_mpi = true;
    std::atexit(finalize_at_exit);
  }
  // Errors come back as codes, which the communicator turns into exceptions
  // naming the collective (the default handler would abort with no context).
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  g_uses_mpi = true;
  g_initialized = true;
}

bool is_initialized() {
  std::lock_guard lock(g_mu);
  return g_initialized;
}

bool uses_mpi() {
  std::lock_guard lock(g_mu);
  return g_uses_mpi;
}

int rank() {
  init();
  return g_rank;
}

int world_size() {
  init();
  return g_size;
}

std::string mpi_thread_level() {
  std::lock_guard lock(g_mu);
  if (!g_uses_mpi) return "none";
  switch (g_thread_level) {
    case MPI_THREAD_MULTIPLE: return "multiple";
    case MPI_THREAD_SERIALIZED: return "serialized";
    case MPI_THREAD_FUNNELED: return "funneled";
    default: return "single";
  }
}

void add_pre_finalize_hook(std::function<void()> hook) {
  std::lock_guard lock(g_mu);
  g_pre_finalize_hooks.push_back(std::move(hook));
}

void finalize() {
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lock(g_mu);
    hooks.swap(g_pre_finalize_hooks);
  }
  for (auto& hook : hooks) hook();  // outside g_mu: a hook may call rank() or uses_mpi()
  std::lock_guard lock(g_mu);
  if (!g_we_initialized_mpi) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
  g_we_initialized_mpi = false;
}

void abort_job(const std::string& message, int exit_code) {
  int mpi_up = 0, mpi_down = 0;
  MPI_Initialized(&mpi_up);
  if (mpi_up) MPI_Finalized(&mpi_down);
  std::fprintf(stderr, "ndflow: fatal error on rank %d of %d: %s\n", g_rank, g_size, message.c_str());
  std::fflush(stderr);
  if (mpi_up && !mpi_down) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

}  // namespace ndflow::distributed
