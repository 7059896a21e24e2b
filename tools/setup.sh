#!/usr/bin/env bash
# Installs everything ndflow needs (DESIGN.md §2): Debian packages through
# apt-get and Python packages into .venv. Idempotent: when all is present it
# only checks and returns in a few seconds.
#   tools/setup.sh           build, test and demo dependencies
#   tools/setup.sh --bench   also the benchmark peer (PyTorch) into .venv
set -euo pipefail
cd "$(dirname "$0")/.."

want_bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=1 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (valid: --bench)" >&2; exit 2 ;;
  esac
done

debs=(
  build-essential cmake ninja-build ccache pkg-config
  clang-14 libclang-rt-14-dev
  libdnnl-dev ocl-icd-opencl-dev opencl-c-headers  # oneDNN's CMake config asks for OpenCL
  libopenmpi-dev openmpi-bin
  nlohmann-json3-dev catch2 pybind11-dev
  libzmq3-dev cppzmq-dev
  zlib1g-dev  # examples/cpp/fashion_mnist reads the gzip IDX files
  dataset-fashion-mnist
)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$py" -m venv .venv
fi
pydeps=(numpy pytest scikit-build-core pybind11 tqdm matplotlib)
stamp=.venv/.ndflow-deps
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${pydeps[*]}" ]; then
  echo "setup: installing Python packages into .venv: ${pydeps[*]}"
  .venv/bin/pip install -q "${pydeps[@]}"
  echo "${pydeps[*]}" > "$stamp"
fi

# Developer install of the Python package: .venv imports python/ndflow from
# this checkout, where the build (tools/build.sh) puts the extension _C. So
# tests always run the current sources, built in the one build tree (build/).
# Users install with `pip install .` instead (scikit-build-core, same CMake).
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$(cat "$site/ndflow-dev.pth" 2>/dev/null)" != "$PWD/python" ]; then
  echo "$PWD/python" > "$site/ndflow-dev.pth"
fi

if [ "$want_bench" = 1 ] && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "setup: installing the benchmark peer (PyTorch) into .venv"
  .venv/bin/pip install -q torch
fi
exit 0
