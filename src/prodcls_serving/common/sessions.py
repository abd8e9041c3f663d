"""The one ONNX Runtime session factory: CPU sessions with the project's settings, for the
pipeline's stages and for serving alike."""

import os

import onnxruntime as ort

# ORT logs every unused initialiser it prunes as a warning; errors still show.
_ORT_LOG_ERRORS_ONLY = 3


def available_cores() -> int:
    """The cores this process may run on (a container's quota, not the host's count)."""
    return len(os.sched_getaffinity(0))


def session_options() -> ort.SessionOptions:
    """Every available core for each operator, all graph optimisations, errors-only logging."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = _ORT_LOG_ERRORS_ONLY
    return options


def create_session(
    model: bytes | str | os.PathLike, options: ort.SessionOptions | None = None
) -> ort.InferenceSession:
    """A CPU session of `model` (its bytes or its path), with `session_options()` unless other
    options are given."""
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        source, options or session_options(), providers=["CPUExecutionProvider"]
    )
