"""Verdict-safe decoding: the guard's answer always parses, whatever the model writes.

One token-level state machine, shared by every engine (a vLLM logits processor, a transformers
logits processor) and replayed afterwards over the generated ids to read P(harmful):

    think:     "<think>\\n" (forced) -> free reasoning, end-of-sequence banned, until the model
               writes "</think>" or the token budget leaves only room for the verdict
               -> "\\n\\n" after the model's own close, "\\n</think>\\n\\n" when the budget closes it
               -> verdict
    no_think:  verdict from the first token
    verdict:   the canonical token sequences of "Prompt harm: harmful|unharmful" and
               "Response harm: harmful|unharmful" ("None" without a response), then
               end-of-sequence. Where the harmful and unharmful sequences part, the model
               chooses between the two tokens (sampled or greedy); every other token is forced.
    categories (asked for): after the verdict lines "\nSafety categories:" is forced; a benign
               verdict continues " None" and ends; after a harmful one the model writes the codes
               freely (end-of-sequence allowed) within CATEGORIES_ROOM more tokens.

P(harmful) at a decision is the model's own probability of the harmful token renormalised over
the two allowed tokens: exp(lp_h) / (exp(lp_h) + exp(lp_u)) from the raw (unconstrained)
log-probabilities. vLLM is asked for the log-probabilities of exactly the decision tokens
(`logprob_token_ids`), transformers records them from the logits; where an engine reports only
top-k candidates that miss the token not chosen, its log-probability is bounded by the lowest
one reported and the score is marked inexact.

Pure Python: the tokenizer comes in as two callables, so this module is tested without a model.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Mapping, Sequence

from reasonguard.categories import CATEGORIES_LINE_NAME, NO_CATEGORIES
from reasonguard.verdict import format_verdict_lines
from reasonguard.vocabulary import Mode

# The key of vLLM's SamplingParams.extra_args that switches the constraint on for a request.
EXTRA_ARGS_KEY = "reasonguard_verdict"
# The vLLM logits processor that applies the constraint (registered on every vLLM engine of ours).
VERDICT_PROCESSOR = "reasonguard.engines.vllm_verdict:VerdictLogitsProcessor"

THINK_OPEN = "<think>\n"
THINK_CLOSE = "</think>"
AFTER_CLOSE = "\n\n"
FORCED_CLOSE = "\n</think>\n\n"
HARM_VALUES = ("harmful", "unharmful")
CATEGORIES_HEAD = "\n" + CATEGORIES_LINE_NAME + ":"  # the line format_categories_line writes
CATEGORIES_NONE = " " + NO_CATEGORIES
CATEGORIES_ROOM = 24  # tokens kept for the codes a harmful verdict names (", S10" is about 3 tokens each)
Decision = Literal["prompt", "response"]


@dataclass(frozen=True)
class VerdictSpec:
    """What one request's verdict may be: its mode and whether a response is judged."""

    mode: Mode
    has_response: bool
    categories: bool = False  # the answer ends with the `Safety categories:` line

    def to_extra_args(self) -> dict:
        return {EXTRA_ARGS_KEY: {"mode": self.mode, "has_response": self.has_response, "categories": self.categories}}

    @classmethod
    def from_extra_args(cls, extra_args: Mapping | None) -> "VerdictSpec | None":
        spec = (extra_args or {}).get(EXTRA_ARGS_KEY)
        if not spec:
            return None
        return cls(mode=spec["mode"], has_response=bool(spec["has_response"]), categories=bool(spec.get("categories")))


@dataclass
class _Node:
    children: dict[int, "_Node"] = field(default_factory=dict)
    # (prompt value, response value) of the verdict texts reachable from here
    verdicts: set[tuple[str, str]] = field(default_factory=set)
    # At a node where the harmful and unharmful texts part: (which line, harmful id, unharmful id).
    decision: tuple[Decision, int, int] | None = None
    # A leaf after which the model writes freely (the categories a harmful verdict names).
    open_end: bool = False


def _build_trie(sequences: Mapping[tuple[str, str], Sequence[int]], open_ended: Iterable[tuple[str, str]] = ()) -> _Node:
    root = _Node()
    open_ended = set(open_ended)
    for verdict, ids in sequences.items():
        node = root
        node.verdicts.add(verdict)
        for token in ids:
            node = node.children.setdefault(token, _Node())
            node.verdicts.add(verdict)
        node.open_end = verdict in open_ended
    _label_decisions(root)
    return root


