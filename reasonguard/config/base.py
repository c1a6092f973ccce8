"""Loading and validating YAML configs, with errors that name the bad field."""

from __future__ import annotations

import copy

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and each bad field."""


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors (typos fail fast), values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"  - {where}: {err['msg'].removeprefix('Value error, ')}")  # our own checks' text, as written
    return "\n".join(lines)


def validate_config(model: type[T], data: dict[str, Any], source: str = "<dict>") -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | Path, model: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Read a YAML file into `model`; `overrides` (dotted keys) are applied before validation."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(data).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return validate_config(model, data, str(path))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.0.c` in nested mappings; a number indexes an existing list item (`data.0.limit=8`)."""
    *parents, leaf = dotted.split(".")
    node: Any = data
    for part in parents:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override {dotted}: {part!r} is not an index of a list of {len(node)}")
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {dotted}: {part} is not a mapping")
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {dotted}: {part} is not a mapping")
    if isinstance(node, list):
        if not leaf.isdigit() or int(leaf) >= len(node):
            raise ConfigError(f"override {dotted}: {leaf!r} is not an index of a list of {len(node)}")
        node[int(leaf)] = value
    else:
        node[leaf] = value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key.sub=value` strings from the command line; values are parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out


def dump_config(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, recursively for nested mappings (lists and scalars are replaced).
    The result shares nothing with its inputs."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
