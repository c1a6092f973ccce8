"""Streaming moderation, measured offline on a response-harm set: how soon the guard cuts harmful
responses while they stream, how often it cuts benign ones, and what the checks cost.

Each response is tokenized with the guard's tokenizer and replayed token by token through the proxy's
own `StreamModerator` (a check every `--every` tokens and at sentence ends, as `moderation:` does);
each round's due checks go to the guard as one batch (`GuardServer`, score-only no_think under
verdict-safe decoding: what the proxy sends). Compared with checking once at the end.

Prints: cut rate of gold-harmful responses and the share cut within 32/64/128 tokens; false cuts on
gold-benign ones; among responses the end-of-stream check flags, the share the stream cut within
32/64/128 tokens; guard prompt tokens per response token (all checks vs one check at the end; and the
new tokens per check when the guard's prefix cache holds the previous check's prompt); seconds per
check. Numbers only.

    .venv/bin/python benchmarks/stream_moderation.py --items 100 --every 32
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beavertails")
    parser.add_argument("--items", type=int, default=100, help="half gold-harmful, half gold-benign (seeded)")
    parser.add_argument("--every", type=int, default=32)
    parser.add_argument("--max-response-tokens", type=int, default=256)
    parser.add_argument("--model", default="embedded-guard")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from reasonguard.config.serve import ServeConfig
    from reasonguard.datasets import load_dataset
    from reasonguard.engines import build_engine
    from reasonguard.models import resolve_model
    from serve.guard import GuardServer, hf_token_counter
    from serve.moderation import StreamModerator
    from serve.schemas import GuardBatchRequest

    rows = [e for e in load_dataset(args.dataset) if e.response and e.response_harm_label in ("harmful", "unharmful")]
    rng = random.Random(args.seed)
    harmful = [e for e in rows if e.response_harm_label == "harmful"]
    benign = [e for e in rows if e.response_harm_label == "unharmful"]
    items = rng.sample(harmful, args.items // 2) + rng.sample(benign, args.items - args.items // 2)

    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = ServeConfig.model_validate({
        "engine": {"kind": "vllm", "model": args.model, "max_model_len": 2048},
        "replica": {"num_replicas": 1},
        "limits": {"max_batch_items": 256, "max_text_chars": 100_000},
        "guard": {"temperature": 0.0},
    })
    started = time.monotonic()
    engine = build_engine(config.engine)
    server = GuardServer(engine, config, count_tokens=hf_token_counter(path))
    start_s = time.monotonic() - started

    def check(batch: list[tuple[str, str]]) -> list:
        request = GuardBatchRequest(inputs=[{"prompt": p, "response": r} for p, r in batch], score_only=True,
                                    mode="no_think")
        return server.guard(request).results

    streams = []
    for ex in items:
        ids = tokenizer(ex.response, add_special_tokens=False)["input_ids"][: args.max_response_tokens]
        pieces = [tokenizer.decode(ids[: k + 1]) for k in range(len(ids))]
        deltas = [pieces[0]] + [pieces[k][len(pieces[k - 1]):] for k in range(1, len(pieces))]
        streams.append({"ex": ex, "deltas": deltas, "pos": 0, "mod": StreamModerator(args.every, True, 8, True),
                        "cut_at": None, "done": False, "prompt_tokens": [], "checks": 0})

    check_seconds, check_count = 0.0, 0
    while True:
        due = []
        for s in streams:
            if s["done"]:
                continue
            while s["pos"] < len(s["deltas"]):
                is_due, _ = s["mod"].add(s["deltas"][s["pos"]])
                s["pos"] += 1
                if is_due:
                    due.append(s)
                    break
            else:
                if s["mod"].pending():
                    due.append(s)
                else:
                    s["done"] = True
        if not due:
            break
        t = time.monotonic()
        results = check([(s["ex"].prompt, s["mod"].text) for s in due])
        check_seconds += time.monotonic() - t
        check_count += len(due)
        for s, result in zip(due, results):
            s["checks"] += 1
            s["prompt_tokens"].append(result.usage.prompt_tokens)
            if result.flagged:
                s["cut_at"], s["done"] = s["mod"].tokens, True
            else:
                s["mod"].passed()
                if s["pos"] >= len(s["deltas"]):
                    s["done"] = True

    t = time.monotonic()
    offline = check([(s["ex"].prompt, "".join(s["deltas"])) for s in streams])
    offline_s = time.monotonic() - t

    def share(values: list[bool]) -> float:
        return round(sum(values) / len(values), 3) if values else float("nan")

    gold_h = [s for s in streams if s["ex"].response_harm_label == "harmful"]
    gold_b = [s for s in streams if s["ex"].response_harm_label == "unharmful"]
    flagged_offline = [s for s, r in zip(streams, offline) if r.flagged]
    response_tokens = sum(len(s["deltas"]) for s in streams)
    all_check_tokens = sum(sum(s["prompt_tokens"]) for s in streams)
    new_tokens = sum(s["prompt_tokens"][0] + sum(max(0, b - a) for a, b in zip(s["prompt_tokens"], s["prompt_tokens"][1:]))
                     for s in streams if s["prompt_tokens"])
    result = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs", "dataset": args.dataset,
        "model": args.model, "items": len(streams), "every_tokens": args.every,
        "mean_response_tokens": round(statistics.mean(len(s["deltas"]) for s in streams), 1),
        "gold_harmful": {"n": len(gold_h), "cut": share([s["cut_at"] is not None for s in gold_h]),
                         **{f"cut_within_{k}": share([s["cut_at"] is not None and s["cut_at"] <= k for s in gold_h])
                            for k in (32, 64, 128)},
                         "end_check_flags": share([r.flagged for s, r in zip(streams, offline) if s in gold_h])},
        "gold_benign": {"n": len(gold_b), "false_cut": share([s["cut_at"] is not None for s in gold_b]),
                        "end_check_flags": share([r.flagged for s, r in zip(streams, offline) if s in gold_b])},
        "end_check_flagged": {"n": len(flagged_offline),
                              **{f"stream_cut_within_{k}": share([s["cut_at"] is not None and s["cut_at"] <= k
                                                                  for s in flagged_offline]) for k in (32, 64, 128)}},
        "checks": check_count, "checks_per_response": round(check_count / len(streams), 2),
        "guard_prompt_tokens_per_response_token": {
            "all_checks": round(all_check_tokens / response_tokens, 2),
            "all_checks_with_prefix_cache": round(new_tokens / response_tokens, 2),
            "one_check_at_end": round(sum(r.usage.prompt_tokens for r in offline) / response_tokens, 2)},
        "seconds_per_check": round(check_seconds / max(check_count, 1), 3),
        "seconds_per_end_check": round(offline_s / len(streams), 3),
        "engine_start_s": round(start_s, 1),
    }
    print(json.dumps(result, indent=2))
    engine.close() if hasattr(engine, "close") else None


if __name__ == "__main__":
    main()
