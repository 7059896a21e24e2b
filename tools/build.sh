#!/usr/bin/env bash
# Configures and builds ndflow (preset "default" unless NDFLOW_PRESET is set),
# installs it into build/install and builds the C++ examples against that
# installation, as a user of the package would. Used by test.sh and demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${NDFLOW_PRESET:-default}
# CI clones into another folder: let ccache hit across checkouts.
export CCACHE_BASEDIR="$PWD"
export CCACHE_NOHASHDIR=1
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"
builddir=$([ "$preset" = default ] && echo build || echo "build-$preset")  # as in CMakePresets.json
cmake --install "$builddir" --prefix "$builddir/install" >/dev/null
cmake -S examples/cpp -B "$builddir/examples" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$PWD/$builddir/install" >/dev/null
cmake --build "$builddir/examples"
