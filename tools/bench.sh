#!/usr/bin/env bash
# Builds ndflow (preset "default") and the libtorch peer (bench/peer, its own
# CMake project in build/bench-peer), runs the benchmarks of bench/ in order
# and prints a summary table. Times mean nothing on a CI runner: CI never runs
# this (BENCHMARKING.md: benchmarks print, tests assert). The peer, PyTorch,
# comes from `tools/setup.sh --bench`; without it the benchmarks still run.
#   tools/bench.sh                        peak_fma bench_matmul bench_dispatch bench_softmax_ce
#                                         bench_mlp_step bench_allreduce bench_ps
# bench_allreduce runs under mpirun (oversubscribed), with 2 and then 4 ranks.
#   tools/bench.sh bench_matmul ...       only those, in the order given
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -n "${CI:-}" ] && [ -z "${NDFLOW_BENCH_IN_CI:-}" ]; then
  echo "bench.sh: not run under CI (set NDFLOW_BENCH_IN_CI=1 to force)"
  exit 0
fi
all=(peak_fma bench_matmul bench_dispatch bench_softmax_ce bench_mlp_step bench_allreduce bench_ps)
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=("${all[@]}")
for b in "${benches[@]}"; do
  [ -f "bench/$b.cc" ] || { echo "bench.sh: no benchmark '$b' (have: ${all[*]})" >&2; exit 2; }
done

export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
cmake --preset default >/dev/null || exit 1
# Only the benchmarks (and libndflow): tests and examples are not needed here.
cmake --build --preset default --target "${benches[@]}" || exit 1

# The libtorch peer: C++ against C++ for dispatch and softmax+CE. Optional: the
# benchmarks fall back to timing PyTorch from Python when it is missing.
peer_dir=build/bench-peer
py=.venv/bin/python
if [ -x "$py" ] && "$py" -c 'import torch' 2>/dev/null; then
  prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  abi=$("$py" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  mkdir -p "$peer_dir"
  echo "bench.sh: building the libtorch peer in $peer_dir (log: $peer_dir.log)"
  if cmake -S bench/peer -B "$peer_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
       -DCMAKE_PREFIX_PATH="$prefix" -DTORCH_CXX11_ABI="$abi" "${launcher[@]}" >"$peer_dir.log" 2>&1 &&
     cmake --build "$peer_dir" >>"$peer_dir.log" 2>&1; then
    :
  else
    echo "bench.sh: the libtorch peer did not build (see $peer_dir.log); dispatch and"
    echo "          softmax+CE compare against PyTorch from Python instead"
    rm -f "$peer_dir/torch_dispatch"
  fi
else
  echo "peer: PyTorch not installed (tools/setup.sh --bench)"
fi

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
failed=()
for b in "${benches[@]}"; do
  echo
  # Rows for the table go to $raw; everything else is shown as it comes.
  if [ "$b" = bench_allreduce ]; then
    mpi=(mpirun --oversubscribe --mca btl_vader_single_copy_mechanism none)
    [ "$(id -u)" = 0 ] && mpi+=(--allow-run-as-root)
    for n in 2 4; do
      "${mpi[@]}" -np "$n" build/bench/"$b" | tee -a "$raw" | grep -v '^SUMMARY|'
      [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("$b -np $n")
    done
    continue
  fi
  build/bench/"$b" | tee -a "$raw" | grep -v '^SUMMARY|'
  [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("$b")
done

echo
echo "== summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; best of alternated runs;
   ratios: "x time" below 1 and "x speed" above 1 favour ndflow)"
grep '^SUMMARY|' "$raw" | awk -F'|' '
  BEGIN { n = 0; w[1]=w[2]=w[3]=w[4]=w[5]=0
          r[0,1]="benchmark"; r[0,2]="config"; r[0,3]="ndflow"; r[0,4]="peer"; r[0,5]="ratio" }
  { n++; for (i = 2; i <= 6; i++) r[n, i-1] = $i }
  END { for (k = 0; k <= n; k++) for (i = 1; i <= 5; i++) if (length(r[k,i]) > w[i]) w[i] = length(r[k,i])
        for (k = 0; k <= n; k++) {
          line = ""
          for (i = 1; i <= 5; i++) line = line sprintf("%-" (w[i] + 2) "s", r[k,i])
          print line
        } }'
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench.sh: failed: ${failed[*]}" >&2
  exit 1
fi
