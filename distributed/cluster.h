// The cluster this process belongs to (DESIGN.md §7). Under `mpirun` (or any
// launcher that starts an MPI job: Open MPI, PMIx, Hydra/MPICH, MVAPICH) the
// rank and the size come from MPI, which is initialized once, with
// MPI_THREAD_MULTIPLE, and finalized at process exit. A process started
// without such a launcher is a cluster of one (rank 0, size 1) and never
// touches MPI — so does the parameter server, which does not need it.
//
//   ndflow::distributed::init();                 // idempotent
//   int r = ndflow::distributed::rank(), n = ndflow::distributed::world_size();
//
// NDFLOW_MPI=0 in the environment forces a cluster of one even under mpirun;
// NDFLOW_MPI=1 forces MPI initialization without a launcher (singleton MPI).
#pragma once

#include <functional>
#include <string>

#include "core/error.h"

namespace ndflow::distributed {

// Whether the environment shows an MPI launcher (or NDFLOW_MPI=1).
NDF_EXPORT bool launched_by_mpi();

// Initializes the cluster: MPI when launched_by_mpi(), else a cluster of one.
// Safe to call again (later calls do nothing). If MPI was already initialized
// by someone else (mpi4py), it is used and left for them to finalize.
NDF_EXPORT void init();
NDF_EXPORT bool is_initialized();
// Whether this process runs on MPI (false for a cluster of one).
NDF_EXPORT bool uses_mpi();

// Rank and size of the world; both call init() first.
NDF_EXPORT int rank();
NDF_EXPORT int world_size();

// The MPI thread level obtained ("multiple", "serialized", "funneled",
// "single"), or "none" without MPI.
NDF_EXPORT std::string mpi_thread_level();

// Finalizes MPI if ndflow initialized it (also done automatically at exit).
// After this, collectives fail; init() does not reinitialize MPI.
NDF_EXPORT void finalize();
// Runs `hook` at the start of finalize(), before MPI_Finalize, once: for
// parts that must stop using MPI first (the MPI rendezvous' progress thread).
NDF_EXPORT void add_pre_finalize_hook(std::function<void()> hook);

// Prints `message` to stderr with this rank and ends the whole job: MPI_Abort
// under MPI (every rank exits non-zero), std::_Exit otherwise.
[[noreturn]] NDF_EXPORT void abort_job(const std::string& message, int exit_code = 1);

}  // namespace ndflow::distributed