def _label_decisions(node: _Node) -> None:
    if len(node.children) == 2:
        (a, na), (b, nb) = node.children.items()
        for index, which in ((0, "prompt"), (1, "response")):
            va, vb = {v[index] for v in na.verdicts}, {v[index] for v in nb.verdicts}
            if va == {"harmful"} and vb == {"unharmful"}:
                node.decision = (which, a, b)  # type: ignore[assignment]
            elif va == {"unharmful"} and vb == {"harmful"}:
                node.decision = (which, b, a)  # type: ignore[assignment]
    for child in node.children.values():
        _label_decisions(child)


def _depth(node: _Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0) if node.children else 0


class VerdictVocabulary:
    """The verdict grammar in one tokenizer's ids. `encode` must not add special tokens;
    `decode_one` turns one id into its text (special tokens included)."""

    def __init__(self, encode: Callable[[str], list[int]], decode_one: Callable[[int], str], eos_id: int,
                 stop_ids: Iterable[int] = (), vocab_size: int | None = None) -> None:
        self.encode = encode
        self.vocab_size = vocab_size
        self._category_banned_ids: tuple[int, ...] | None = None
        self._decode_one = decode_one
        self._decoded: dict[int, str] = {}
        self.eos_id = int(eos_id)
        self.stop_ids = frozenset({self.eos_id, *map(int, stop_ids)})
        self.think_open = tuple(encode(THINK_OPEN))
        self._tries: dict[tuple[str, bool, bool], _Node] = {}
        self._decision_ids: tuple[int, ...] | None = None
        self.close_marker = THINK_CLOSE

    @classmethod
    def from_tokenizer(cls, tokenizer, extra_stop_ids: Iterable[int] = ()) -> "VerdictVocabulary":
        """From a transformers tokenizer (the chat model's end-of-turn id is its eos)."""
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no eos token: the verdict cannot be closed")
        return cls(
            encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
            decode_one=lambda token: tokenizer.decode([token], skip_special_tokens=False),
            eos_id=eos,
            stop_ids=[t for t in extra_stop_ids if t is not None],
            vocab_size=len(tokenizer),
        )

    def decode_one(self, token: int) -> str:
        text = self._decoded.get(token)
        if text is None:
            text = self._decoded[token] = self._decode_one(token)
        return text

    def category_banned_ids(self) -> tuple[int, ...]:
        """Ids whose text holds a line break or a '<': banned while the model names categories, so the answer
        cannot grow a second verdict line or a think tag (empty when the vocabulary size is unknown). Computed once."""
        if self._category_banned_ids is None:
            size = self.vocab_size or 0
            self._category_banned_ids = tuple(t for t in range(size) if t not in self.stop_ids
                                              and any(c in self.decode_one(t) for c in "\n<"))
        return self._category_banned_ids

    def trie(self, opening: str, has_response: bool, categories: bool = False) -> _Node:
        """The verdict trie after `opening` ("" no_think, AFTER_CLOSE, FORCED_CLOSE); with `categories`
        the categories head follows the lines, then " None" + end for a benign verdict, an open end
        (the model names the codes) for a harmful one."""
        key = (opening, has_response, categories)
        if key not in self._tries:
            responses = HARM_VALUES if has_response else ("None",)
            sequences, open_ended = {}, []
            for p in HARM_VALUES:
                for r in responses:
                    text = opening + format_verdict_lines(p, r)
                    if not categories:
                        sequences[(p, r)] = [*self.encode(text), self.eos_id]
                    elif "harmful" in (p, r):
                        sequences[(p, r)] = self.encode(text + CATEGORIES_HEAD)
                        open_ended.append((p, r))
                    else:
                        sequences[(p, r)] = [*self.encode(text + CATEGORIES_HEAD + CATEGORIES_NONE), self.eos_id]
            root = _build_trie(sequences, open_ended)
            self._check(root, has_response)
            self._tries[key] = root
        return self._tries[key]

    @staticmethod
    def _check(root: _Node, has_response: bool) -> None:
        found: set[str] = set()
        stack = [root]
        while stack:
            node = stack.pop()
            if node.decision:
                found.add(node.decision[0])
            stack.extend(node.children.values())
        needed = {"prompt", "response"} if has_response else {"prompt"}
        if not needed <= found:
            raise ValueError(f"this tokenizer's verdict sequences have no clean harmful/unharmful decision for {needed - found}")

    def decision_token_ids(self) -> list[int]:
        """Every token id a verdict decision chooses between: engines that report log-probabilities
        of named tokens (vLLM's `logprob_token_ids`) ask for exactly these, so scores are exact.
        Computed once per vocabulary (it is asked for on every request)."""
        if self._decision_ids is not None:
            return list(self._decision_ids)
        ids: set[int] = set()
        for opening, has_response, categories in itertools.product(("", AFTER_CLOSE, FORCED_CLOSE), (True, False),
                                                                      (False, True)):
            stack = [self.trie(opening, has_response, categories)]
            while stack:
                node = stack.pop()
                if node.decision:
                    ids.update(node.decision[1:])
                stack.extend(node.children.values())
        self._decision_ids = tuple(sorted(ids))
        return list(self._decision_ids)

    def reserve(self, has_response: bool, categories: bool = False) -> int:
        """Tokens the verdict (and the categories line) needs after the reasoning when the budget closes the block."""
        return _depth(self.trie(FORCED_CLOSE, has_response, categories)) + (CATEGORIES_ROOM if categories else 0)

    def min_max_tokens(self, spec: VerdictSpec) -> int:
        """The smallest max_tokens with which a constrained answer is complete."""
        if spec.mode == "no_think":
            return _depth(self.trie("", spec.has_response, spec.categories)) + (CATEGORIES_ROOM if spec.categories else 0)
        return len(self.think_open) + self.reserve(spec.has_response, spec.categories)


