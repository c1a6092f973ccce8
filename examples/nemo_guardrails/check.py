"""Check messages with NeMo Guardrails' content-safety rails (config.yml + prompts.yml beside this file) backed
by the reasonguard guard, and print what the rails decided as JSON. Runs in the NeMo Guardrails venv
(scripts/setup_nemo_venv.sh makes .venv-nemo), not in the project's: it only needs the guard's URL.

    .venv-nemo/bin/python examples/nemo_guardrails/check.py --base-url http://127.0.0.1:8000/v1 \
        --prompt "How do I bake bread?" --prompt "How do I make a pipe bomb?" \
        --response "How do I pick a lock?" "Insert a tension wrench, then rake the pins."

Each --prompt goes through the input rail (`content safety check input`), each --response pair (user
message, assistant message) through the output rail (`content safety check output`), one
`LLMRails.check_async` each. Printed: {"nemoguardrails": version, "base_url", "model", "reasoning",
"checks": [{"rail": "input"|"output", "prompt", "response", "status": "passed"|"blocked", "blocked_by",
"guard_calls": [{"task", "model", "request_id", "prompt", "completion", "completion_tokens"}]}]}, where
guard_calls are the rail's calls to the guard as NeMo Guardrails logged them: the prompt it rendered, the
guard's answer (less a <think> block, which NeMo Guardrails takes out), the response's id and token count. Exit status 0 once every
check ran; 1 when one raised (the JSON then has "error").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_rails(base_url: str, model: str | None, api_key: str | None, reasoning: bool, config_dir: Path = HERE):
    """LLMRails from the folder's config, pointed at `base_url` (and `model`, `api_key` when given)."""
    from nemoguardrails import LLMRails, RailsConfig

    config = RailsConfig.from_path(str(config_dir))
    guard = next(m for m in config.models if m.type == "content_safety")
    guard.parameters["base_url"] = base_url
    if model:
        guard.model = model
    if api_key is not None:
        guard.parameters["api_key"] = api_key
    config.rails.config.content_safety.reasoning.enabled = reasoning
    return LLMRails(config), guard.model


def _llm_calls(rails) -> list:
    return list(rails.explain().llm_calls or [])


def _guard_calls(calls) -> list[dict]:
    out = []
    for call in calls:
        task = call.task or ""
        if task.startswith("content_safety_check"):
            out.append({"task": task, "model": call.llm_model_name, "request_id": call.request_id, "prompt": call.prompt,
                        "completion": call.completion, "completion_tokens": call.completion_tokens})
    return out


async def run_checks(rails, prompts: list[str], responses: list[tuple[str, str]]) -> list[dict]:
    from nemoguardrails.rails.llm.options import RailType

    jobs = [("input", p, None) for p in prompts] + [("output", p, r) for p, r in responses]
    results = []
    for rail, prompt, response in jobs:
        messages = [{"role": "user", "content": prompt}]
        if response is not None:
            messages.append({"role": "assistant", "content": response})
        seen = len(_llm_calls(rails))  # the explain log accumulates over checks: keep this check's calls
        result = await rails.check_async(messages, rail_types=[RailType.INPUT if rail == "input" else RailType.OUTPUT])
        results.append({
            "rail": rail, "prompt": prompt, "response": response, "status": result.status.value,
            "blocked_by": result.rail, "guard_calls": _guard_calls(_llm_calls(rails)[seen:]),
        })
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the guard's OpenAI base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", help="the served model id (default: config.yml's)")
    parser.add_argument("--api-key", help="bearer token for the guard (default: config.yml's)")
    parser.add_argument("--think", action="store_true", help="reasoning on: the prompt ends in /think")
    parser.add_argument("--prompt", action="append", default=[], help="a user message for the input rail (repeatable)")
    parser.add_argument("--response", action="append", nargs=2, default=[], metavar=("PROMPT", "RESPONSE"),
                        help="a user message and the assistant's answer for the output rail (repeatable)")
    args = parser.parse_args(argv)
    if not args.prompt and not args.response:
        parser.error("give at least one --prompt or --response")

    import nemoguardrails

    out: dict = {"nemoguardrails": nemoguardrails.__version__, "base_url": args.base_url, "reasoning": args.think}
    status = 0
    try:
        rails, model = load_rails(args.base_url, args.model, args.api_key, args.think)
        out["model"] = model
        out["checks"] = asyncio.run(run_checks(rails, args.prompt, [tuple(r) for r in args.response]))
    except Exception as exc:  # noqa: BLE001 - reported as JSON for the caller (the integration test)
        out["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
