"""The plugin libraries a plugin or mixed engine needs, checked before TensorRT sees them: one message for a missing
library, whoever asks (the builder, the Python runtime)."""
from __future__ import annotations

from pathlib import Path

from madf.common.errors import PluginError


def require_plugin_file(path) -> Path:
    """``path``, a plugin library that exists; PluginError naming how to build one otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"plugin library {path} not found; build it with cmake -S madf/csrc -B build && "
                          f"cmake --build build (docs/tensorrt.md)")
    return path