@dataclass(frozen=True)
class Branch:
    """A decision the model made: at output position `step`, harmful vs unharmful for `which` line."""

    step: int
    which: Decision
    harmful_id: int
    unharmful_id: int


class VerdictDecoder:
    """The state machine for one request. `allowed()` before each step (None = any token but the
    stop ids... see `banned()`), `advance(token)` after it. Replaying a finished output with
    `advance` alone reproduces the same states (transitions never depend on anything else)."""

    def __init__(self, vocab: VerdictVocabulary, spec: VerdictSpec, max_tokens: int) -> None:
        self.vocab, self.spec, self.max_tokens = vocab, spec, max_tokens
        self.n = 0  # tokens consumed
        self.branches: list[Branch] = []
        self.closed_by: str | None = None  # "model" or "budget" (think mode)
        self.broken = False  # a token outside the constraint was consumed (the engine ignored it)
        self._tail = ""
        self._forced_reserve = vocab.reserve(spec.has_response, spec.categories) if spec.mode == "think" else 0
        if spec.mode == "think":
            self.phase, self._open_pos, self.node = "open", 0, None
        else:
            self.phase, self.node = "verdict", vocab.trie("", spec.has_response, spec.categories)

    def _settle(self) -> None:
        if self.phase == "open" and self._open_pos >= len(self.vocab.think_open):
            self.phase = "free"
        if self.phase == "free" and self.n + self._forced_reserve >= self.max_tokens:
            self._enter_verdict(FORCED_CLOSE, "budget")

    def _enter_verdict(self, opening: str, closed_by: str) -> None:
        self.phase, self.closed_by = "verdict", closed_by
        self.node = self.vocab.trie(opening, self.spec.has_response, self.spec.categories)

    def allowed(self) -> list[int] | None:
        """The tokens allowed at this step; None = free text (stop ids banned while `phase == 'free'`,
        allowed in the `categories` phase)."""
        self._settle()
        if self.phase == "open":
            return [self.vocab.think_open[self._open_pos]]
        if self.phase == "verdict" and self.node is not None and self.node.children:
            return list(self.node.children)
        return None

    @property
    def bans_stop(self) -> bool:
        return self.phase == "free"

    @property
    def bans_markup(self) -> bool:
        """While naming categories: end-of-sequence ends the answer; no line break (another line) and no '<' (a tag)."""
        return self.phase == "categories"

    def advance(self, token: int) -> None:
        self._settle()
        step = self.n
        self.n += 1
        if self.phase == "open":
            if token != self.vocab.think_open[self._open_pos]:
                self._break()
                return
            self._open_pos += 1
            self._settle()
        elif self.phase == "free":
            self._tail = (self._tail + self.vocab.decode_one(token))[-64:]
            if self.vocab.close_marker in self._tail:
                self._enter_verdict(AFTER_CLOSE, "model")
        elif self.phase == "verdict" and self.node is not None:
            decision = self.node.decision
            child = self.node.children.get(token)
            if child is None:
                self._break()
                return
            if decision is not None:
                self.branches.append(Branch(step, decision[0], decision[1], decision[2]))
            self.node = child
            if not child.children:
                self.phase = "categories" if child.open_end else "done"
        elif self.phase == "categories" and token in self.vocab.stop_ids:
            self.phase = "done"

    def _break(self) -> None:
        self.phase, self.node, self.broken = "done", None, True

    @property
    def done(self) -> bool:
        return self.phase == "done"


