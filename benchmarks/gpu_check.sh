#!/usr/bin/env bash
# One prepared GPU check (see benchmarks/gpu_check.py): installs carried wheels of the packages a bare GPU image
# lacks, then runs every stage from the working tree. Arguments go to gpu_check.py (--out DIR, --cache FILE, --dry).
#
# Prepare the wheels where pip can reach the package index (pure-Python wheels, any platform):
#   python -m pip download --no-deps -d .whl "monai==1.6.*" pytorch-ignite nibabel opensimplex==0.4.5.1
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
exec python3 benchmarks/gpu_check.py "$@"
