"""Where the network looks at a photo: the whole frame, crops around the holes, or a downscaled frame.

MADF was trained on 256x256 crops; holes in a 4000 x 3000 photo are best filled from their surroundings, and running
the whole padded frame is slow, memory-hungry and beyond an engine's profile. IOPaint crops around the mask for
images over 800 px. numpy, scipy and Pillow only (no torch), shared by every backend.

- ``auto`` (scale-aware): each connected region of the hole is filled at a working scale where it is no thicker
  than the holes the network was trained on (``REACH`` of the model's training size, ``ModelConfig.train_size``):
  thickness is twice the largest distance from a hole pixel to a known one, so a long thin stroke stays at full
  resolution and a 500 px blob is scaled down until it looks like a training hole, with ``margin`` working pixels of
  context around it. Small photos whose holes all fit are run whole, as ``full``.
- ``crop``: one box per connected region of the hole, grown by ``margin`` and shifted inward at the borders; boxes
  that overlap are merged; each box is rounded up to the model's multiple and capped at ``max_side`` (a hole too
  large for that keeps its margin of context and its box is resized down for the network, the result back up).
- ``resize``: the whole image scaled down so its longer side is at most ``max_side``, inpainted, scaled back up.
- ``full``: the whole padded frame at full resolution.

Each fill's colour is then matched to the hole's border (``match_border``, madf.inpaint.seams). In every case only
hole pixels are pasted back: known pixels stay bit-exact. A piece scaled down is made from its
known pixels only (``downscale_known``), so nothing under the hole reaches the fill.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

from madf.common.errors import InputError
from madf.inpaint import imaging

log = logging.getLogger("madf")

STRATEGIES = ("auto", "full", "crop", "resize")
CELL = 8   # the hole's connected regions are found on a grid of CELL x CELL blocks (fast on 12-megapixel masks)
# The thickest hole ``auto`` hands the network, as a fraction of its training size. The procedural training masks'
# thickest region per mask at 256 px: median 22-62 px by hole-ratio bucket, 90th percentile 52-75 px (1/4 of 256).
REACH = 0.25
DEFAULT_TRAIN_SIZE = 256   # the official checkpoints' (and a config without one)
MERGE_RATIO = 1.25   # overlapping boxes whose working scales are this close share one network call
EDT_SIDE = 1024   # a region's thickness is measured on at most this many pixels a side (a coarse grid beyond)

Box = Tuple[int, int, int, int]   # top, left, bottom, right (exclusive)


@dataclasses.dataclass(frozen=True)
class Strategy:
    name: str = "auto"
    trigger: int = 800      # auto: crop when the longer side is above this, else full
    margin: int = 128       # context kept around each hole region
    max_side: int = 1024    # the largest crop (or resized frame) the network sees
    train_size: Optional[int] = None   # auto: the model's training size (None: the Inpainter reads the model's)
    reach: float = REACH    # auto: the thickest hole filled, as a fraction of train_size
    match_border: bool = True   # shift each fill's colour to meet its border (madf.inpaint.seams)

    def __post_init__(self):
        if self.name not in STRATEGIES:
            raise InputError(f"strategy {self.name!r}: choose one of {', '.join(STRATEGIES)}")
        if self.trigger < 1 or self.margin < 0 or self.max_side < 1 or not self.reach > 0 \
                or (self.train_size is not None and self.train_size < 1):
            raise InputError(f"strategy settings must be positive: trigger {self.trigger}, margin {self.margin}, "
                             f"max side {self.max_side}, train size {self.train_size}, reach {self.reach}")

    @property
    def thickest(self) -> float:
        """The thickest hole (pixels) the network fills at full resolution under ``auto``."""
        return (self.train_size or DEFAULT_TRAIN_SIZE) * self.reach

    def resolve(self, height: int, width: int) -> str:
        if self.name != "auto":
            return self.name
        return "crop" if max(height, width) > self.trigger else "full"


def _round_up(size: int, multiple: int, limit: int) -> int:
    return min(-(-size // multiple) * multiple, limit)


def _side(extent: int, margin: int, multiple: int, length: int, cap: int) -> int:
    """A box side for a hole ``extent`` long: the hole plus ``margin`` each way, rounded to the multiple, within the
    cap while the cap still leaves half the margin each way; past that the hole keeps its whole margin and the box
    is resized down for the network (a box of hole alone would have no known pixel to fill from)."""
    want = _round_up(extent + 2 * margin, multiple, length)
    if want <= cap:
        return want
    return cap if extent + margin <= cap else want


def _place(start: int, end: int, size: int, length: int) -> Tuple[int, int]:
    """A window of ``size`` centred on [start, end), shifted inward to lie within [0, length)."""
    size = min(size, length)
    begin = (start + end - size) // 2
    begin = min(max(begin, 0), length - size)
    return begin, begin + size


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _pool_any(mask: np.ndarray, step: int) -> np.ndarray:
    """``mask`` on a grid of ``step`` x ``step`` cells: a cell is set if any pixel in it is (edges padded)."""
    h, w = mask.shape
    gh, gw = -(-h // step), -(-w // step)
    grid = np.zeros((gh * step, gw * step), bool)
    grid[:h, :w] = mask
    return grid.reshape(gh, step, gw, step).any(axis=(1, 3))


def regions(hole: np.ndarray) -> Tuple[np.ndarray, List[Box]]:
    """The hole's 8-connected regions, found on the CELL grid (strokes a few pixels apart join): the grid's labels
    (region i + 1; 0 where no hole) and each region's tight box in pixels."""
    h, w = hole.shape
    grid = _pool_any(hole, CELL)
    # 8-connected regions by scipy's labelling (linear time, whatever the shape: a serpentine is one region)
    labels, _ = ndimage.label(grid, structure=np.ones((3, 3), bool))
    boxes = [_tight(hole, (ys.start * CELL, xs.start * CELL, min(h, ys.stop * CELL), min(w, xs.stop * CELL)))
             for ys, xs in ndimage.find_objects(labels)]
    return labels, boxes


