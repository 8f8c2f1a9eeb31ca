#!/usr/bin/env bash
# One prepared device check for a lent GPU machine: projection exactness on the GPU against a CPU
# float64 reference and the step-cost ratios (gpu_check.py), then the issue #16 table: five columns
# per model with peak GPU memory, bf16 ratios and a same-seed sha256 check (gpu_table.py). About
# 5 minutes in all; exit 1 if a check fails.
#
# The GPU image already holds torch, torchvision, torchaudio, peft, transformers, typer, rich,
# safetensors, scikit-learn, pillow and matplotlib, but not pydantic, jiwer or soundfile, and it
# cannot fetch anything. Prepare once, here, in the repository root (the folder stays out of git):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 -d .whl pydantic pydantic-core annotated-types typing-inspection \
#     jiwer rapidfuzz click soundfile cffi pycparser
# then run it through the device tool with carry [".whl"]: bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
python3 benchmarks/gpu_check.py || status=1
(cd benchmarks && python3 gpu_table.py) || status=1
exit $status
