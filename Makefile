# The two set-up commands of README.md. Each creates or reuses the project-local .venv.
PY := .venv/bin/python
CONFIG ?= cluster/configs/demo_local.yaml

.PHONY: venv demo test test-fast chain-tiny goldens clean-outputs

venv:
	@bash scripts/setup_venv.sh

## Runs the main job end to end on the embedded default (SmolLM2-135M, demo sample, CPU).
demo: venv
	$(PY) -m jobs.demo --config $(CONFIG)

## Runs the whole test suite (unit, Ray, vLLM-on-CPU, DeepSpeed-over-gloo tiers).
test: venv
	@bash scripts/ensure_chromium.sh
	$(PY) -m pytest -q -ra --durations=30

## Only the pure-core unit tests (seconds).
test-fast: venv
	$(PY) -m pytest -q -m "not ray and not vllm and not slow"

## The sixteen stages of the local chain on the tiny random model, each its own process (about 38 min on
## 2 cores: too long for CI's 45 minutes beside the suite; a nightly job's). Logs: outputs/chain_tiny/logs.
chain-tiny: venv
	$(PY) -m jobs.chain cluster/chains/local.yaml --replace smollm2=tiny --replace outputs/=outputs/chain_tiny/ \
	  --logs outputs/chain_tiny/logs

## Rewrites the golden files of the format tests from the current code (review `git diff tests/golden`).
goldens: venv
	$(PY) -m tests.goldens

clean-outputs:
	rm -rf outputs
