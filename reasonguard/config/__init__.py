"""One config system for CLI, jobs and serve: YAML files validated by pydantic models."""

from reasonguard.config.base import ConfigError, StrictModel, deep_merge, dump_config, load_config, parse_overrides, validate_config

__all__ = ["ConfigError", "StrictModel", "deep_merge", "dump_config", "load_config", "parse_overrides", "validate_config"]
