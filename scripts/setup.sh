#!/usr/bin/env bash
# Set up a fresh machine for gradcraft: a virtual environment in .venv with the package and
# the extras named as arguments (default: cli plot), plus the Fashion-MNIST files from the
# distribution's package when apt is available and they are not there yet.
#   bash scripts/setup.sh            # to train
#   bash scripts/setup.sh dev        # to run the tests (adds PyTorch 2.13 CPU for parity tests,
#                                    # Optuna, ONNX + ONNX Runtime and MPI for their tests)
set -euo pipefail
cd "$(dirname "$0")/.."

extras="cli,plot,log,fast"
with_torch=0
for arg in "$@"; do
    case "$arg" in
        dev) extras="$extras,dev,tune,onnxruntime,mpi"; with_torch=1 ;;
        *) extras="$extras,$arg" ;;
    esac
done

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[$extras]"
if [ "$with_torch" = 1 ]; then
    .venv/bin/python -m pip install --quiet torch==2.13.0
fi

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
    && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte ] \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
        || echo "note: could not install dataset-fashion-mnist; gradcraft will look elsewhere" >&2
fi
