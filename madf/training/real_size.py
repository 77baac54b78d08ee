"""Evaluation at real sizes: whole photos as they are, holes a user would draw, scored inside the hole.

``madf.training.evaluate`` scores 256 px squares the way the paper does; this scores what a user of the pipeline
gets: every held-out photo at its own size, strokes, blobs and object outlines (``madf.data.photo_masks``) in
buckets of thickness against the model's training size, filled by the whole default pipeline (the scale-aware
strategy included) and by OpenCV. Scores are over the hole only, where the methods differ:
- PSNR: data range 1, mean squared error over the hole's pixels (all three channels);
- SSIM: the SSIM map of ``madf.training.evaluate.ssim``'s settings over the hole's bounding box (grown by the
  window's radius), averaged over the hole's pixels.
The pairs where MADF trails the better OpenCV method most are drawn as a PNG grid (input, each method, truth,
cropped around the hole).
"""
from __future__ import annotations

import dataclasses
import heapq
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from madf.data.photo_masks import THICKNESS_BUCKETS, photo_masks, thickness_bucket_name
from madf.inpaint import imaging
from madf.inpaint.strategy import thickness
from madf.training.evaluate import SSIM_SETTINGS, Method

WINDOW_RADIUS = 5   # the 11x11 Gaussian window's


def hole_box(hole: np.ndarray, grow: int = 0) -> Tuple[int, int, int, int]:
    ys, xs = np.nonzero(hole)
    h, w = hole.shape
    return (max(0, int(ys.min()) - grow), max(0, int(xs.min()) - grow), min(h, int(ys.max()) + 1 + grow),
            min(w, int(xs.max()) + 1 + grow))


def hole_psnr(reference: np.ndarray, result: np.ndarray, hole: np.ndarray) -> float:
    diff = reference[hole].astype(np.float64) / 255 - result[hole].astype(np.float64) / 255
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def hole_ssim(reference: np.ndarray, result: np.ndarray, hole: np.ndarray) -> float:
    from skimage.metrics import structural_similarity
    top, left, bottom, right = hole_box(hole, WINDOW_RADIUS)
    a = reference[top:bottom, left:right].astype(np.float64) / 255
    b = result[top:bottom, left:right].astype(np.float64) / 255
    if min(a.shape[:2]) < 2 * WINDOW_RADIUS + 1:   # a hole at a corner of a tiny photo: pad as the window needs
        pad = ((0, max(0, 11 - a.shape[0])), (0, max(0, 11 - a.shape[1])), (0, 0))
        a, b = np.pad(a, pad, mode="reflect"), np.pad(b, pad, mode="reflect")
    _, smap = structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    region = np.zeros(smap.shape[:2], bool)
    region[:bottom - top, :right - left] = hole[top:bottom, left:right]
    return float(smap.mean(axis=2)[region].mean())


@dataclasses.dataclass
class RealSample:
    image: str
    size: Tuple[int, int]
    kind: str
    bucket: str
    thickness: float   # pixels
    hole_ratio: float
    scores: Dict[str, Dict[str, float]]


