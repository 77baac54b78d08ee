"""User-facing errors. Each message is one line that names the fix; the CLIs print it as 'Error: ...' and exit 1.

Torch-free, so every backend and CLI can catch them.
"""


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
