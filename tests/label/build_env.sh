#!/usr/bin/env bash
# Builds the MONAI Label environment used by tests/label (a separate venv: MONAI Label 0.8.5 needs torchvision,
# whose PyPI wheels only import beside torch 2.14.1, while the project pins torch 2.13.0).
# Usage: bash tests/label/build_env.sh [VENV_DIR]   (default .venv-label at the repository root; reused when built)
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${1:-.venv-label}"
if [ -x "$venv/bin/monailabel" ] && "$venv/bin/python" -c "import monailabel, monai_adiff" 2>/dev/null; then
    echo "MONAI Label environment ready: $venv"
    exit 0
fi
python3 -m venv "$venv"
. "$venv/bin/activate"
pins="$(mktemp)"
trap 'rm -f "$pins"' EXIT
printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$pins"
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q -c "$pins" monailabel==0.8.5 -e .
# monailabel 0.8.5 imports these at start-up; their newest releases broke its imports
pip install -q -c "$pins" "pydicom<3" "pynetdicom<3" "dicomweb-client[gcp]==0.59.1"
python -c "import monailabel, monai_adiff; print('MONAI Label', monailabel.__version__)"
echo "MONAI Label environment ready: $venv"