def _crop_around(arr: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The hole's bounding box grown by half its size (at least 32 px) each way: what the worst-case grid shows."""
    top, left, bottom, right = hole_box(hole)
    grow = max(32, (bottom - top) // 2, (right - left) // 2)
    h, w = hole.shape
    return arr[max(0, top - grow):min(h, bottom + grow), max(0, left - grow):min(w, right + grow)]


def evaluate_real(methods: Dict[str, Method], photos: Sequence[Tuple[str, Callable[[], np.ndarray]]],
                  train_size: int, seed: int = 0, progress=None, worst: int = 8, reference: str = "madf",
                  ) -> Tuple[List[RealSample], List[List[np.ndarray]]]:
    """Every photo (name, loader) with its masks; every method composited and scored in the hole. Returns the
    samples and the grid rows of the ``worst`` pairs (``reference`` furthest below the best other method)."""
    samples: List[RealSample] = []
    heap: List[Tuple[float, int, List[np.ndarray]]] = []
    for name, load in photos:
        image = load()
        h, w = image.shape[:2]
        masks = photo_masks(h, w, train_size, seed, name)
        for kind, bucket, hole in masks:
            scores, crops = {}, [imaging.show_hole(_crop_around(image, hole), _crop_around(hole, hole))]
            for method, run in methods.items():
                result = imaging.composite(image, np.asarray(run(image, hole)), hole)
                scores[method] = {"psnr": hole_psnr(image, result, hole), "ssim": hole_ssim(image, result, hole)}
                crops.append(_small(_crop_around(result, hole)))
            crops.append(_small(_crop_around(image, hole)))
            samples.append(RealSample(name, (w, h), kind, thickness_bucket_name(bucket),
                                      thickness(hole, hole_box(hole)), float(hole.mean()), scores))
            others = [s["psnr"] for m, s in scores.items() if m != reference]
            if reference in scores and others:
                gap = max(others) - scores[reference]["psnr"]
                heapq.heappush(heap, (gap, len(samples), [_small(crops[0])] + crops[1:]))
                if len(heap) > worst:
                    heapq.heappop(heap)
            if progress is not None:
                progress.update(1)
    rows = [row for _, _, row in sorted(heap, reverse=True)]
    return samples, rows


def _small(arr: np.ndarray, side: int = 256) -> np.ndarray:
    """The crop fitted into a side x side tile, up or down (a small hole's crop is shown enlarged)."""
    from PIL import Image
    h, w = arr.shape[:2]
    f = side / max(h, w)
    return np.asarray(Image.fromarray(arr).resize((max(1, round(w * f)), max(1, round(h * f))),
                                                  Image.NEAREST if f > 1 else Image.BICUBIC))


def real_table(samples: List[RealSample]) -> Dict[str, Dict]:
    """{row: {method: {psnr, ssim}, n}}: thickness buckets, then kinds, then ALL."""
    groups: Dict[str, List[RealSample]] = {}
    for s in samples:
        groups.setdefault(f"thickness {s.bucket}", []).append(s)
    order = [f"thickness {thickness_bucket_name(b)}" for b in THICKNESS_BUCKETS
             if f"thickness {thickness_bucket_name(b)}" in groups]
    for s in samples:
        groups.setdefault(s.kind, []).append(s)
    order += sorted({s.kind for s in samples}, key=["stroke", "blob", "object"].index)
    groups["ALL"], out = samples, {}
    for key in order + ["ALL"]:
        rows = groups[key]
        methods = rows[0].scores.keys()
        out[key] = {m: {metric: float(np.mean([r.scores[m][metric] for r in rows])) for metric in ("psnr", "ssim")}
                    for m in methods}
        out[key]["n"] = len(rows)
    return out


def real_markdown(summary: Dict[str, Dict], methods: Sequence[str], header: str, reference: str = "madf") -> str:
    """The table, with the reference method's cells in bold where it beats every other method."""
    lines = [header, "", "| holes | n | " + " | ".join(f"{m} PSNR | {m} SSIM" for m in methods) + " |",
             "|---|---:|" + "---:|" * (2 * len(methods))]
    for key, row in summary.items():
        cells = []
        for m in methods:
            for metric, fmt in (("psnr", "{:.2f}"), ("ssim", "{:.4f}")):
                text = fmt.format(row[m][metric])
                best = all(row[m][metric] > row[o][metric] for o in methods if o != m and not o.startswith(reference))
                cells.append(f"**{text}**" if m == reference and best else text)
        lines.append(f"| {key} | {row['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Thickness: twice the largest distance from a hole pixel to a known one, as a fraction of the "
              "model's training size. PSNR: data range 1, over the hole's pixels. SSIM: the map of "
              f"{SSIM_SETTINGS}, averaged over the hole's pixels. Bold: {reference} above every OpenCV method."]
    return "\n".join(lines) + "\n"


def worst_grid_caption(methods: Sequence[str]) -> str:
    return "rows: the pairs where madf trails the better OpenCV method most; columns: input (hole white), " + \
        ", ".join(methods) + ", truth"


def limit_side(image: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """The photo scaled down (Lanczos) so its longer side is at most ``max_side`` (None: as it is)."""
    if max_side is None or max(image.shape[:2]) <= max_side:
        return image
    from PIL import Image
    h, w = image.shape[:2]
    f = max_side / max(h, w)
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS))
