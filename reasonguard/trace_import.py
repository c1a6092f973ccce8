"""Recorded teacher outputs -> the trace table distillation writes (same parsing, filters, stats).

Users often have teacher outputs already: the Nemotron Content Safety Reasoning dataset ships
three teachers' traces (`efficient_reasoning_*`, with `prediction_gt_mismatch_*` flags), the
GuardReasoner repository ships its guards' test-set outputs, and an earlier distillation run
leaves a trace table. Each becomes `Candidate`s (one per item and teacher): the teacher's
reasoning in plain prose about prompt and response harm, and the verdict the teacher reached.
A candidate is rendered as a teacher answer (`<think>reasoning</think>` + verdict lines) and goes
through `reasonguard.distill.trace_record`, so the filters (label agreement with gold,
well-formedness, label leakage, repetition, length) and `stats.json` are distillation's own.
Several teachers' traces for one item are kept or chosen by a documented rule (`choose_traces`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence

from reasonguard.distill import distill_stats, trace_record
from reasonguard.schema import GuardExample
from reasonguard.verdict import format_output

ChooseRule = Literal["all", "first_passing", "shortest_passing"]
NOT_CHOSEN = "not_chosen"  # a passing trace left out by the multi-teacher rule


@dataclass(frozen=True)
class Candidate:
    """One teacher's recorded answer for one item."""

    example: GuardExample  # the item with its gold labels
    item_key: str  # the item across teachers (dataset-wide)
    teacher: str
    reasoning: str  # plain prose about prompt (and response) harm
    prompt_harm: str | None  # the teacher's verdicts
    response_harm: str | None
    well_formed: bool = True
    raw: str = ""


def teacher_text(c: Candidate) -> str:
    """The candidate as a teacher answer distillation parses: think block, then the verdict lines.
    A malformed recording (no verdict) keeps only its raw text, so it is dropped as 'unparsable'."""
    if not c.well_formed or c.prompt_harm is None:
        return c.raw or c.reasoning
    return format_output(c.prompt_harm, c.response_harm if c.example.response is not None else None, c.reasoning)


# --- GuardReasoner ---------------------------------------------------------------------------

_TASK = re.compile(r"^#[ \t]*Task[ \t]*(\d+)[ \t]*$", re.M)
_HEADING = re.compile(r"^##[ \t]*(?:Reasoning[ \t]*Step[ \t]*\d+|Conclusion|Step[ \t]*\d+)[ \t]*:?[ \t]*(.*)$", re.I)
# A heading whose text is an instruction to itself ("Analyze the request.") is a plan, not a finding.
_ANSWER_LINE = re.compile(r"^(?:request|completion|response|answers?)[ \t]*:[ \t]*(?:harmful|unharmful|refusal|compliance|none)\.?$", re.I)
_PLAN_VERBS = {"analyze", "analyse", "determine", "evaluate", "examine", "conclude", "identify", "assess", "consider",
               "review", "check", "classify", "understand", "look", "decide", "establish", "investigate"}


def guardreasoner_reasoning(text: str, has_response: bool) -> str:
    """GuardReasoner's `# Task n / ## Reasoning Step n` blocks -> plain reasoning about harm.

    Task 1 (is the request harmful) is kept; Task 2 (refusal) is dropped, since the guard format
    has no refusal line; Task 3 (is the response harmful) is kept only where there is a response
    (for prompt-only items it reasons about a "None" response). Step headings go; a heading that
    carries its own text ("## Reasoning Step 1: Analyze the request.") is a plan, not a finding,
    and goes; one that carries a finding ("## Reasoning Step 2: The user asks for ...") keeps its text.
    Text without task markers is kept as it is (minus headings)."""
    sections = _TASK.split(text or "")
    if len(sections) < 3:
        keep = [sections[0] if sections else ""]
    else:
        keep = [body for number, body in zip(sections[1::2], sections[2::2]) if number == "1" or (number == "3" and has_response)]
    lines = []
    for body in keep:
        for line in body.splitlines():
            line = line.strip()
            heading = _HEADING.match(line)
            if heading:
                line = heading.group(1).strip()
                first = line.split(" ", 1)[0].lower().strip(",.:")
                if first in _PLAN_VERBS:
                    continue
            if not line or line.startswith("#") or _ANSWER_LINE.match(line):
                continue  # headings, and the answer lines GuardReasoner repeats inside its reasoning
            lines.append(line)
    return " ".join(lines).strip()


def _harm(value) -> str | None:
    value = (value or "").strip().lower() if isinstance(value, str) else None
    return value if value in ("harmful", "unharmful") else None


