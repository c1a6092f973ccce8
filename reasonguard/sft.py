"""SFT data for the student guard: which examples, in which mode, as which token sequences.

Two halves, both pure (no Ray, no torch; a tokenizer is passed in):

* `build_sft_rows`: traces and/or labelled examples -> SFT rows (one chat each): reasoning-only,
  no-reasoning or dual-mode with a ratio, a reasoning budget (full / N sentences), a seeded
  label-stratified subset, and an optional topic-following (custom policy) mix.
* `encode_sft_row` / `pack_sequences`: an SFT row -> input ids and labels in the student's own
  chat template; loss only on the assistant turn; sequences longer than `max_len` shrink the
  conversation, then the reasoning, and are dropped rather than ever losing the verdict.

An SFT row keeps the structured example (GuardExample columns, mode, reasoning, policy) next
to the rendered `messages`, so the trainer can re-render a shortened version of an example.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Sequence

from reasonguard.hygiene import fingerprint, training_fingerprints
from reasonguard.prompts import Mode
from reasonguard.schema import GuardExample
from reasonguard.targets import build_chat_example

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
TRUNCATION_MARK = " [...] "
Budget = Literal["full"] | int
from reasonguard.vocabulary import SftMode  # noqa: E402


# ---------------------------------------------------------------- sources


def reasoning_column(budget: Budget) -> str:
    """The trace column of a budget: `reasoning` (full) or `reasoning_<N>` (N sentences)."""
    if budget == "full":
        return "reasoning"
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be 'full' or a positive number of sentences, got {budget!r}")
    return f"reasoning_{budget}"


@dataclass(frozen=True)
class SourceItem:
    """One labelled example and the trace chosen for it (None: no trace, so no_think only)."""

    example: GuardExample
    reasoning: str | None = None
    origin: str = "labelled"  # traces | labelled | topic_following


def _clean(text: Any) -> str | None:
    return text.strip() if isinstance(text, str) and text.strip() else None


def items_from_traces(rows: Sequence[dict], budget: Budget = "full") -> list[SourceItem]:
    """Trace rows (distill / shorten output) -> items; rows marked kept=false are skipped."""
    column = reasoning_column(budget)
    rows = [r for r in rows if r.get("kept", True) is not False]
    if rows and not any(column in r for r in rows):
        have = sorted(k for k in rows[0] if k.startswith("reasoning"))
        raise ValueError(f"budget {budget!r} needs the trace column {column!r}; the traces have {have}")
    return [SourceItem(GuardExample.from_row(r), _clean(r.get(column)), "traces") for r in rows]


def items_from_examples(examples: Iterable[GuardExample], origin: str = "labelled") -> list[SourceItem]:
    return [SourceItem(e, None, origin) for e in examples]


def label_key(item: SourceItem) -> tuple[str, str]:
    ex = item.example
    return (str(ex.prompt_harm_label), str(ex.response_harm_label) if ex.response is not None else "no_response")


def stratified_subset(items: Sequence[SourceItem], size: int, seed: int = 0,
                      key: Callable[[SourceItem], Any] = label_key) -> list[SourceItem]:
    """`size` items drawn at random, each label stratum in proportion (largest remainder), order kept.

    Each stratum is shuffled by its own seeded generator and cut, so a smaller subset of the
    same seed is (almost always) contained in a larger one: the sample-efficiency sizes nest.
    """
    if size < 1:
        raise ValueError(f"subset size must be >= 1, got {size}")
    if size >= len(items):
        return list(items)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        groups[key(item)].append(i)
    keys = sorted(groups, key=str)
    quotas = {k: size * len(groups[k]) / len(items) for k in keys}
    alloc = {k: math.floor(q) for k, q in quotas.items()}
    for k in sorted(keys, key=lambda k: (-(quotas[k] - alloc[k]), str(k)))[: size - sum(alloc.values())]:
        alloc[k] += 1
    chosen: list[int] = []
    for k in keys:
        idx = list(groups[k])
        random.Random(f"{seed}:{k}").shuffle(idx)
        chosen += idx[: alloc[k]]
    return [items[i] for i in sorted(chosen)]


def assign_modes(items: Sequence[SourceItem], mode: SftMode, think_ratio: float = 0.5, seed: int = 0,
                 duplicate: bool = False) -> tuple[list[tuple[SourceItem, Mode]], Counter]:
    """(item, mode) pairs and counts of what was skipped. Only items with a trace can be `think`."""
    if mode not in ("think", "no_think", "dual"):
        raise ValueError(f"mode must be think, no_think or dual, got {mode!r}")
    if not 0 <= think_ratio <= 1:
        raise ValueError(f"think_ratio must be within [0, 1], got {think_ratio}")
    skipped: Counter = Counter()
    if mode == "no_think":
        return [(it, "no_think") for it in items], skipped
    traced = [i for i, it in enumerate(items) if it.reasoning]
    if mode == "think":
        skipped["no_trace"] = len(items) - len(traced)
        return [(items[i], "think") for i in traced], skipped
    if duplicate:
        think = set(traced)
    else:
        think = set(random.Random(seed).sample(traced, round(think_ratio * len(traced))))
    pairs: list[tuple[SourceItem, Mode]] = []
    for i, it in enumerate(items):
        if i in think:
            pairs.append((it, "think"))
        if i not in think or duplicate:
            pairs.append((it, "no_think"))
    return pairs, skipped


# ---------------------------------------------------------------- rows


def sft_row(item: SourceItem, mode: Mode, policy=None, budget: Budget = "full") -> dict:
    """A flat, Arrow-friendly SFT row: the example's columns, its mode and trace, and the rendered chat."""
    reasoning = item.reasoning if mode == "think" else None
    messages = build_chat_example(item.example, mode, reasoning=reasoning, policy=policy)
    return {
        **item.example.to_row(),
        "key": f"{item.example.id}|{mode}",
        "origin": item.origin,
        "mode": mode,
        "budget": str(budget) if mode == "think" else None,
        "reasoning": reasoning,
        "policy": json.dumps(policy),
        "messages": messages,
    }


