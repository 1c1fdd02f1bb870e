#!/usr/bin/env bash
# GPU check of the shipped model on the CUDA provider (see scripts/gpu_check.py for what it checks).
# Needs onnxruntime-gpu with CUDA 12 + cuDNN 9 in the Python that runs it: PYTHON=/path/to/python scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
