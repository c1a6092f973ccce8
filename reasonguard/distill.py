"""Teacher distillation as pure functions: requests, parsing, filter rules, statistics.

The teacher sees the gold label (`render_teacher_prompt`) and explains it; a trace is kept only
when its own verdict equals the gold label and it passes rule-based checks for degenerate
repetition, label leakage (quoting the label it was given) and length. Every dropped trace
carries a named reason, so `stats.json` says where the data went. The same row-level steps run
in-process (`distill_examples`, for tests and notebooks) and inside Ray Data (`pipelines/distill.py`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from reasonguard.engines.base import Engine, SamplingConfig
from reasonguard.predict import policy_name
from reasonguard.prompts import render_teacher_prompt
from reasonguard.schema import GuardExample
from reasonguard.targets import guard_input_of, policy_of
from reasonguard.text import length_stats, split_sentences, word_count, words
from reasonguard.verdict import GuardVerdict, parse_verdict

# Drop reasons, in the order they are checked; a trace's `drop_reason` is the first that fails.
DROP_REASONS: tuple[str, ...] = (
    "inference_error",   # the engine failed on this item (retried on the next run)
    "empty_output",      # nothing generated
    "unparsable",        # no usable verdict lines (or an unclosed think block)
    "empty_reasoning",   # a verdict but no reasoning before it
    "prompt_mismatch",   # teacher's prompt verdict != gold
    "response_mismatch", # teacher's response verdict != gold (or a response verdict for a prompt-only item)
    "label_leakage",     # the trace quotes the label it was given
    "repetition",        # degenerate loops: repeated words, sentences or n-grams
    "too_short",         # below the word/token lower bound
    "too_long",          # above the word/token upper bound
)
KEY_COLUMNS = ("dataset", "id")
_THINK_TAG = re.compile(r"</?think>", re.I)

_LEAK_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.I | re.M)
    for p in (
        r"\b(?:given|provided|gold|expected|assigned|annotated|official|supplied|reference|target|ground[- ]?truth)"
        r"\s+(?:labels?|classifications?|verdicts?|annotations?)\b",
        r"\b(?:gold|expected|ground[- ]?truth|reference)\s+answers?\b",
        r"\bcorrect\s+(?:labels?|classifications?|verdicts?)\b",
        r"\b(?:the|this|that)\s+labels?\s+(?:says?|said|is|was|states?|indicates?|shows?|reads?|marks?|tells?)\b",
        r"\b(?:expert\s+)?(?:annotators?|labell?ers?|human\s+raters?)\b",
        r"\b(?:labell?ed|annotated)\s+(?:as\s+)?[\"'`]?(?:harmful|unharmful|safe|unsafe|benign)\b",
        r"\b(?:i|we)\s+(?:was|were|am|are|have\s+been|had\s+been)\s+(?:told|given|informed|provided\s+with)\b",
        r"\b(?:the\s+)?answer\s+(?:was|is|has\s+been)\s+(?:given|provided|supplied|stated)\b",
        r"\b(?:stated|given|provided|specified)\s+(?:in|by)\s+the\s+(?:instructions?|task(?:\s+description)?|answer\s+key)\b",
        r"^[ \t>*\-\"'`]*(?:prompt|response)[ \t]+harm[ \t]*[:=]",  # the label's own verdict lines, quoted
    )
)


@dataclass(frozen=True)
class TeacherTrace:
    """A parsed teacher output: the reasoning (think block, or the text before the verdict lines) and verdict."""

    reasoning: str
    verdict: GuardVerdict
    has_think_block: bool


def parse_teacher_output(text: str | None, expect_response: bool | None = None) -> TeacherTrace:
    """Split a teacher output into reasoning and verdict. Teachers that write no think block get
    the text before their first verdict line as reasoning."""
    verdict = parse_verdict(text if isinstance(text, str) else "", expect_response=expect_response)
    if verdict.reasoning is not None:
        # A reasoning model's own think block followed by the one the prompt asked for leaves tags
        # inside the span: the last block is the instructed trace.
        blocks = [b.strip() for b in _THINK_TAG.split(verdict.reasoning) if b.strip()]
        return TeacherTrace(blocks[-1] if blocks else "", verdict, True)
    body = text if isinstance(text, str) else ""
    first = re.search(r"^[ \t>*\-\"'`]*(?:prompt|response)[ \t]+harm[ \t]*[:=]", body, re.I | re.M)
    reasoning = body[: first.start()] if first else body
    return TeacherTrace(reasoning.strip(), verdict, False)


def find_leakage(text: str | None) -> list[str]:
    """Snippets where a trace refers to the label it was given ('the label says', 'annotators', a verdict line)."""
    return [m.group(0).strip() for p in _LEAK_PATTERNS for m in p.finditer(text or "")]


def repetition_issue(
    text: str | None,
    *,
    ngram_size: int = 4,
    max_repeated_ngram_fraction: float = 0.4,
    min_words_for_ngram_check: int = 30,
    max_sentence_repeats: int = 2,
    max_word_run: int = 6,
) -> str | None:
    """Why `text` looks like a degenerate loop, or None: a word repeated `max_word_run` times in a row,
    a sentence (of 4+ words) occurring more than `max_sentence_repeats` times, or too many repeated n-grams."""
    toks = words(text)
    run, longest, longest_word = 1, 1, toks[0] if toks else ""
    for prev, cur in zip(toks, toks[1:]):
        run = run + 1 if cur == prev else 1
        if run > longest:
            longest, longest_word = run, cur
    if longest >= max_word_run:
        return f"word {longest_word!r} {longest} times in a row"
    counts = Counter(" ".join(words(s)) for s in split_sentences(text) if len(words(s)) >= 4)
    if counts:
        sentence, n = counts.most_common(1)[0]
        if n > max_sentence_repeats:
            return f"sentence repeated {n} times: {sentence[:60]!r}"
    if len(toks) >= max(min_words_for_ngram_check, ngram_size):
        grams = [tuple(toks[i : i + ngram_size]) for i in range(len(toks) - ngram_size + 1)]
        repeated = 1 - len(set(grams)) / len(grams)
        if repeated > max_repeated_ngram_fraction:
            return f"{repeated:.0%} of {ngram_size}-grams repeat"
    return None


def check_trace(example: GuardExample, trace: TeacherTrace, filters, raw_text: str | None = None,
                reasoning_tokens: int | None = None) -> tuple[list[str], dict[str, str]]:
    """All failed rules of one trace, in `DROP_REASONS` order, with a detail per reason.

    `filters` is a `reasonguard.config.distill.TraceFilters`. An empty list means keep.
    """
    failed: dict[str, str] = {}
    if not (raw_text or "").strip():
        return ["empty_output"], {"empty_output": "no text generated"}
    v = trace.verdict
    if not v.parsed_ok:
        failed["unparsable"] = v.error or "no verdict"
    if not trace.reasoning:
        failed["empty_reasoning"] = "no reasoning before the verdict"
    if v.parsed_ok and filters.require_prompt_match and v.prompt_harm != example.prompt_harm_label:
        failed["prompt_mismatch"] = f"teacher {v.prompt_harm}, gold {example.prompt_harm_label}"
    if v.parsed_ok and filters.require_response_match:
        if example.response_harm_label is not None and v.response_harm != example.response_harm_label:
            failed["response_mismatch"] = f"teacher {v.response_harm}, gold {example.response_harm_label}"
        elif example.response is None and v.response_harm is not None:
            failed["response_mismatch"] = f"teacher says response {v.response_harm} but there is no response"
    if trace.reasoning:
        leaks = find_leakage(trace.reasoning) if filters.check_leakage else []
        if leaks:
            failed["label_leakage"] = "; ".join(leaks[:3])
        issue = repetition_issue(
            trace.reasoning, ngram_size=filters.ngram_size, max_repeated_ngram_fraction=filters.max_repeated_ngram_fraction,
            min_words_for_ngram_check=filters.min_words_for_ngram_check, max_sentence_repeats=filters.max_sentence_repeats,
            max_word_run=filters.max_word_run,
        )
        if issue:
            failed["repetition"] = issue
        _length_checks(word_count(trace.reasoning), reasoning_tokens, filters, failed)
    return [r for r in DROP_REASONS if r in failed], failed


def _length_checks(n_words: int, n_tokens: int | None, filters, failed: dict[str, str]) -> None:
    if n_words < filters.min_reasoning_words:
        failed["too_short"] = f"{n_words} words < {filters.min_reasoning_words}"
    elif n_tokens is not None and filters.min_reasoning_tokens is not None and n_tokens < filters.min_reasoning_tokens:
        failed["too_short"] = f"{n_tokens} tokens < {filters.min_reasoning_tokens}"
    if filters.max_reasoning_words is not None and n_words > filters.max_reasoning_words:
        failed["too_long"] = f"{n_words} words > {filters.max_reasoning_words}"
    elif n_tokens is not None and filters.max_reasoning_tokens is not None and n_tokens > filters.max_reasoning_tokens:
        failed["too_long"] = f"{n_tokens} tokens > {filters.max_reasoning_tokens}"


# --- Row-level steps (Ray Data rows are plain dicts) ---------------------------------------


def split_labelled(examples: Iterable[GuardExample]) -> tuple[list[GuardExample], list[GuardExample]]:
    """(usable, unlabelled): the teacher needs a gold prompt label to explain."""
    usable, unlabelled = [], []
    for ex in examples:
        (usable if ex.prompt_harm_label is not None else unlabelled).append(ex)
    return usable, unlabelled


def work_rows(examples: Sequence[GuardExample], dataset: str, skip: set[tuple] = frozenset()) -> list[dict]:
    """One work row per labelled example not in `skip` ((dataset, id) keys already done)."""
    return [
        {"dataset": dataset, "id": ex.id, "item_json": json.dumps(ex.to_row(), ensure_ascii=False)}
        for ex in examples
        if (dataset, ex.id) not in skip
    ]


def example_of(row: dict) -> GuardExample:
    return GuardExample.from_row(json.loads(row["item_json"]))


def teacher_messages(example: GuardExample, policy=None, max_sentences: int = 8) -> list[dict]:
    """The teacher's single user turn: policy, conversation and the gold label to explain."""
    prompt = render_teacher_prompt(
        guard_input_of(example), example.prompt_harm_label, example.response_harm_label,
        policy_of(example, policy), max_sentences=max_sentences,
    )
    return [{"role": "user", "content": prompt}]


