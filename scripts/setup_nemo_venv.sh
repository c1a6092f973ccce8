#!/usr/bin/env bash
# Create or reuse .venv-nemo: NeMo Guardrails for examples/nemo_guardrails (and its integration test), kept
# apart from the project's .venv, whose huggingface_hub 2.x nemoguardrails' dependencies do not accept.
# Nothing of the project is installed there: NeMo Guardrails only talks to the guard over HTTP.
# Re-running is cheap: it reinstalls only when the pin below changes (the stamp holds the installed pin).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${NEMO_VENV:-.venv-nemo}
# 0.24.x talks to OpenAI-compatible endpoints with its own HTTP client (no LangChain needed for engine: openai).
PIN="nemoguardrails==0.24.1"
STAMP="$VENV/.nemo-installed"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PIN" ] && [ -x "$VENV/bin/python" ]; then
  echo ">> $VENV is up to date ($PIN)"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
rm -f "$STAMP"
# (the lines filtered out are this machine's pip config naming local indexes that lack a package: noise)
"$VENV/bin/python" -m pip install -q --no-compile "$PIN" 2>&1 | { grep -v "is neither a file nor a directory" || true; }
"$VENV/bin/python" -c "import nemoguardrails; from nemoguardrails import LLMRails, RailsConfig; print('>> ready: nemoguardrails', nemoguardrails.__version__)"
echo "$PIN" > "$STAMP"