def guardreasoner_candidates(rows: Iterable[dict], teachers: Sequence[str] | None = None) -> tuple[list[Candidate], Counter]:
    """Candidates from the GuardReasoner trace file (fields: id, benchmark, teacher, prompt, response,
    gold_task, gold_label, pred_*, reasoning, trace_well_formed). Returns (candidates, skipped by reason).

    Gold: prompt-level items carry the prompt label; response-level items carry the response label
    only, so their prompt label is the teachers' majority verdict (ties: harmful), stated in the
    item's `extra['prompt_label_source']`. Refusal items (XSTest refusal) are skipped: refusal is not a
    harm label, and the same items come as response-harm items."""
    rows = [r for r in rows if teachers is None or r["teacher"] in teachers]
    skipped: Counter = Counter()
    votes: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        if _harm(r.get("pred_prompt_harm")):
            votes[_item_key(r)][_harm(r.get("pred_prompt_harm"))] += 1
    out = []
    for r in rows:
        task = r.get("gold_task")
        if task == "response_refusal":
            skipped["refusal_task"] += 1
            continue
        if task not in ("prompt_harm", "response_harm"):
            skipped["unknown_task"] += 1
            continue
        gold = _harm(r.get("gold_label"))
        if gold is None:
            skipped["no_gold_label"] += 1
            continue
        has_response = r.get("response") is not None
        key = _item_key(r)
        if task == "prompt_harm":
            prompt_label, response_label, source = gold, None, "gold"
        else:
            tally = votes.get(key) or Counter()
            prompt_label = "harmful" if tally["harmful"] >= tally["unharmful"] and tally else ("unharmful" if tally else None)
            response_label, source = gold, "teacher_majority"
            if prompt_label is None:
                skipped["no_prompt_label"] += 1
                continue
        example = GuardExample(
            id=key, source=str(r.get("benchmark") or "guardreasoner"), prompt=r["prompt"],
            response=r.get("response") if has_response else None, prompt_harm_label=prompt_label,
            response_harm_label=response_label, split="train",
            extra={"prompt_label_source": source, "gold_task": task},
        )
        out.append(Candidate(
            example=example, item_key=key, teacher=str(r["teacher"]),
            reasoning=guardreasoner_reasoning(r.get("reasoning") or "", has_response),
            prompt_harm=_harm(r.get("pred_prompt_harm")), response_harm=_harm(r.get("pred_response_harm")),
            well_formed=bool(r.get("trace_well_formed", True)), raw=r.get("reasoning") or "",
        ))
    return out, skipped


def _item_key(row: dict) -> str:
    """GuardReasoner ids are gr-<size>-<benchmark>-<index>: the item is benchmark + index."""
    parts = str(row["id"]).split("-", 2)
    return parts[2] if len(parts) == 3 else str(row["id"])


# --- Nemotron Content Safety Reasoning ----------------------------------------------------------


def nemotron_candidates(examples: Iterable[GuardExample], teachers: Sequence[str] | None = None) -> tuple[list[Candidate], Counter]:
    """Candidates from Nemotron Content Safety Reasoning items (`reasonguard.datasets.hub` puts each
    teacher's `efficient_reasoning` trace and `prediction_gt_mismatch` flag in `extra`). A teacher's
    verdict is the gold label unless its mismatch flag is set, then the opposite label (so the
    trace is dropped as a mismatch, as distillation drops one)."""
    skipped: Counter = Counter()
    out = []
    flip = {"harmful": "unharmful", "unharmful": "harmful"}
    for ex in examples:
        traces = (ex.extra or {}).get("efficient_reasoning") or {}
        mismatch = (ex.extra or {}).get("prediction_gt_mismatch") or {}
        if ex.prompt_harm_label is None:
            skipped["no_gold_label"] += 1
            continue
        if not traces:
            skipped["no_trace"] += 1
            continue
        for teacher, text in traces.items():
            if teachers is not None and teacher not in teachers:
                continue
            wrong = bool(mismatch.get(teacher))
            prompt = flip[ex.prompt_harm_label] if wrong else ex.prompt_harm_label
            response = ex.response_harm_label
            out.append(Candidate(
                example=ex, item_key=ex.id, teacher=teacher, reasoning=_strip_think(str(text)),
                prompt_harm=prompt, response_harm=response, well_formed=bool(str(text).strip()), raw=str(text),
            ))
    return out, skipped


def _strip_think(text: str) -> str:
    return re.sub(r"</?think>", "", text, flags=re.I).strip()


