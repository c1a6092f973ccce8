"""The uniform example schema every loader produces and every stage consumes.

One row type for all datasets keeps pipelines dataset-agnostic: a loader's only job
is to map its source columns onto `GuardExample` and state the label meaning.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

HarmLabel = Literal["harmful", "unharmful"]
HARM_LABELS: tuple[str, ...] = ("harmful", "unharmful")
REFUSAL_LABELS: tuple[str, ...] = ("refusal", "compliance")


@dataclass(frozen=True)
class GuardExample:
    """One labelled conversation: a user prompt and, optionally, the assistant's response.

    Labels are `"harmful"`, `"unharmful"` or `None` (unknown / not labelled at this level).
    `extra` holds source-specific fields (JSON-serialisable), e.g. `response_refusal_label`
    for refusal tasks, `policy` for topic-following examples, original category names.
    """

    id: str
    source: str
    prompt: str
    response: str | None = None
    prompt_harm_label: HarmLabel | None = None
    response_harm_label: HarmLabel | None = None
    categories: tuple[str, ...] = ()
    split: str = "test"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"GuardExample.id must be a non-empty string, got {self.id!r}")
        if not isinstance(self.prompt, str):
            raise ValueError(f"GuardExample.prompt must be a string (id={self.id})")
        for name in ("prompt_harm_label", "response_harm_label"):
            value = getattr(self, name)
            if value is not None and value not in HARM_LABELS:
                raise ValueError(f"GuardExample.{name} must be one of {HARM_LABELS} or None, got {value!r} (id={self.id})")
        if self.response_harm_label is not None and self.response is None:
            raise ValueError(f"GuardExample.response_harm_label set without a response (id={self.id})")
        if not isinstance(self.categories, tuple):
            object.__setattr__(self, "categories", tuple(self.categories))

    @property
    def has_response(self) -> bool:
        return self.response is not None

    def to_row(self) -> dict[str, Any]:
        """A flat, Arrow-friendly row (extra serialised as JSON text so schemas stay stable)."""
        row = asdict(self)
        row["categories"] = list(self.categories)
        row["extra"] = json.dumps(self.extra, ensure_ascii=False, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "GuardExample":
        """Inverse of `to_row`; tolerant of Arrow's numpy arrays and NaN-free None."""
        extra = row.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        categories = row.get("categories")
        return cls(
            id=str(row["id"]),
            source=str(row.get("source", "")),
            prompt=row["prompt"],
            response=row.get("response"),
            prompt_harm_label=row.get("prompt_harm_label"),
            response_harm_label=row.get("response_harm_label"),
            categories=tuple(categories) if categories is not None else (),
            split=str(row.get("split") or "test"),
            extra=dict(extra),
        )
