"""The guard's vocabulary, declared once: modes, harm values, and the policy spec users write.

Config models, the HTTP schemas and the core import these names; a policy spec is validated by
`reasonguard.policy.check_policy_spec` wherever it is parsed (a config file at load time, a
request at the HTTP edge), with one set of rules and messages.
"""

from __future__ import annotations

from typing import Annotated, Literal, Sequence, get_args

from pydantic import AfterValidator, Field

from reasonguard.policy import MAX_CATEGORIES, MAX_CATEGORY_CHARS, MAX_POLICY_CHARS, Policy, check_policy_spec

Mode = Literal["think", "no_think"]
MODES: tuple[str, ...] = get_args(Mode)
SftMode = Literal["think", "no_think", "dual"]  # dual = both modes, mixed by a ratio
HarmValue = Literal["harmful", "unharmful"]

# What a config or request may say: None = the Aegis 2.0 taxonomy ('default' and 'aegis2' too),
# a list of category names, or a free-text policy.
# The schema states check_policy_spec's bounds too (a text with a non-blank character, 1 to MAX_CATEGORIES
# names), so a schema-valid request is never refused; the validator keeps its own messages.
_NOT_BLANK = {"pattern": r"\S"}
PolicySpec = Annotated[
    Annotated[str, Field(json_schema_extra={**_NOT_BLANK, "maxLength": MAX_POLICY_CHARS})]
    | Annotated[list[Annotated[str, Field(max_length=MAX_CATEGORY_CHARS, json_schema_extra=_NOT_BLANK)]],
                Field(json_schema_extra={"minItems": 1, "maxItems": MAX_CATEGORIES})]
    | None,
    AfterValidator(check_policy_spec),
]
# What functions take: a spec or an already resolved Policy.
PolicyLike = Policy | Sequence[str] | str | None

__all__ = ["HarmValue", "MODES", "Mode", "PolicyLike", "PolicySpec", "SftMode"]