@dataclass
class SftBuildResult:
    rows: list[dict]
    stats: dict[str, Any] = field(default_factory=dict)


def build_sft_rows(
    traces: Sequence[SourceItem] = (),
    labelled: Sequence[SourceItem] = (),
    *,
    mode: SftMode = "dual",
    think_ratio: float = 0.5,
    duplicate: bool = False,
    budget: Budget = "full",
    subset_size: int | None = None,
    topic_following: Sequence[SourceItem] = (),
    topic_size: int | None = None,
    policy=None,
    seed: int = 0,
    held_out: frozenset[str] | set[str] = frozenset(),
) -> SftBuildResult:
    """Traces first, then labelled data (an id already seen is skipped), subset, modes, topic mix, shuffle.

    `held_out`: prompt fingerprints (reasonguard.hygiene) of test sets; examples whose prompt is among
    them never become training rows (counted as skipped `held_out`)."""
    skipped: Counter = Counter()
    seen: set[str] = set()
    pool: list[SourceItem] = []
    for item in [*traces, *labelled]:
        if held_out and fingerprint(item.example.prompt) in held_out:
            skipped["held_out"] += 1
        elif item.example.prompt_harm_label is None:
            skipped["no_prompt_label"] += 1
        elif item.example.id in seen:
            skipped["duplicate_id"] += 1
        else:
            seen.add(item.example.id)
            pool.append(item)
    if subset_size is not None:
        pool = stratified_subset(pool, subset_size, seed)
    pairs, mode_skips = assign_modes(pool, mode, think_ratio, seed, duplicate)
    skipped.update(mode_skips)
    topic = [t for t in topic_following if not (held_out and fingerprint(t.example.prompt) in held_out)]
    skipped["held_out"] += len(topic_following) - len(topic)
    labelled_topic = [t for t in topic if t.example.prompt_harm_label is not None]
    skipped["topic_unlabelled"] += len(topic) - len(labelled_topic)
    topic = labelled_topic
    topic = [t for t in topic if t.example.id not in seen]  # already in (e.g. distilled from the same data)
    if topic_size is not None:
        topic = stratified_subset(topic, topic_size, seed)
    topic_pairs, topic_skips = assign_modes(topic, "dual" if mode == "think" else mode, think_ratio, seed, duplicate)
    skipped.update(topic_skips)
    rows = [sft_row(it, m, policy, budget) for it, m in [*pairs, *topic_pairs]]
    random.Random(seed).shuffle(rows)
    if not rows:
        raise ValueError(f"no SFT rows were built (skipped: {dict(skipped)})")
    stats = {
        "rows": len(rows),
        "by_mode": dict(Counter(r["mode"] for r in rows)),
        "by_origin": dict(Counter(r["origin"] for r in rows)),
        "by_label": dict(Counter(f"{r['prompt_harm_label']}/{r['response_harm_label']}" for r in rows)),
        "skipped": {k: v for k, v in skipped.items() if v},
        "budget": str(budget),
    }
    return SftBuildResult(rows, stats)


def example_of_row(row: dict) -> GuardExample:
    return GuardExample.from_row(row)


