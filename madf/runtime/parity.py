"""Parity between contract backends: polygraphy runs them (one runner per backend) and judges with its comparator.

Any object with the contract's ``__call__(image, mask) -> inpainted`` (TorchBackend, OnnxRuntimeBackend, later the
TensorRT backend) becomes a polygraphy runner through ``BackendRunner``; ``compare`` feeds every runner the same
real photos with procedural masks and reports max / mean abs error and PSNR between outputs per input, plus
polygraphy's verdict against an absolute tolerance. Torch-free unless a torch backend is passed in.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Dict, List

import numpy as np

from madf.inpaint import imaging

# Tolerances on [0,1] outputs against the FP32 PyTorch reference, by precision of the compared model.
# Max abs error on [0, 1] per precision of the least precise model compared (measured on an H200 against pure FP32 at
# 256x256: TF32 79 dB / FP16 75 dB PSNR, FP16 max abs 0.005, BF16 57 dB and 0.024).
# INT8 (madf-export --int8, whose own gate is PSNR): the bundled model's file 0.066-0.146 max abs, 42-44 dB, 2026-12-02.
# FP8 (--fp8, E4M3: 3 mantissa bits): the bundled model's file 0.092-0.460 max abs, 32-42 dB, 2026-12-02.
TOLERANCE = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 5e-2, "bf16": 5e-2, "int8": 0.25, "fp8": 0.5}
UINT8_STEP = 1.0 / 255.0   # one 8-bit level on [0, 1]: what a uint8 file's output is quantized to
# A model that changed fewer hole pixels than this filled nothing: a mask read with the wrong polarity or scale
# (a uint8 file reads >= 128 as the hole, so a 0/1 mask is all known), which equal outputs would not reveal.
MIN_FILLED = 0.01


def filled_fraction(image: np.ndarray, mask: np.ndarray, out: np.ndarray) -> float:
    """The fraction of hole pixels whose output differs from the input by more than half an 8-bit level."""
    hole = np.asarray(mask)[:, 0] >= 0.5
    if not hole.any():
        return 1.0
    changed = (np.abs(np.asarray(out, np.float32) - np.asarray(image, np.float32)) > UINT8_STEP / 2).any(axis=1)
    return float(changed[hole].mean())


def _runner_class():
    from polygraphy.backend.base import BaseRunner
    from polygraphy.common import TensorMetadata

    class BackendRunner(BaseRunner):
        """A polygraphy runner around a contract backend."""

        def __init__(self, backend, name: str):
            super().__init__(name=name, prefix="madf-runner")
            self.backend = backend

        def get_input_metadata_impl(self):
            return TensorMetadata().add("image", np.float32, (-1, 3, -1, -1)).add("mask", np.float32, (-1, 1, -1, -1))

        def infer_impl(self, feed_dict):
            start = time.perf_counter()
            out = np.asarray(self.backend(feed_dict["image"], feed_dict["mask"]), dtype=np.float32)
            self.inference_time = time.perf_counter() - start
            return OrderedDict(inpainted=out)

    return BackendRunner


def photo_feeds(size: int, count: int = 3, seed: int = 0) -> List[Dict[str, np.ndarray]]:
    """``count`` real photos, centre-cropped and resized to size x size, each with a seeded free-form mask."""
    from PIL import Image

    from madf.data.masks import free_form_mask
    from madf.data.photos import sample_photos

    feeds = []
    for i, path in enumerate(sample_photos()[:count]):
        image = imaging.center_square(Image.open(path), size)
        hole = free_form_mask(size, size, seed=seed + i)
        image_t, mask_t = imaging.to_contract(image, hole, size)
        feeds.append(OrderedDict(image=image_t, mask=mask_t))
    return feeds


def compare(backends: Dict[str, object], feeds, atol: float, verbose: bool = False):
    """Run every backend on every feed and compare each with the first (the reference).

    Returns (rows, passed): one row per (backend, input) with max / mean abs error and PSNR; ``passed`` is
    polygraphy's verdict (max abs error <= atol on every input) for every pair.
    """
    from polygraphy.comparator import Comparator, SimpleCompareFunc
    from polygraphy.logger import G_LOGGER

    runner = _runner_class()
    runners = [runner(backend, name) for name, backend in backends.items()]
    severity = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.INFO if verbose else G_LOGGER.ERROR
    try:
        results = Comparator.run(runners, data_loader=feeds)
        verdict = Comparator.compare_accuracy(
            results, compare_func=SimpleCompareFunc(atol=atol, rtol=0.0, check_error_stat="max"),
            comparisons=[(0, i) for i in range(1, len(runners))])
    finally:
        G_LOGGER.module_severity = severity
    (reference_name, reference), *others = list(results.items())
    rows = []
    for name, iterations in others:
        for i, (ref_it, it) in enumerate(zip(reference, iterations)):
            stats = imaging.compare(ref_it["inpainted"], it["inpainted"])
            filled = min(filled_fraction(feeds[i]["image"], feeds[i]["mask"], out["inpainted"]) for out in (ref_it, it))
            rows.append({"reference": reference_name, "backend": name, "input": i, **stats, "filled": filled,
                         "passed": stats["max_abs"] <= atol and filled >= MIN_FILLED})
    return rows, bool(verdict) and all(r["passed"] for r in rows)