def owned(hole: np.ndarray, labels: np.ndarray, box: Box, ids: Sequence[int]) -> np.ndarray:
    """The hole pixels inside ``box`` that belong to regions ``ids`` (a box may hold other regions' pixels)."""
    top, left, bottom, right = box
    cells = labels[top // CELL:-(-bottom // CELL), left // CELL:-(-right // CELL)]
    mine = np.isin(cells, np.asarray(ids) + 1)
    mine = mine.repeat(CELL, 0).repeat(CELL, 1)
    oy, ox = top - top // CELL * CELL, left - left // CELL * CELL
    return hole[top:bottom, left:right] & mine[oy:oy + bottom - top, ox:ox + right - left]


def thickness(hole: np.ndarray, box: Box) -> float:
    """Twice the largest distance from a hole pixel in ``box`` to a known pixel (the box's outside counts as
    known): the diameter of the widest disc the hole holds. Measured on a grid of at most EDT_SIDE a side."""
    top, left, bottom, right = box
    crop = hole[top:bottom, left:right]
    step = max(1, -(-max(crop.shape) // EDT_SIDE))
    if step > 1:   # thin strokes come out at least one cell thick
        crop = _pool_any(crop, step)
    return 2.0 * step * float(ndimage.distance_transform_edt(np.pad(crop, 1)).max())


def crop_boxes(hole: np.ndarray, multiple: int, margin: int = 128, max_side: int = 1024) -> List[Box]:
    """The boxes the crop strategy runs: every hole pixel in exactly one box, boxes disjoint."""
    return [box for box, _, _ in plan_boxes(hole, multiple, margin, max_side)]


def plan_boxes(hole: np.ndarray, multiple: int, margin: int = 128, max_side: int = 1024,
               thickest: Optional[float] = None, found=None) -> List[Tuple[Box, float, List[int]]]:
    """(box, working scale, the regions it fills) for every region of the hole; each region in exactly one box.

    Without ``thickest`` every scale is 1 (the crop strategy) and the boxes are disjoint. With it a region thicker
    than ``thickest`` pixels is worked at ``thickest / thickness``; ``margin`` and ``max_side`` are in working
    pixels, so the box keeps as much context around a scaled-down hole as around a small one. Boxes that overlap
    merge when their scales are within MERGE_RATIO (at the smaller); a thin stroke beside a large blob keeps its
    own box at full resolution, overlapping the blob's, and each box fills only its own regions.
    """
    h, w = hole.shape
    labels, tight = found if found is not None else regions(hole)
    if thickest is None:
        scales = [1.0] * len(tight)
    else:
        scales = [min(1.0, thickest / max(thickness(owned(hole, labels, b, [i]), (0, 0) + _size(b)), 1.0))
                  for i, b in enumerate(tight)]
    groups = [([i], scales[i]) for i in range(len(tight))]
    cap = max(multiple, max_side // multiple * multiple)
    while True:   # grow, round, shift inward; merge what overlaps at a like scale, until nothing merges
        grown = []
        for ids, scale in groups:
            top, left = min(tight[i][0] for i in ids), min(tight[i][1] for i in ids)
            bottom, right = max(tight[i][2] for i in ids), max(tight[i][3] for i in ids)
            limit = cap if scale == 1 else max(cap, int(max_side / scale))
            native_margin = int(round(margin / scale))
            height = _side(bottom - top, native_margin, multiple, h, limit)
            width = _side(right - left, native_margin, multiple, w, limit)
            y0, y1 = _place(top, bottom, height, h)
            x0, x1 = _place(left, right, width, w)
            grown.append(((y0, x0, y1, x1), scale, ids))
        out: List[Tuple[Box, float, List[int]]] = []
        merged = False
        for box, scale, ids in grown:
            for k, (other, other_scale, other_ids) in enumerate(out):
                if _overlap(box, other) and max(scale, other_scale) <= MERGE_RATIO * min(scale, other_scale):
                    out[k] = ((min(box[0], other[0]), min(box[1], other[1]), max(box[2], other[2]),
                               max(box[3], other[3])), min(scale, other_scale), sorted(other_ids + ids))
                    merged = True
                    break
            else:
                out.append((box, scale, ids))
        if not merged:
            return sorted(out)
        groups = [(ids, scale) for _, scale, ids in out]   # merged groups grow again from their regions' extent


def _size(box: Box) -> Tuple[int, int]:
    return box[2] - box[0], box[3] - box[1]


def _tight(hole: np.ndarray, box: Box) -> Box:
    """The bounding box of the hole pixels inside ``box``."""
    top, left, bottom, right = box
    ys, xs = np.nonzero(hole[top:bottom, left:right])
    return top + int(ys.min()), left + int(xs.min()), top + int(ys.max()) + 1, left + int(xs.max()) + 1


def scale_for(height: int, width: int, max_side: int) -> float:
    """The factor that brings the longer side down to ``max_side`` (1 when it already fits)."""
    return min(1.0, max_side / max(height, width))


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))


def downscale_known(rgb: np.ndarray, hole: np.ndarray, height: int, width: int) -> np.ndarray:
    """``rgb`` scaled down from its known pixels only: each output pixel is the area average of the known pixels
    under it (what lies under the hole must not reach the fill; a plain resize mixes it into the hole's border)."""
    known = (~hole).astype(np.float32)

    def area(channel: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(channel, mode="F").resize((width, height), Image.BOX))

    weight = area(known)
    out = np.stack([area(rgb[..., c].astype(np.float32) * known) for c in range(rgb.shape[-1])], axis=-1)
    out = out / np.maximum(weight, 1e-6)[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_hole(hole: np.ndarray, height: int, width: int) -> np.ndarray:
    """Downscaled, a pixel is a hole if any hole pixel fell into it (no hole shrinks away); upscaled, nearest."""
    if height * width >= hole.size:
        return imaging.resize_mask(hole, height, width)
    return np.asarray(Image.fromarray(hole.astype(np.uint8) * 255).resize((width, height), Image.BOX)) > 0


@dataclasses.dataclass
class Piece:
    """One network input cut from an image: where it came from, how it was scaled, and which hole pixels of the
    box it fills (``own``; other regions' pixels in the box are hole to the network but another piece's to fill)."""
    image: int
    box: Box
    rgb: np.ndarray
    hole: np.ndarray
    scaled: Optional[Tuple[int, int]] = None   # the (height, width) it was resized from, if it was
    own: Optional[np.ndarray] = None           # None: every hole pixel of the box


Plan = List[Tuple[Box, float, Optional[List[int]]]]


def plan(hole: np.ndarray, strategy: Strategy, multiple: int) -> Tuple[str, Plan, Optional[np.ndarray]]:
    """(mode, [(box, working scale, regions)], region labels) for one image: what ``pieces`` cuts. ``auto`` runs a
    small photo whole when every region fits the network's reach, and scale-aware crops otherwise."""
    h, w = hole.shape
    mode = strategy.resolve(h, w)
    whole: Plan = [((0, 0, h, w), 1.0, None)]
    if mode in ("full", "resize") and strategy.name != "auto":
        return mode, whole, None
    found = regions(hole)
    boxes = plan_boxes(hole, multiple, strategy.margin, strategy.max_side,
                       strategy.thickest if strategy.name == "auto" else None, found=found)
    if mode == "full" and all(scale == 1 for _, scale, _ in boxes):
        return "full", whole, None
    return mode if strategy.name != "auto" else "auto", boxes, found[0]


def describe_plan(mode: str, boxes: Plan) -> str:
    """One line for the verbose log: each box, its size and the scale it is filled at."""
    if mode == "full":
        return "full frame"
    return f"{mode}: " + ", ".join(f"{b[3] - b[1]}x{b[2] - b[0]} at ({b[1]},{b[0]})"
                                   + (f" scaled {scale:.2f}" if scale < 1 else "") for b, scale, _ in boxes)


def pieces(index: int, rgb: np.ndarray, hole: np.ndarray, strategy: Strategy, multiple: int,
           name: Optional[str] = None) -> List[Piece]:
    """The network inputs one image needs under ``strategy``."""
    h, w = hole.shape
    mode, boxes, labels = plan(hole, strategy, multiple)
    if name is not None:
        log.debug("%s: %s", name, describe_plan(mode, boxes))
    if mode == "full":
        return [Piece(index, (0, 0, h, w), rgb, hole)]
    out = []
    for box, scale, ids in boxes:
        top, left, bottom, right = box
        crop_rgb, crop_hole = rgb[top:bottom, left:right], hole[top:bottom, left:right]
        own = owned(hole, labels, box, ids) if labels is not None else None
        if own is not None and np.array_equal(own, crop_hole):
            own = None
        factor = min(scale, scale_for(bottom - top, right - left, strategy.max_side))
        if factor < 1:
            sh, sw = max(1, round((bottom - top) * factor)), max(1, round((right - left) * factor))
            out.append(Piece(index, box, downscale_known(crop_rgb, crop_hole, sh, sw), resize_hole(crop_hole, sh, sw),
                             scaled=(bottom - top, right - left), own=own))
        else:
            out.append(Piece(index, box, crop_rgb, crop_hole, own=own))
    return out


def paste(result: np.ndarray, piece: Piece, filled: np.ndarray, hole: np.ndarray) -> None:
    """Write the piece's filled pixels into ``result`` where the image's hole is (known pixels untouched)."""
    top, left, bottom, right = piece.box
    if piece.scaled is not None:
        filled = resize_rgb(filled, *piece.scaled)
    region = hole[top:bottom, left:right] if piece.own is None else piece.own
    result[top:bottom, left:right][region] = filled[region]
