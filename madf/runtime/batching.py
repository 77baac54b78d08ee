"""A batch run against a profile's batch range, written once for every backend: a larger batch is split into
chunks of at most ``max_batch``; a chunk below ``min_batch`` (an engine's profile, or an ONNX file exported for one
fixed N) is padded with copies of its first item, whose outputs are dropped."""
from __future__ import annotations

from typing import Callable

import numpy as np


def in_profile_batches(run: Callable[[np.ndarray, np.ndarray], np.ndarray], image: np.ndarray, mask: np.ndarray,
                       min_batch: int, max_batch: int) -> np.ndarray:
    """``run`` over ``image``/``mask`` (batch first) in chunks the profile takes; the outputs in order."""
    out = []
    for start in range(0, image.shape[0], max_batch):
        img, msk = image[start:start + max_batch], mask[start:start + max_batch]
        short = max(0, min_batch - img.shape[0])
        if short:
            img = np.concatenate([img, np.repeat(img[:1], short, axis=0)])
            msk = np.concatenate([msk, np.repeat(msk[:1], short, axis=0)])
        result = run(img, msk)
        out.append(result[: result.shape[0] - short])
    return np.concatenate(out)