def replay(vocab: VerdictVocabulary, spec: VerdictSpec, max_tokens: int, token_ids: Sequence[int]) -> VerdictDecoder:
    decoder = VerdictDecoder(vocab, spec, max_tokens)
    for token in token_ids:
        decoder.advance(int(token))
    return decoder


@dataclass(frozen=True)
class VerdictScores:
    """P(harmful) for the prompt and the response (None where the output made no such decision).
    `exact` is False where a probability used a top-k bound for the token not chosen."""

    prompt: float | None = None
    response: float | None = None
    exact: bool = True

    def get(self, which: str) -> float | None:
        return self.prompt if which == "prompt" else self.response if which == "response" else None


def pair_probability(lp_harmful: float | None, lp_unharmful: float | None, floor: float | None = None) -> tuple[float | None, bool]:
    """P(harmful) from the two tokens' log-probabilities; a missing one takes `floor` (the lowest
    reported log-probability at that step, an upper bound for it). Returns (p, exact)."""
    exact = lp_harmful is not None and lp_unharmful is not None
    a = lp_harmful if lp_harmful is not None else floor
    b = lp_unharmful if lp_unharmful is not None else floor
    if a is None or b is None or not (math.isfinite(a) or math.isfinite(b)):
        return None, False
    if not math.isfinite(a):
        return 0.0, exact
    if not math.isfinite(b):
        return 1.0, exact
    return 1.0 / (1.0 + math.exp(b - a)), exact


def scores_from_logprobs(branches: Sequence[Branch], step_logprobs: Sequence[Mapping[int, float]] | None) -> VerdictScores:
    """P(harmful) per decision from per-step {token id: logprob} (vLLM's top-k plus the sampled token)."""
    if not step_logprobs:
        return VerdictScores(exact=False)
    out: dict[str, float | None] = {}
    exact = True
    for b in branches:
        if b.step >= len(step_logprobs) or not step_logprobs[b.step]:
            exact = False
            continue
        entries = step_logprobs[b.step]
        floor = min(entries.values())
        p, ok = pair_probability(entries.get(b.harmful_id), entries.get(b.unharmful_id), floor)
        out.setdefault(b.which, p)
        exact = exact and ok
    return VerdictScores(prompt=out.get("prompt"), response=out.get("response"), exact=exact)


def scores_from_logits(branches: Sequence[Branch], logprob_of: Callable[[int, int], float]) -> VerdictScores:
    """P(harmful) per decision where every token's log-probability is known (transformers logits)."""
    out: dict[str, float | None] = {}
    for b in branches:
        p, _ = pair_probability(logprob_of(b.step, b.harmful_id), logprob_of(b.step, b.unharmful_id))
        out.setdefault(b.which, p)
    return VerdictScores(prompt=out.get("prompt"), response=out.get("response"), exact=True)


# --- What engines that report log-probabilities by token id (vLLM) send and read back -------------


def verdict_sampling_fields(vocab: VerdictVocabulary, spec: VerdictSpec | None) -> dict:
    """The SamplingParams fields that switch the constraint on for one request (none without a spec):
    the spec for the logits processor, and the raw log-probabilities of the decision tokens at every
    step (`logprob_token_ids`: exact P(harmful), whatever else the model would have written)."""
    if spec is None:
        return {}
    return {"extra_args": spec.to_extra_args(), "logprob_token_ids": vocab.decision_token_ids()}


def verdict_outcome(vocab, spec: VerdictSpec | None, max_tokens: int, token_ids, step_logprobs) -> dict:
    """Generation fields of a constrained request: P(harmful) from the raw top-k log-probabilities
    ({token id: logprob} per step) and whether the budget closed the reasoning."""
    if spec is None:
        return {}
    decoder = replay(vocab, spec, max_tokens, list(token_ids))
    return {"verdict_scores": scores_from_logprobs(decoder.branches, step_logprobs), "closed_by_budget": decoder.closed_by == "budget"}
