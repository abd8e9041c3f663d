"""The shared core: definitions every area uses and that depend on no area."""

from prodcls_pipeline.core.errors import GateError

__all__ = ["GateError"]
