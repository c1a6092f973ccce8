"""`EngineConfig` is declared with the other configs (reasonguard/config/engine.py); engines import it from there."""

from reasonguard.config.engine import EngineConfig, EngineKind

__all__ = ["EngineConfig", "EngineKind"]