def teacher_request_row(row: dict, sampling: SamplingConfig, policy=None, max_sentences: int = 8,
                        constrained: bool = False) -> dict:
    """Preprocess: work row -> chat messages + sampling params. `constrained` holds the teacher to the
    trace format (the guard's think format: reasoning block, then both verdict lines) through the
    verdict logits processor every engine of ours carries; which verdict stays the teacher's choice."""
    example = example_of(row)
    params = sampling.to_params()
    if constrained:
        from reasonguard.decoding import VerdictSpec

        params["extra_args"] = VerdictSpec("think", has_response=example.response is not None).to_extra_args()
    return {**row, "messages": teacher_messages(example, policy, max_sentences), "sampling_params": params}


def trace_record(
    example: GuardExample,
    dataset: str,
    text: str,
    filters,
    *,
    teacher_model: str,
    policy=None,
    output_tokens: int = 0,
    prompt_tokens: int = 0,
    latency_s: float = 0.0,
    finish_reason: str | None = None,
    error: str | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> dict:
    """Parse and filter one teacher output into a flat record (every inference path ends here)."""
    trace = parse_teacher_output(text, expect_response=example.response is not None)
    reasoning_tokens = count_tokens(trace.reasoning) if count_tokens and trace.reasoning else (0 if count_tokens else None)
    if error:
        reasons, details = ["inference_error"], {"inference_error": str(error)[:500]}
    else:
        reasons, details = check_trace(example, trace, filters, text, reasoning_tokens)
    v = trace.verdict
    return {
        **example.to_row(),
        "dataset": dataset,
        "policy": policy_name(policy_of(example, policy)),
        "reasoning": trace.reasoning,
        "teacher_prompt_harm": v.prompt_harm,
        "teacher_response_harm": v.response_harm,
        "teacher_parsed_ok": v.parsed_ok,
        "teacher_parse_error": v.error,
        "raw_teacher_output": text or "",
        "teacher_model": teacher_model,
        "teacher_output_tokens": int(output_tokens or 0),
        "teacher_prompt_tokens": int(prompt_tokens or 0),
        "reasoning_words": word_count(trace.reasoning),
        "reasoning_tokens": reasoning_tokens,
        "reasoning_sentences": len(split_sentences(trace.reasoning)),
        "latency_s": float(latency_s or 0.0),
        "finish_reason": "error" if error else finish_reason,
        "kept": not reasons,
        "drop_reason": reasons[0] if reasons else None,
        "drop_reasons": reasons,
        "drop_detail": json.dumps(details, ensure_ascii=False, sort_keys=True),
    }


def teacher_result_row(row: dict, filters, teacher_model: str, policy=None,
                       count_tokens: Callable[[str], int] | None = None) -> dict:
    """Postprocess: a generated row (ray.data.llm column names) -> a trace record."""
    error = row.get("__inference_error__") or None
    return trace_record(
        example_of(row), row["dataset"], "" if error else (row.get("generated_text") or ""), filters,
        teacher_model=teacher_model, policy=policy, output_tokens=row.get("num_generated_tokens") or 0,
        prompt_tokens=row.get("num_input_tokens") or 0, latency_s=max(0.0, float(row.get("time_taken_llm") or 0.0)),
        finish_reason=row.get("finish_reason"), error=error, count_tokens=count_tokens,
    )


def done_key_filter(row: dict) -> bool:
    """Rows that count as done on resume: everything but inference errors (those are retried)."""
    return row.get("drop_reason") != "inference_error"


def latest_records(records: Iterable[dict]) -> list[dict]:
    """One record per (dataset, id): the last written one, a finished one winning over an inference error."""
    best: dict[tuple, dict] = {}
    for rec in records:
        key = (rec["dataset"], rec["id"])
        old = best.get(key)
        if old is None or done_key_filter(rec) or not done_key_filter(old):
            best[key] = rec
    return list(best.values())


def distill_stats(records: Sequence[dict], unlabelled: int = 0, teacher_model: str | None = None) -> dict:
    """Totals, kept, dropped by first reason, every failed check, per dataset, and reasoning lengths of kept traces."""
    kept = [r for r in records if r["kept"]]
    dropped = Counter(r["drop_reason"] for r in records if not r["kept"])
    checks = Counter(reason for r in records for reason in (r.get("drop_reasons") or []))
    by_dataset: dict[str, dict] = {}
    for r in records:
        d = by_dataset.setdefault(r["dataset"], {"total": 0, "kept": 0})
        d["total"] += 1
        d["kept"] += int(bool(r["kept"]))
    return {
        "teacher_model": teacher_model,
        "total": len(records),
        "kept": len(kept),
        "dropped_total": len(records) - len(kept),
        "kept_fraction": round(len(kept) / len(records), 4) if records else 0.0,
        "dropped": {reason: dropped.get(reason, 0) for reason in DROP_REASONS},
        "failed_checks": {reason: checks.get(reason, 0) for reason in DROP_REASONS},
        "skipped_unlabelled": unlabelled,
        "by_dataset": by_dataset,
        "kept_reasoning_words": length_stats(r["reasoning_words"] for r in kept),
        "kept_reasoning_tokens": length_stats(r["reasoning_tokens"] for r in kept),
    }


def distill_examples(
    engine: Engine,
    examples: Sequence[GuardExample],
    sampling: SamplingConfig,
    filters,
    *,
    dataset: str | None = None,
    policy=None,
    max_sentences: int = 8,
    batch_size: int = 64,
    count_tokens: Callable[[str], int] | None = None,
) -> list[dict]:
    """In-process distillation (tests, notebooks): the same rows the Ray pipeline writes."""
    usable, _ = split_labelled(examples)
    records = []
    for i in range(0, len(usable), batch_size):
        batch = usable[i : i + batch_size]
        try:
            outputs = engine.generate([teacher_messages(ex, policy, max_sentences) for ex in batch], sampling)
            errors: list[str | None] = [None] * len(batch)
        except Exception as exc:  # one failed batch is recorded, not fatal
            outputs, errors = [None] * len(batch), [f"{type(exc).__name__}: {exc}"] * len(batch)
        for ex, out, err in zip(batch, outputs, errors, strict=True):
            gen = out.generations[0] if out is not None else None
            records.append(trace_record(
                ex, dataset or ex.source, gen.text if gen else "", filters, teacher_model=engine.model_id, policy=policy,
                output_tokens=gen.output_tokens if gen else 0, prompt_tokens=out.prompt_tokens if out else 0,
                latency_s=out.latency_s if out else 0.0, finish_reason=gen.finish_reason if gen else None,
                error=err, count_tokens=count_tokens,
            ))
    return records
