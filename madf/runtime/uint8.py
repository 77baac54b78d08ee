"""Files with the uint8 shell (madf-export --io uint8) as the runtimes run them.

A uint8 backend has ``io == "uint8"`` and ``run_uint8(images (N,H,W,3) uint8, holes (N,H,W) bool) -> (N,H,W,3)
uint8``: raw photos of any size in, the composite out, the mask encoded in the file's polarity here. Its
``__call__`` still takes the float contract (madf-parity, madf-bench's float inputs), converted exactly: contract
images of photos are k / 255. Torch-free.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np


def io_kind(metadata: Dict[str, str]) -> str:
    return metadata.get("madf.io", "float")


def size_multiple(backend) -> int:
    """The multiple an input's sides must have for ``backend``: 1 for a uint8 file (it pads inside), else the
    network's."""
    return 1 if backend.io == "uint8" else backend.multiple


def encode_masks(holes: np.ndarray, inverted: bool) -> np.ndarray:
    """bool (N, H, W) holes as the file's mask input (N, H, W, 1): 255 = hole, or 255 = keep when inverted."""
    holes = np.asarray(holes, dtype=bool)
    return ((~holes if inverted else holes).astype(np.uint8) * np.uint8(255))[..., None]


def from_contract(image: np.ndarray, mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Float contract tensors (N,3,H,W) [0,1], (N,1,H,W) 1 = hole -> uint8 (N,H,W,3) images, bool (N,H,W) holes."""
    images = np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)), np.asarray(mask)[:, 0] >= 0.5


def to_contract_output(out: np.ndarray) -> np.ndarray:
    """uint8 (N,H,W,3) results as the float contract's (N,3,H,W) [0,1]."""
    return np.ascontiguousarray(np.asarray(out).transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255.0)


def run_contract(backend, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The float contract on a uint8 backend."""
    return to_contract_output(backend.run_uint8(*from_contract(image, mask)))


def bytes_moved(io: str, n: int, h: int, w: int) -> int:
    """Bytes a call sends and receives: 3 + 1 + 3 channels, 4 bytes each as float, 1 as uint8."""
    return n * h * w * 7 * (1 if io == "uint8" else 4)
