#!/usr/bin/env bash
# Runs tests/dist (ndflow.distributed) as one plain process and under mpirun
# with 2 and 4 ranks (oversubscribed: this machine may have fewer cores).
# Called by tools/test.sh after pytest; needs the built extension ndflow._C and
# build/tests/cpp/rendezvous_mpi_test (NDFLOW_BUILD_DIR=build-asan for another build).
#   tools/run_dist_tests.sh            1, 2 and 4 ranks
#   tools/run_dist_tests.sh 2          only 2 ranks (extra args go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
ranks=(1 2 4)
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then ranks=("$1"); shift; fi
mpi_args=(--oversubscribe)
[ "$(id -u)" = 0 ] && mpi_args+=(--allow-run-as-root)
# Containers often forbid the cross-process memory attach of the shared-memory
# transport; plain copies work everywhere.
mpi_args+=(--mca btl_vader_single_copy_mechanism none)
pytest_args=(-q -p no:cacheprovider tests/dist "$@")
for n in "${ranks[@]}"; do
  echo "-- tests/dist, $n rank(s)"
  if [ "$n" = 1 ]; then
    # A world of one, without MPI.
    timeout 300 "$py" -m pytest "${pytest_args[@]}"
  else
    # Only rank 0 reports; a failure on any rank aborts the job (conftest.py),
    # and `timeout` ends a job that hangs anyway.
    timeout 300 mpirun "${mpi_args[@]}" -np "$n" bash -c \
      'if [ "${OMPI_COMM_WORLD_RANK:-0}" = 0 ]; then exec "$0" "$@"; else exec "$0" "$@" >/dev/null; fi' \
      "$py" -m pytest --color=no "${pytest_args[@]}"
    # The MPI rendezvous (C++ only; built with the C++ tests). A few seconds.
    echo "-- rendezvous_mpi_test, $n ranks"
    timeout 120 mpirun "${mpi_args[@]}" -np "$n" "${NDFLOW_BUILD_DIR:-build}/tests/cpp/rendezvous_mpi_test"
  fi
done
