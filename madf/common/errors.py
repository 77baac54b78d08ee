"""User-facing errors. Each message is one line that names the fix; the CLIs print it as 'Error: ...' and exit 1.

Torch-free, so every backend and CLI can catch them.
"""


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its text's first line, or its type when it has no text."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


class MADFError(Exception):
    """Base of the errors a user can act on."""


class InputError(MADFError, ValueError):
    """An image or mask that cannot be used."""


class CheckpointError(MADFError, ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class DeviceError(MADFError, RuntimeError):
    """The requested device cannot be used."""


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
