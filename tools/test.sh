#!/usr/bin/env bash
# Sets up what is missing, builds, and runs every test. Non-zero exit on any failure.
#   tools/test.sh            the whole suite (what CI runs)
#   NDFLOW_PRESET=asan tools/test.sh   the same under ASan+UBSan (slow; not for CI)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
tools/setup.sh
tools/build.sh
preset=${NDFLOW_PRESET:-default}
builddir=$([ "$preset" = default ] && echo build || echo "build-$preset")

echo "== C++ tests (ctest)"
ctest --preset "$preset" -j2 --timeout 600

echo "== Python tests (pytest)"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/python

echo "== Distributed tests (tests/dist: 1 process, then mpirun with 2 and 4 ranks)"
tools/run_dist_tests.sh

echo "== C++ examples built against the installed package"
"$builddir/examples/mlp_synthetic" --steps 200 --quiet
if [ -d /usr/share/datasets/fashion-mnist ]; then
  "$builddir/examples/fashion_mnist" --limit 2000 --epochs 1 --mode graph
fi

echo "== all tests passed in $(( $(date +%s) - start )) s"
