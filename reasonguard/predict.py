"""Guard predictions as pure functions around an engine: examples -> requests -> rows.

The same three steps (to_request, engine, to_prediction_rows) run in-process here and
inside Ray Data actors in `pipelines/predict.py`, so the Ray path adds no logic of its own.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from reasonguard.vocabulary import PolicyLike
from reasonguard.calibration import Calibration
from reasonguard.decoding import VerdictScores, VerdictSpec, verdict_outcome, verdict_sampling_fields
from reasonguard.engines.base import Engine, RequestOutput, SamplingConfig
from reasonguard.policy import REFUSAL_POLICY, Policy, resolve_policy
from reasonguard.prompts import Mode, guard_messages
from reasonguard.schema import GuardExample
from reasonguard.targets import guard_input_of, policy_of
from reasonguard.verdict import parse_verdict


def task_of(example: GuardExample) -> str:
    """Which verdict an example is scored on: response harm when labelled, else prompt harm."""
    if example.extra.get("response_refusal_label") is not None:
        return "refusal"
    return "response" if example.response_harm_label is not None else "prompt"


@dataclass(frozen=True)
class PredictionRow:
    """One sample of the guard on one item: raw text, parsed verdict, cost."""

    dataset: str
    item_id: str
    task: str
    mode: str
    sample_idx: int
    policy: str
    prompt_harm_gold: str | None
    response_harm_gold: str | None
    refusal_harm_gold: str | None  # refusal task: "refusal" / "compliance" (named for the metrics' <task>_harm_gold)
    raw_output: str
    parsed_ok: bool
    parse_error: str | None
    pred_prompt_harm: str | None
    pred_response_harm: str | None
    pred_refusal_harm: str | None  # refusal task: the response "violates" REFUSAL_POLICY -> "refusal"
    reasoning: str | None
    output_tokens: int
    prompt_tokens: int
    latency_s: float
    finish_reason: str | None
    model_id: str
    # Verdict-safe decoding and scores (reasonguard.decoding): P(harmful) of the prompt and the
    # response, calibrated when a calibration was applied (the `_raw` columns are the model's own).
    constrained: bool = False
    p_prompt_harm: float | None = None
    p_response_harm: float | None = None
    p_prompt_harm_raw: float | None = None
    p_response_harm_raw: float | None = None
    calibrated: bool = False
    score_exact: bool | None = None
    closed_by_budget: bool = False
    # Violated categories (asked for with `categories`): JSON lists. `pred_categories` are the codes the
    # guard named, resolved against the policy (names for a free-text policy; None = not asked);
    # `categories_gold` the dataset's own categories (mapped to codes for scoring by reasonguard.categories).
    pred_categories: str | None = None
    categories_gold: str = "[]"

    @property
    def gold(self) -> str | None:
        return {"response": self.response_harm_gold, "refusal": self.refusal_harm_gold}.get(self.task, self.prompt_harm_gold)

    @property
    def pred(self) -> str | None:
        if not self.parsed_ok:
            return None
        return {"response": self.pred_response_harm, "refusal": self.pred_refusal_harm}.get(self.task, self.pred_prompt_harm)

    def to_dict(self) -> dict:
        return asdict(self)


def policy_name(policy: PolicyLike) -> str:
    resolved = resolve_policy(policy)
    return resolved.name


def to_request(example: GuardExample, mode: Mode, policy: PolicyLike = None, categories: bool = False) -> list[dict]:
    """The chat messages for one example (the example's own policy wins, as in topic-following data;
    refusal-task items are judged against REFUSAL_POLICY, which names no categories)."""
    own = _policy_for(example, policy)
    return guard_messages(guard_input_of(example), mode, own, categories and own is not REFUSAL_POLICY)


def verdict_spec(example: GuardExample, mode: Mode, categories: bool = False) -> VerdictSpec:
    """What the constrained verdict of an example may be (a response line only where there is one)."""
    categories = categories and task_of(example) != "refusal"
    return VerdictSpec(mode=mode, has_response=example.response is not None, categories=categories)


def _policy_for(example: GuardExample, policy):
    return REFUSAL_POLICY if task_of(example) == "refusal" else policy_of(example, policy)


def prediction_row(
    example: GuardExample,
    text: str,
    *,
    mode: Mode,
    sample_idx: int,
    model_id: str,
    output_tokens: int = 0,
    prompt_tokens: int = 0,
    latency_s: float = 0.0,
    finish_reason: str | None = None,
    dataset: str | None = None,
    policy: PolicyLike = None,
    constrained: bool = False,
    verdict_scores: VerdictScores | None = None,
    closed_by_budget: bool = False,
    calibration: Calibration | None = None,
    categories: bool = False,
) -> PredictionRow:
    """Parse one generation into a row (every inference path ends here)."""
    import json

    from reasonguard.categories import resolve_categories

    verdict = parse_verdict(text, expect_response=example.response is not None)
    named = None
    if categories and task_of(example) != "refusal":  # codes of a taxonomy; a free-text policy's own words
        active = resolve_policy(_policy_for(example, policy))
        codes, names = resolve_categories(verdict.categories, active)
        named = json.dumps(codes if active.is_taxonomy else names, ensure_ascii=False)
    refusal = {"harmful": "refusal", "unharmful": "compliance"}.get(verdict.response_harm or "")
    raw = verdict_scores or VerdictScores(exact=False)
    p_response_raw = raw.response if example.response is not None else None
    cal = calibration or Calibration()
    return PredictionRow(
        dataset=dataset or example.source,
        item_id=example.id,
        task=task_of(example),
        mode=mode,
        sample_idx=sample_idx,
        policy=policy_name(_policy_for(example, policy)),
        prompt_harm_gold=example.prompt_harm_label,
        response_harm_gold=example.response_harm_label,
        refusal_harm_gold=example.extra.get("response_refusal_label"),
        raw_output=text,
        parsed_ok=verdict.parsed_ok,
        parse_error=verdict.error,
        pred_prompt_harm=verdict.prompt_harm,
        pred_response_harm=verdict.response_harm,
        pred_refusal_harm=refusal if task_of(example) == "refusal" else None,
        reasoning=verdict.reasoning,
        output_tokens=output_tokens,
        prompt_tokens=prompt_tokens,
        latency_s=latency_s,
        finish_reason=finish_reason,
        model_id=model_id,
        constrained=constrained,
        p_prompt_harm=cal.apply("prompt", raw.prompt, mode),
        p_response_harm=cal.apply("response", p_response_raw, mode),
        p_prompt_harm_raw=raw.prompt,
        p_response_harm_raw=p_response_raw,
        calibrated=calibration is not None and bool(calibration.temperatures),
        score_exact=raw.exact if verdict_scores is not None else None,
        closed_by_budget=closed_by_budget,
        pred_categories=named,
        categories_gold=json.dumps(list(example.categories), ensure_ascii=False),
    )


def to_prediction_rows(
    example: GuardExample,
    output: RequestOutput,
    mode: Mode,
    model_id: str,
    dataset: str | None = None,
    policy: PolicyLike = None,
    first_sample_idx: int = 0,
    constrained: bool = False,
    calibration: Calibration | None = None,
    categories: bool = False,
) -> list[PredictionRow]:
    return [
        prediction_row(
            example, gen.text, mode=mode, sample_idx=first_sample_idx + idx, model_id=model_id,
            output_tokens=gen.output_tokens, prompt_tokens=output.prompt_tokens, latency_s=output.latency_s,
            finish_reason=gen.finish_reason, dataset=dataset, policy=policy, constrained=constrained,
            verdict_scores=gen.verdict_scores, closed_by_budget=gen.closed_by_budget, calibration=calibration,
            categories=categories,
        )
        for idx, gen in enumerate(output.generations)
    ]


def predict_examples(
    engine: Engine,
    examples: Sequence[GuardExample],
    mode: Mode,
    sampling: SamplingConfig,
    policy: PolicyLike = None,
    dataset: str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    constrained: bool = True,
    calibration: Calibration | None = None,
    categories: bool = False,
) -> list[PredictionRow]:
    """Run the guard over examples in batches (the in-process path; Ray Data uses the same steps).
    `constrained`: verdict-safe decoding (reasonguard.decoding) where the engine supports it;
    `categories`: ask for the violated categories line too."""
    rows: list[PredictionRow] = []
    batches = list(_chunks(examples, batch_size))
    bar = _progress(len(examples), f"predict [{mode}]") if progress else None
    for batch in batches:
        start = time.perf_counter()
        verdicts = [verdict_spec(ex, mode, categories) for ex in batch] if constrained else None
        outputs = engine.generate([to_request(ex, mode, policy, categories) for ex in batch], sampling, verdicts)
        per_item = (time.perf_counter() - start) / max(1, len(batch))
        for ex, out in zip(batch, outputs, strict=True):
            if not out.latency_s:
                out = RequestOutput(out.generations, out.prompt_tokens, per_item)
            rows.extend(to_prediction_rows(ex, out, mode, engine.model_id, dataset, policy,
                                           constrained=constrained, calibration=calibration, categories=categories))
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return rows


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item")


# --- Row-level steps for data pipelines (Ray Data rows are plain dicts) -------------------


def expand_items(
    examples: Sequence[GuardExample], dataset: str, modes: Sequence[Mode], n_samples: int, skip: set[tuple] = frozenset()
) -> list[dict]:
    """One work row per (item, mode, sample); `skip` holds (dataset, item_id, mode, sample_idx) already done."""
    import json

    rows = []
    for ex in examples:
        item_json = json.dumps(ex.to_row(), ensure_ascii=False)
        for mode in modes:
            for k in range(n_samples):
                if (dataset, ex.id, mode, k) in skip:
                    continue
                rows.append({"dataset": dataset, "item_id": ex.id, "mode": mode, "sample_idx": k, "item_json": item_json})
    return rows


def _example_of(row: dict) -> GuardExample:
    import json

    return GuardExample.from_row(json.loads(row["item_json"]))


def request_row(row: dict, sampling_by_mode: dict[str, SamplingConfig], policy=None, constrained: bool = False,
                vocab_source: str | None = None, categories: bool = False) -> dict:
    """Preprocess: work row -> chat messages + vLLM sampling params (sample k gets seed + k).
    `constrained` adds the verdict spec (vLLM `extra_args`) and asks for the log-probabilities of
    the decision tokens P(harmful) is read from (`vocab_source`: the checkpoint's tokenizer)."""
    sampling = sampling_by_mode[row["mode"]]
    params = sampling.to_params(seed_offset=int(row["sample_idx"]))
    example = _example_of(row)
    if constrained:
        params.update(verdict_sampling_fields(_vocabulary(vocab_source), verdict_spec(example, row["mode"], categories)))
    return {**row, "messages": to_request(example, row["mode"], policy, categories), "sampling_params": params}


def verdict_columns(row: dict, vocab_source: str | None, constrained: bool, max_tokens: int,
                    example: GuardExample | None = None, categories: bool = False) -> dict:
    """{'verdict_scores', 'closed_by_budget'} of a generated row: computed by the engine actor
    (column `verdict_json`), or here from ray.data.llm's `generated_tokens` and `logprobs`."""
    import json

    if not constrained:
        return {}
    if row.get("verdict_json"):
        data = json.loads(row["verdict_json"])
        return {"verdict_scores": VerdictScores(data.get("prompt"), data.get("response"), bool(data.get("exact"))),
                "closed_by_budget": bool(data.get("closed_by_budget"))}
    tokens = row.get("generated_tokens")
    if tokens is None or vocab_source is None:
        return {}
    steps = [{int(k): float(v["logprob"] if isinstance(v, dict) else v) for k, v in (pos or {}).items()}
             for pos in (row.get("logprobs") or [])]
    example = example or _example_of(row)
    spec = verdict_spec(example, row["mode"], categories)
    return verdict_outcome(_vocabulary(vocab_source), spec, max_tokens, list(tokens), steps or None)


def _vocabulary(source: str):
    from reasonguard.engines.vocab import cached_vocabulary

    return cached_vocabulary(source)


def result_row(row: dict, model_id: str, policy=None, constrained: bool = False, vocab_source: str | None = None,
               sampling_by_mode: dict[str, SamplingConfig] | None = None, calibration: Calibration | None = None,
               categories: bool = False) -> dict:
    """Postprocess: a generated row (ray.data.llm column names) -> a PredictionRow dict."""
    error = row.get("__inference_error__") or None
    text = "" if error else (row.get("generated_text") or "")
    max_tokens = sampling_by_mode[row["mode"]].max_tokens if sampling_by_mode else 0
    example = _example_of(row)  # parsed once per row
    extra = {} if error else verdict_columns(row, vocab_source, constrained, max_tokens, example, categories)
    out = prediction_row(
        example,
        text,
        mode=row["mode"],
        sample_idx=int(row["sample_idx"]),
        model_id=model_id,
        output_tokens=int(row.get("num_generated_tokens") or 0),
        prompt_tokens=int(row.get("num_input_tokens") or 0),
        latency_s=float(row.get("time_taken_llm") or 0.0),
        finish_reason="error" if error else row.get("finish_reason"),
        dataset=row["dataset"],
        policy=policy,
        constrained=constrained,
        calibration=calibration,
        categories=categories,
        **extra,
    ).to_dict()
    if error:
        out["parse_error"] = f"inference error: {str(error)[:500]}"
    return out
