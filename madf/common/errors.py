"""User-facing errors. Each message is one line that names the fix; the CLIs print it as 'Error: ...' and exit 1.

Torch-free, so every backend and CLI can catch them.
"""


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its text's first line, or its type when it has no text."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


# How allocators say they ran out: Python, torch (CPU and CUDA), ONNX Runtime's arena, C++, CUDA, Ray's monitor.
_OUT_OF_MEMORY = ("out of memory", "failed to allocate memory", "bad_alloc", "cudaerrormemoryallocation",
                  "cuda_error_out_of_memory", "running low on memory")
OUT_OF_MEMORY = "out of memory; try a smaller --batch-size, a smaller --max-side or a smaller image"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure, whoever raised it (their texts differ)."""
    text = str(exc).lower()
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or any(t in text for t in _OUT_OF_MEMORY))


def failure_line(exc: BaseException) -> str:
    """One line for a failure a run reports and goes on past (no command line at hand: a library call, a Ray
    actor): what to do when memory ran out, else the error's first line; never an allocator's own text."""
    return OUT_OF_MEMORY if is_out_of_memory(exc) else first_line(exc)


class MADFError(Exception):
    """Base of the errors a user can act on."""


class InputError(MADFError, ValueError):
    """An image or mask that cannot be used."""


class CheckpointError(MADFError, ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class DeviceError(MADFError, RuntimeError):
    """The requested device cannot be used."""


class PluginError(MADFError, RuntimeError):
    """A plugin library that is missing or cannot be loaded (not a device fault: the C++ runtime's kPLUGIN)."""


class ModelError(MADFError, ValueError):
    """An exported model or engine file that cannot be used as asked."""


class OutputError(MADFError, OSError):
    """A result that cannot be written where asked (named by the user's path, never a temp file's)."""


def check_finite(tensors, source: str, error=None, fix: str = "the file is damaged: download or export it again"):
    """Raise ``error`` (ModelError by default) naming ``source`` and the first tensor holding NaN or Inf.

    ``tensors``: {name: array} of numpy arrays or torch tensors (any device). The one finite-check of the project:
    weights read from a checkpoint or an ONNX file, and the outputs of every backend, go through it."""
    import numpy as np
    for name, t in tensors.items():
        if hasattr(t, "is_floating_point"):   # torch, without importing it here
            bad = t.is_floating_point() and not bool(t.isfinite().all())
        else:
            arr = np.asarray(t)
            bad = arr.dtype.kind in "fc" and not np.isfinite(arr).all()
        if bad:
            raise (error or ModelError)(f"{source}: {name} holds NaN or Inf; {fix}")
