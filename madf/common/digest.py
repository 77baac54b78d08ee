"""One SHA-256 over a model's weights (names, dtypes, shapes and bytes, in name order): madf records it in every
weights file it writes (safetensors and ONNX metadata) and checks it on load, so a flipped byte is found, not run."""
from __future__ import annotations

import hashlib
from typing import Iterable, Tuple

KEY = "madf.weights_sha256"


def weights_sha256(tensors: Iterable[Tuple[str, str, Tuple[int, ...], object]]) -> str:
    """``tensors``: (name, dtype, shape, buffer) in any order; a buffer is anything with the buffer protocol."""
    digest = hashlib.sha256()
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        digest.update(f"{name}\0{dtype}\0{tuple(shape)}\0".encode())
        digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()
