"""Reasoning budgets as pure functions: rewrite prompt, rewrite checks, sentence-boundary truncation.

An LLM rewrites each kept trace into at most N sentences (the paper's budgets: one sentence,
at most three). A rewrite is accepted only when it is non-empty, within the budget, does not
contradict the trace's verdict where it states one, and does not start quoting the label; else
the trace is cut at a sentence boundary. Traces already within the budget stay as they are.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from reasonguard.distill import find_leakage
from reasonguard.engines.base import SamplingConfig
from reasonguard.text import count_sentences, length_stats, split_sentences, word_count
from reasonguard.verdict import format_verdict_lines

__all__ = [
    "METHODS", "REWRITE_FAILURES", "ShortenResult", "check_rewrite", "clean_rewrite", "count_sentences",
    "render_rewrite_prompt", "shorten_trace", "split_sentences", "stated_verdict", "truncate_sentences",
]

METHODS = ("original", "rewrite", "truncate")  # original: already within the budget, no LLM call
REWRITE_FAILURES = ("inference_error", "empty", "too_many_sentences", "verdict_changed", "label_leakage")
NO_REWRITER = "no_rewriter"  # rewrite_error of a truncation made because no rewriter is configured (not a failure)

REWRITE_INSTRUCTION = (
    "Below is the reasoning of a safety classifier about a conversation between a user and an AI assistant, "
    "followed by its final verdict.\n\n"
    "Reasoning:\n{reasoning}\n\n"
    "Verdict:\n{verdict}\n\n"
    "Rewrite the reasoning {budget_words}. Keep the decisive evidence and stay consistent with the verdict; "
    "do not change it. Do not mention labels, annotators or that a verdict was given to you. "
    "Output only the rewritten reasoning: no preamble, no verdict lines."
)

_VERDICT_LINE = re.compile(r"^[ \t>*\-\"'`]*(prompt|response)[ \t]+harm[ \t]*[:=][ \t]*\**[ \t]*[<\"'`]?(harmful|unharmful|none)\b.*$",
                           re.I | re.M)
_HARM_WORDS = r"(not\s+harmful|unharmful|harmless|harmful|safe|benign|unsafe|acceptable|dangerous)"
_STATEMENTS = {
    "prompt": re.compile(
        r"\b(?:user(?:'s)?\s+)?(?:prompt|request|query|question|message)\s+(?:itself\s+)?(?:is|was|seems|appears)\s+"
        r"(?:clearly\s+|therefore\s+|thus\s+)?(?:to\s+be\s+)?" + _HARM_WORDS, re.I),
    "response": re.compile(
        r"\b(?:(?:assistant|ai|model)(?:'s)?\s+)?(?:response|answer|reply|completion)\s+(?:itself\s+)?(?:is|was|seems|appears)\s+"
        r"(?:clearly\s+|therefore\s+|thus\s+)?(?:to\s+be\s+)?" + _HARM_WORDS, re.I),
}
_PREAMBLE = re.compile(r"^\s*(?:here\s+is|here's|rewritten(?:\s+reasoning)?|shortened(?:\s+reasoning)?|reasoning|summary)\b[^\n]*:\s*",
                       re.I)
_UNHARMFUL = {"not harmful", "unharmful", "harmless", "safe", "benign", "acceptable"}


def render_rewrite_prompt(reasoning: str, prompt_harm: str, response_harm: str | None, budget: int) -> str:
    budget_words = "as one sentence" if budget == 1 else f"in at most {budget} sentences"
    return REWRITE_INSTRUCTION.format(
        reasoning=reasoning.strip(), verdict=format_verdict_lines(prompt_harm, response_harm), budget_words=budget_words
    )


def rewrite_messages(reasoning: str, prompt_harm: str, response_harm: str | None, budget: int) -> list[dict]:
    return [{"role": "user", "content": render_rewrite_prompt(reasoning, prompt_harm, response_harm, budget)}]


def clean_rewrite(text: str | None) -> str:
    """The rewrite proper: a model's own think block, a preamble line, verdict lines and wrapping quotes removed."""
    text = text or ""
    if re.search(r"</think>", text, re.I):
        text = re.split(r"</think>", text, flags=re.I)[-1]
    elif re.search(r"<think>", text, re.I):
        return ""  # only an unfinished think block: no rewrite
    text = _VERDICT_LINE.sub("", text)
    text = _PREAMBLE.sub("", text, count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def _harm_value(word: str) -> str:
    return "unharmful" if re.sub(r"\s+", " ", word.lower()) in _UNHARMFUL else "harmful"


def stated_verdict(text: str | None) -> dict[str, str | None]:
    """What a text concludes about the prompt and the response, where it says so unambiguously.

    Verdict lines ("Prompt harm: harmful") win; else statements such as "the request is harmful" or
    "the response appears safe". A target with conflicting statements, or none, maps to None.
    """
    text = text or ""
    out: dict[str, str | None] = {"prompt": None, "response": None}
    for target in out:
        values = {m.group(2).lower() for m in _VERDICT_LINE.finditer(text) if m.group(1).lower() == target} - {"none"}
        if not values:
            values = {_harm_value(m.group(1)) for m in _STATEMENTS[target].finditer(text)}
        out[target] = next(iter(values)) if len(values) == 1 else None
    return out


def check_rewrite(rewrite: str, budget: int, prompt_harm: str, response_harm: str | None, original: str = "") -> str | None:
    """Why a (cleaned) rewrite is rejected, or None when it is accepted."""
    if not rewrite.strip():
        return "empty"
    if count_sentences(rewrite) > budget:
        return "too_many_sentences"
    stated = stated_verdict(rewrite)
    if stated["prompt"] is not None and stated["prompt"] != prompt_harm:
        return "verdict_changed"
    if stated["response"] is not None and stated["response"] != (response_harm or "unharmful"):
        return "verdict_changed"
    if set(find_leakage(rewrite)) - set(find_leakage(original)):
        return "label_leakage"
    return None


_RESPONSE_SENTENCE = re.compile(r"\b(?:assistant|response|answer|reply|completion)\b", re.I)


def _pick(sentences: Sequence[str], k: int) -> list[str]:
    """k sentences of one part: its first k-1 and its last (the part's conclusion)."""
    if k >= len(sentences):
        return list(sentences)
    return list(sentences[: k - 1]) + [sentences[-1]] if k > 1 else [sentences[0]]


def truncate_sentences(text: str, budget: int) -> str:
    """At most `budget` whole sentences of `text` (the fallback when no acceptable rewrite exists).

    A trace that reasons about the prompt and then the response (the first sentence naming the
    assistant or its response starts the second part) keeps sentences of both parts when the budget
    allows two or more: the prompt part's first ones, then the response part's first ones and its
    conclusion; otherwise the first `budget` sentences.
    """
    sentences = split_sentences(text)
    if len(sentences) <= budget:
        return " ".join(sentences)
    split = next((i for i, s in enumerate(sentences) if _RESPONSE_SENTENCE.search(s)), 0)
    if budget < 2 or split == 0:
        return " ".join(sentences[:budget])
    prompt_part, response_part = sentences[:split], sentences[split:]
    n_response = min(len(response_part), budget - max(1, budget // 2))
    n_prompt = min(len(prompt_part), budget - n_response)
    n_response = min(len(response_part), budget - n_prompt)
    return " ".join(_pick(prompt_part, n_prompt) + _pick(response_part, n_response))


@dataclass(frozen=True)
class ShortenResult:
    text: str
    method: str  # one of METHODS
    rewrite_error: str | None = None  # why the rewrite was rejected (method 'truncate')


def shorten_trace(original: str, raw_rewrite: str | None, budget: int, prompt_harm: str, response_harm: str | None,
                  error: str | None = None) -> ShortenResult:
    """Pick the budgeted text: the original when within budget, the checked rewrite, else a truncation."""
    if count_sentences(original) <= budget:
        return ShortenResult(original.strip(), "original")
    if error:
        return ShortenResult(truncate_sentences(original, budget), "truncate", error if error == NO_REWRITER else "inference_error")
    rewrite = clean_rewrite(raw_rewrite)
    problem = check_rewrite(rewrite, budget, prompt_harm, response_harm, original)
    if problem:
        return ShortenResult(truncate_sentences(original, budget), "truncate", problem)
    return ShortenResult(rewrite, "rewrite")


# --- Row-level steps -----------------------------------------------------------------------

KEY_COLUMNS = ("dataset", "id", "budget")


def needs_rewrite(reasoning: str, budget: int) -> bool:
    return count_sentences(reasoning) > budget


def budget_work_rows(traces: Sequence[dict], budgets: Sequence[int], skip: set[tuple] = frozenset()) -> tuple[list[dict], list[dict]]:
    """(rows for the rewriter, rows already within budget), one per (trace, budget) not in `skip`."""
    to_rewrite, within = [], []
    for trace in traces:
        for budget in budgets:
            if (trace["dataset"], trace["id"], budget) in skip:
                continue
            row = {"dataset": trace["dataset"], "id": trace["id"], "budget": int(budget),
                   "trace_json": json.dumps(trace, ensure_ascii=False, default=str)}
            (to_rewrite if needs_rewrite(trace["reasoning"], budget) else within).append(row)
    return to_rewrite, within


def rewrite_request_row(row: dict, sampling: SamplingConfig) -> dict:
    trace = json.loads(row["trace_json"])
    msgs = rewrite_messages(trace["reasoning"], trace["prompt_harm_label"], trace["response_harm_label"], int(row["budget"]))
    return {**row, "messages": msgs, "sampling_params": sampling.to_params()}


def budget_record(trace: dict, budget: int, raw_rewrite: str | None, *, rewriter_model: str, error: str | None = None,
                  output_tokens: int = 0, count_tokens: Callable[[str], int] | None = None) -> dict:
    """The trace with `reasoning` replaced by its budgeted version (`reasoning_full` keeps the original)."""
    full = trace.get("reasoning_full") or trace["reasoning"]
    result = shorten_trace(full, raw_rewrite, budget, trace["prompt_harm_label"], trace["response_harm_label"], error)
    return {
        **trace,
        "reasoning": result.text,
        "reasoning_full": full,
        "budget": int(budget),
        "method": result.method,
        "rewrite_error": result.rewrite_error,
        "raw_rewrite_output": raw_rewrite or "",
        "rewriter_model": rewriter_model,
        "rewrite_output_tokens": int(output_tokens or 0),
        "reasoning_words": word_count(result.text),
        "reasoning_sentences": count_sentences(result.text),
        "reasoning_tokens": count_tokens(result.text) if count_tokens else None,
        "reasoning_full_tokens": count_tokens(full) if count_tokens else trace.get("reasoning_tokens"),
    }


def rewrite_result_row(row: dict, rewriter_model: str, count_tokens: Callable[[str], int] | None = None) -> dict:
    """Postprocess: a generated row (ray.data.llm column names) -> a budget record."""
    error = row.get("__inference_error__") or None
    return budget_record(
        json.loads(row["trace_json"]), int(row["budget"]), None if error else row.get("generated_text"),
        rewriter_model=rewriter_model, error=error, output_tokens=row.get("num_generated_tokens") or 0,
        count_tokens=count_tokens,
    )


def latest_budget_records(records: Iterable[dict]) -> list[dict]:
    """One record per (dataset, id, budget): the last written one, a finished rewrite winning over an engine error."""
    best: dict[tuple, dict] = {}
    for rec in records:
        key = (rec["dataset"], rec["id"], rec["budget"])
        old = best.get(key)
        if old is None or rec.get("rewrite_error") != "inference_error" or old.get("rewrite_error") == "inference_error":
            best[key] = rec
    return list(best.values())


def budget_stats(records: Sequence[dict], budgets: Sequence[int]) -> dict:
    """Per budget: method counts, rewrite failures, token/word/sentence length stats; plus the full traces'."""
    out: dict = {"budgets": {}}
    fulls: dict[tuple, dict] = {}
    for budget in budgets:
        rows = [r for r in records if r["budget"] == budget]
        for r in rows:
            fulls.setdefault((r["dataset"], r["id"]), r)
        methods = Counter(r["method"] for r in rows)
        failures = Counter(r["rewrite_error"] for r in rows if r.get("rewrite_error"))
        out["budgets"][str(budget)] = {
            "n": len(rows),
            "methods": {m: methods.get(m, 0) for m in METHODS},
            "rewrite_failures": {f: failures.get(f, 0) for f in REWRITE_FAILURES},
            "cut_without_rewriter": failures.get(NO_REWRITER, 0),
            "tokens": length_stats(r["reasoning_tokens"] for r in rows),
            "words": length_stats(r["reasoning_words"] for r in rows),
            "sentences": length_stats(r["reasoning_sentences"] for r in rows),
        }
    full = list(fulls.values())
    out["full"] = {
        "n": len(full),
        "tokens": length_stats(r.get("reasoning_full_tokens") for r in full),
        "words": length_stats(word_count(r["reasoning_full"]) for r in full),
        "sentences": length_stats(count_sentences(r["reasoning_full"]) for r in full),
    }
    return out


def wide_rows(records: Sequence[dict], budgets: Sequence[int]) -> list[dict]:
    """One row per trace: `reasoning` (full) plus `reasoning_<N>` and `method_<N>` per budget (SFT builder input)."""
    by_key: dict[tuple, dict] = {}
    for r in sorted(records, key=lambda r: (r["dataset"], r["id"], r["budget"])):
        key = (r["dataset"], r["id"])
        if key not in by_key:
            base = {k: v for k, v in r.items() if k not in _BUDGET_ONLY}
            by_key[key] = {**base, "reasoning": r["reasoning_full"], "reasoning_tokens": r.get("reasoning_full_tokens")}
        by_key[key][f"reasoning_{r['budget']}"] = r["reasoning"]
        by_key[key][f"method_{r['budget']}"] = r["method"]
    rows = list(by_key.values())
    for row in rows:  # every trace has every budget column, even when a budget is missing for it
        for budget in budgets:
            row.setdefault(f"reasoning_{budget}", None)
            row.setdefault(f"method_{budget}", None)
    return rows


_BUDGET_ONLY = frozenset({
    "reasoning", "reasoning_full", "budget", "method", "rewrite_error", "raw_rewrite_output", "rewriter_model",
    "rewrite_output_tokens", "reasoning_words", "reasoning_sentences", "reasoning_tokens",
})


def traces_of(records: Iterable[dict]) -> list[dict]:
    """Distill trace rows that can be shortened (kept, with reasoning)."""
    return [r for r in records if r.get("kept", True) and (r.get("reasoning") or "").strip()]