def messages_of_row(row: dict, example: GuardExample | None = None, reasoning: str | None = None) -> list[dict]:
    """Re-render a row's chat (optionally with a shortened example or reasoning)."""
    policy = json.loads(row["policy"]) if row.get("policy") else None
    example = example or example_of_row(row)
    reasoning = reasoning if reasoning is not None else row.get("reasoning")
    return build_chat_example(example, row["mode"], reasoning=reasoning if row["mode"] == "think" else None, policy=policy)


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class EncodedChat:
    """Token ids of one chat: prompt (masked), target (learned), end-of-turn (learned), trailing text (masked)."""

    prompt: list[int]
    target: list[int]
    end: list[int]
    tail: list[int]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.target) + len(self.end) + len(self.tail)

    @property
    def input_ids(self) -> list[int]:
        return self.prompt + self.target + self.end + self.tail

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * len(self.prompt) + self.target + self.end + [IGNORE_INDEX] * len(self.tail)


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def encode_chat(tokenizer, messages: Sequence[dict]) -> EncodedChat:
    """Tokenize prompt and target separately, exactly as the chat template renders them.

    The prompt is what the guard sees at inference (`add_generation_prompt=True`); the target is
    tokenized on its own so the learned ids are the ones a model generates after that prompt.
    The template's end-of-turn marker is learned too (that is how generation stops).
    """
    prompt = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(list(messages), tokenize=False)
    target = messages[-1]["content"]
    if not full.startswith(prompt + target):
        raise ValueError("the chat template does not render the assistant turn as <prompt><target><end of turn>; "
                         "this student's template is not supported for SFT")
    rest = full[len(prompt) + len(target):]
    end = rest.rstrip()
    return EncodedChat(_encode(tokenizer, prompt), _encode(tokenizer, target), _encode(tokenizer, end),
                       _encode(tokenizer, rest[len(end):]))


