"""The guard's vocabulary, declared once: modes, harm values, and the policy spec users write.

Config models, the HTTP schemas and the core import these names; a policy spec is validated by
`reasonguard.policy.check_policy_spec` wherever it is parsed (a config file at load time, a
request at the HTTP edge), with one set of rules and messages.
"""

from __future__ import annotations

from typing import Annotated, Literal, Sequence, get_args

from pydantic import AfterValidator, Field

from reasonguard.policy import MAX_CATEGORY_CHARS, Policy, check_policy_spec

Mode = Literal["think", "no_think"]
MODES: tuple[str, ...] = get_args(Mode)
SftMode = Literal["think", "no_think", "dual"]  # dual = both modes, mixed by a ratio
HarmValue = Literal["harmful", "unharmful"]

# What a config or request may say: None = the Aegis 2.0 taxonomy ('default' and 'aegis2' too),
# a list of category names, or a free-text policy.
PolicySpec = Annotated[
    str | list[Annotated[str, Field(min_length=1, max_length=MAX_CATEGORY_CHARS)]] | None,
    AfterValidator(check_policy_spec),
]
# What functions take: a spec or an already resolved Policy.
PolicyLike = Policy | Sequence[str] | str | None

__all__ = ["HarmValue", "MODES", "Mode", "PolicyLike", "PolicySpec", "SftMode"]