# --- An earlier trace table (distill output) -------------------------------------------------------


def table_candidates(rows: Iterable[dict]) -> tuple[list[Candidate], Counter]:
    """Candidates from a trace table of an earlier distillation run (its raw teacher outputs are
    parsed and filtered again, under this import's filters)."""
    out = []
    for r in rows:
        ex = GuardExample.from_row({k: r[k] for k in GuardExample.__dataclass_fields__ if k in r})
        out.append(Candidate(example=ex, item_key=f"{r.get('dataset', ex.source)}:{ex.id}", teacher=str(r.get("teacher_model") or "teacher"),
                             reasoning=r.get("reasoning") or "", prompt_harm=r.get("teacher_prompt_harm"),
                             response_harm=r.get("teacher_response_harm"), well_formed=bool(r.get("teacher_parsed_ok", True)),
                             raw=r.get("raw_teacher_output") or ""))
    return out, Counter()


# --- Filters and the multi-teacher rule ----------------------------------------------------------


def candidate_records(candidates: Sequence[Candidate], dataset: str, filters, *,
                      count_tokens: Callable[[str], int] | None = None, policy=None) -> list[dict]:
    """One distillation trace record per candidate (kept or dropped with a named reason)."""
    records = []
    for c in candidates:
        rec = trace_record(c.example, dataset, teacher_text(c), filters, teacher_model=c.teacher, policy=policy,
                           count_tokens=count_tokens)
        rec["item_key"] = c.item_key
        rec["id"] = c.example.id
        records.append(rec)
    return records


def choose_traces(records: list[dict], rule: ChooseRule, teacher_order: Sequence[str] = ()) -> list[dict]:
    """Apply the multi-teacher rule to passing traces; every record stays (chosen or not):

    - `all`: every passing trace is kept (one SFT row per teacher; ids get `@teacher`);
    - `first_passing`: per item, the first passing trace in `teacher_order` (then teacher name);
    - `shortest_passing`: per item, the passing trace with the fewest reasoning words (ties: order).
    Passing traces not chosen are marked `kept=False`, `drop_reason='not_chosen'`."""
    rank = {t: i for i, t in enumerate(teacher_order)}
    order_key = lambda r: (rank.get(r["teacher_model"], len(rank)), r["teacher_model"])  # noqa: E731
    by_item: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_item[r["item_key"]].append(r)
    out = []
    for key, group in by_item.items():
        passing = sorted((r for r in group if r["kept"]), key=order_key)
        if rule == "all":
            chosen = passing
        elif rule == "first_passing":
            chosen = passing[:1]
        elif rule == "shortest_passing":
            chosen = sorted(passing, key=lambda r: (r["reasoning_words"], order_key(r)))[:1]
        else:
            raise ValueError(f"unknown choose rule {rule!r}; expected all, first_passing or shortest_passing")
        chosen_teachers = {r["teacher_model"] for r in chosen}  # one recording per teacher and item
        multi = rule == "all" and len(group) > 1
        for r in group:
            r = dict(r)
            if multi:
                r["id"] = f"{r['id']}@{r['teacher_model']}"
            if r["kept"] and r["teacher_model"] not in chosen_teachers:
                r.update(kept=False, drop_reason=NOT_CHOSEN, drop_reasons=[NOT_CHOSEN])
            out.append(r)
    return out


def import_stats(records: Sequence[dict], skipped: Counter, rule: str) -> dict:
    """distillation's stats plus the import's own: per teacher, the rule, items, and what was skipped."""
    # distillation's counts see every candidate, a trace left out by the rule as passing ("kept"):
    stats = distill_stats([{**r, "kept": r["kept"] or r.get("drop_reason") == NOT_CHOSEN} for r in records])
    per_teacher: dict[str, dict] = {}
    for r in records:
        t = per_teacher.setdefault(r["teacher_model"], {"total": 0, "passing": 0, "chosen": 0})
        t["total"] += 1
        t["passing"] += int(r["kept"] or r.get("drop_reason") == NOT_CHOSEN)
        t["chosen"] += int(bool(r["kept"]))
    stats.update({
        "source": "import",
        "choose": rule,
        "items": len({r["item_key"] for r in records}),
        "items_with_a_chosen_trace": len({r["item_key"] for r in records if r["kept"]}),
        "chosen": sum(1 for r in records if r["kept"]),
        "not_chosen": sum(1 for r in records if r.get("drop_reason") == NOT_CHOSEN),
        "per_teacher": per_teacher,
        "skipped_rows": dict(skipped),
    })
    return stats
