"""An SFT row -> input ids and labels in the student's own chat template: loss only on the assistant
turn; a row longer than `max_len` shrinks its conversation, then its reasoning, and is dropped rather
than ever losing the verdict. Pure: the tokenizer is passed in."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from reasonguard.schema import GuardExample
from reasonguard.sft.rows import example_of_row, messages_of_row

IGNORE_INDEX = -100
TRUNCATION_MARK = " [...] "


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
