#!/usr/bin/env bash
# Sets up what is missing, builds ndflow, and runs the main job: training the
# MLP 784-256-128-10 on Fashion-MNIST from Python (examples/fashion_mnist.py,
# graph mode by default), exporting it, and checking the export with
# ndflow-run. Extra arguments go to the example (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
exec .venv/bin/python examples/fashion_mnist.py "$@"