@dataclass(frozen=True)
class EncodedExample:
    key: str
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_label_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def shrink_text(tokenizer, text: str, keep_tokens: int) -> str:
    """Keep the first 2/3 and last 1/3 of `keep_tokens` tokens of `text`, marking the cut."""
    ids = _encode(tokenizer, text)
    if len(ids) <= keep_tokens:
        return text
    head = max(1, (keep_tokens * 2) // 3)
    tail = max(0, keep_tokens - head)
    tail_text = tokenizer.decode(ids[len(ids) - tail:]) if tail else ""
    return tokenizer.decode(ids[:head]) + TRUNCATION_MARK + tail_text


def _water_fill(lengths: Sequence[int], budget: int, floor: int) -> list[int]:
    """Per-piece token caps: cut the longest pieces first so their sum fits `budget` (never below `floor`)."""
    if sum(lengths) <= budget:
        return list(lengths)
    lo, hi = 0, max(lengths)
    while lo < hi:  # the largest cap c with sum(min(len, c)) <= budget
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return [min(n, max(lo, floor)) for n in lengths]


def _shrink_conversation(tokenizer, example: GuardExample, overflow: int, floor: int) -> GuardExample:
    history = [dict(t) for t in (example.extra.get("history") or [])]
    texts = [example.prompt] + ([example.response] if example.response is not None else []) + [t.get("content") or "" for t in history]
    lengths = [len(_encode(tokenizer, t)) for t in texts]
    caps = _water_fill(lengths, max(0, sum(lengths) - overflow), floor)
    new = [shrink_text(tokenizer, t, c) if c < n else t for t, n, c in zip(texts, lengths, caps)]
    prompt, rest = new[0], new[1:]
    response = None
    if example.response is not None:
        response, rest = rest[0], rest[1:]
    for turn, content in zip(history, rest):
        turn["content"] = content
    extra = {**example.extra, "history": history} if history else example.extra
    return GuardExample(example.id, example.source, prompt, response, example.prompt_harm_label,
                        example.response_harm_label, example.categories, example.split, extra)


def encode_sft_row(row: dict, tokenizer, max_len: int, *, min_content_tokens: int = 16,
                   min_reasoning_tokens: int = 16, attempts: int = 4) -> EncodedExample | None:
    """Input ids and labels of one SFT row, at most `max_len` tokens, or None when it cannot fit.

    Truncation rule (the verdict lines and the end-of-turn marker are never cut):
    1. shrink the conversation (longest texts first: prompt, response, earlier turns);
    2. then shrink the reasoning trace (head and tail kept);
    3. if the policy, instructions and verdict alone exceed `max_len`, drop the example.
    """
    chat = encode_chat(tokenizer, row["messages"])
    if len(chat) <= max_len:
        return EncodedExample(row["key"], chat.input_ids, chat.labels)
    example, reasoning = example_of_row(row), row.get("reasoning")
    for _ in range(attempts):  # re-tokenizing after a cut can shift counts by a few tokens: retry
        overflow = len(chat) - max_len
        if overflow <= 0:
            return EncodedExample(row["key"], chat.input_ids, chat.labels, truncated=True)
        shorter = _shrink_conversation(tokenizer, example, overflow + 2, min_content_tokens)
        if shorter != example:
            example = shorter
        elif reasoning:
            keep = max(min_reasoning_tokens, len(_encode(tokenizer, reasoning)) - overflow - 2)
            shorter_reasoning = shrink_text(tokenizer, reasoning, keep)
            if shorter_reasoning == reasoning:
                break
            reasoning = shorter_reasoning
        else:
            break
        chat = encode_chat(tokenizer, messages_of_row(row, example, reasoning))
    if len(chat) <= max_len:
        return EncodedExample(row["key"], chat.input_ids, chat.labels, truncated=True)
    return None


def encode_rows(rows: Iterable[dict], tokenizer, max_len: int) -> tuple[list[EncodedExample], Counter]:
    """Encode many rows; counts of truncated and dropped ones come back for the run's stats."""
    out: list[EncodedExample] = []
    counts: Counter = Counter()
    for row in rows:
        enc = encode_sft_row(row, tokenizer, max_len)
        if enc is None:
            counts["dropped_too_long"] += 1
            continue
        counts["truncated"] += enc.truncated
        out.append(enc)
    counts["kept"] = len(out)
    return out, counts


# ---------------------------------------------------------------- packing


@dataclass(frozen=True)
class PackedSequence:
    """Several examples in one sequence; position ids restart at 0 for each (transformers then
    masks attention across examples when no attention mask is passed)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    keys: tuple[str, ...]


def pack_sequences(examples: Sequence[EncodedExample], max_len: int) -> list[PackedSequence]:
    """Best-fit decreasing into bins of `max_len` tokens; deterministic for a given input order."""
    import bisect

    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (free tokens, bin index), sorted
    for i in order:
        n = len(examples[i].input_ids)
        if n > max_len:
            raise ValueError(f"example {examples[i].key} has {n} tokens > max_len {max_len}")
        pos = bisect.bisect_left(free, (n, -1))
        if pos < len(free):
            room, b = free.pop(pos)
        else:
            room, b = max_len, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    packed = []
    for members in bins:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in sorted(members):
            ex = examples[i]
            ids += ex.input_ids
            labels += [IGNORE_INDEX] + ex.labels[1:]  # never learn an example's first token from the previous one
            positions += list(range(len(ex.input_ids)))
        packed.append(PackedSequence(ids, labels, positions, tuple(examples[i].key for i in sorted(members))))
    return packed


# ---------------------------------------------------------------- files


def read_rows(path: str) -> list[dict]:
    """Rows of a parquet file, a folder of parquet parts, a distill/shorten output folder (its trace
    table), or a jsonl/json/csv table (local or URL)."""
    from pathlib import Path

    from reasonguard.datasets import read_records
    from reasonguard.io import read_parts

    from reasonguard.io import TRACE_FILES, trace_table_path

    local = Path(path)
    if local.is_dir():
        if any((local / name).exists() for name in TRACE_FILES):
            return read_parts(trace_table_path(local))
        rows = read_parts(local)
        if not rows:
            rows = [r for f in sorted(local.glob("*.parquet")) for r in read_parts(f)]
        if not rows:
            raise ValueError(f"{path} holds no parquet rows")
        return rows
    return read_records(path)


def write_rows(rows: Sequence[dict], path: str) -> str:
    """SFT rows as .parquet (default) or .jsonl, written atomically."""
    import os
    from pathlib import Path

    from reasonguard.io import write_single_parquet

    out = Path(path)
    if out.suffix == ".jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    else:
        write_single_parquet(rows, out)
    return str(out)


def build_from_config(config) -> SftBuildResult:
    """`SftDataConfig` -> SFT rows: read traces, load labelled and topic-following data, build."""
    from reasonguard.datasets import load_dataset

    traces = [it for path in config.traces for it in items_from_traces(read_rows(path), config.budget)]
    from reasonguard.datasets.sources import load_source

    labelled = [it for source in config.labelled for it in items_from_examples(load_source(source))]
    held_out = training_fingerprints(
        {"prompt": ex.prompt} for source in config.held_out for ex in load_source(source))
    topic: list[SourceItem] = []
    if config.topic_following is not None:
        mix = config.topic_following
        topic = items_from_examples(load_dataset(mix.dataset, root=mix.root), "topic_following")
    result = build_sft_rows(
        traces, labelled, mode=config.mode, think_ratio=config.think_ratio, duplicate=config.dual_duplicate,
        budget=config.budget, subset_size=config.subset_size, topic_following=topic,
        topic_size=config.topic_following.size if config.topic_following else None, policy=config.policy, seed=config.seed,
        held_out=held_out,
    )
    result.stats["inputs"] = {"traces": len(traces), "labelled": len(labelled), "topic_following": len(topic),
                              "held_out_prompts": len(held_out)}
    return result
