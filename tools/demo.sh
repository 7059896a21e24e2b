#!/usr/bin/env bash
# Sets up what is missing, builds ndflow, and runs the main job. For now that
# is the C++ example: a two-layer MLP trained with hand-rolled SGD on a
# synthetic classification problem (Fashion-MNIST training follows with the
# Python package).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
build/examples/mlp_synthetic "$@"
