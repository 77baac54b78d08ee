"""Training images from any folder tree, with deterministic augmentation and resumable order.

Every random choice is a function of (seed, epoch, index), not of a process-global RNG, so a resumed run (or a
DataLoader worker, or another DDP rank) sees exactly the crops, flips and masks an uninterrupted run would.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from madf.common.errors import InputError
from madf.data.masks import MaskFolder, random_training_mask
from madf.inpaint import imaging

log = logging.getLogger("madf")

# Decoded photos kept per dataset (per DataLoader worker): decoding a wallpaper-sized PNG takes ~8x longer than the
# crop and mask together, and small photo sets are read thousands of times. Past the budget, files are decoded
# per read.
CACHE_BYTES = 1 << 30


def list_image_tree(root) -> List[Path]:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"image folder {root}: no such folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in imaging.IMAGE_EXTENSIONS)
    if not paths:
        raise InputError(f"image folder {root}: no images ({', '.join(imaging.IMAGE_EXTENSIONS)}) in its tree")
    return paths


def random_resized_crop(img: Image.Image, size: int, rng: np.random.Generator,
                        scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    """torchvision's RandomResizedCrop (area fraction and aspect drawn, then resized to size x size)."""
    w, h = img.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = _log_uniform(rng, ratio)
        cw, ch = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(w - cw + 1)), int(rng.integers(h - ch + 1))
            return img.resize((size, size), Image.BICUBIC, box=(left, top, left + cw, top + ch))
    side = min(w, h)  # fall back to the central square
    left, top = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))


def random_zoomed_crop(img: Image.Image, size: int, rng: np.random.Generator, zoom) -> Image.Image:
    """A square crop ``z * size`` pixels wide (z log-uniform in ``zoom``, capped by the photo) resized to size:
    z = 1 keeps the photo's own pixels, larger z shrinks them, so a network learns every scale it will be run at
    (a crop of area 30-100% of a 4000 px photo is always a 10x downscale)."""
    w, h = img.size
    side = int(round(min(size * _log_uniform(rng, zoom), w, h)))
    left, top = int(rng.integers(w - side + 1)), int(rng.integers(h - side + 1))
    return img.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side))


def _log_uniform(rng: np.random.Generator, bounds) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


class InpaintingDataset(torch.utils.data.Dataset):
    """(image [0,1] (3,S,S), known mask (1,S,S) 1 = known) pairs, indexed by (epoch, index) keys (what
    ``ResumableSampler`` yields)."""

    def __init__(self, root, size: int, masks: Optional[MaskFolder] = None, seed: int = 0,
                 cache_bytes: int = CACHE_BYTES, zoom: Optional[Tuple[float, float]] = None):
        self.paths = list_image_tree(root)
        self.size, self.masks, self.seed, self.zoom = size, masks, seed, zoom
        self._warned = set()
        self._cache, self._cache_left = {}, cache_bytes

    def _read(self, path: Path) -> Image.Image:
        img = self._cache.get(path)
        if img is None:
            # the reader every tool shares: EXIF orientation, 16-bit scaled (not clipped to white), every mode
            img = Image.fromarray(imaging.to_rgb_array(imaging.open_image(path, "training image"),
                                                       f"training image {path}"))
            cost = img.width * img.height * 3
            if cost <= self._cache_left:
                self._cache[path], self._cache_left = img, self._cache_left - cost
        return img

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        return self.at(*key)

    def at(self, epoch: int, index: int):
        rng = np.random.default_rng((self.seed, epoch, index))
        for attempt in range(len(self.paths)):
            path = self.paths[(index + attempt) % len(self.paths)]
            try:
                img = self._read(path)
                break
            except (InputError, OSError, ValueError) as exc:
                if path not in self._warned:  # once per file, then silently use the next image
                    self._warned.add(path)
                    log.warning("skipping %s", exc if isinstance(exc, InputError) else
                                f"unreadable training image {path} ({exc.__class__.__name__})")
        else:
            raise InputError(f"no readable image among the {len(self.paths)} files of the training folder")
        img = (random_zoomed_crop(img, self.size, rng, self.zoom) if self.zoom else
               random_resized_crop(img, self.size, rng))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if self.masks is not None:
            hole = self.masks.sample(self.size, self.size, rng)
        else:
            hole = random_training_mask(self.size, self.size, rng)
        image = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1).contiguous()
        known = torch.from_numpy((~hole).astype(np.float32))[None]
        return image, known


class ResumableSampler(torch.utils.data.Sampler):
    """Batches of indices for global steps start_step, start_step+1, ...: epoch e is a seeded permutation; rank r of
    w takes every w-th batch slot. Resuming at step s yields exactly what an uninterrupted run yields from s on."""

    def __init__(self, dataset_len: int, batch_size: int, seed: int = 0, start_step: int = 0, rank: int = 0,
                 world: int = 1):
        self.n, self.batch, self.seed = dataset_len, batch_size, seed
        self.start_step, self.rank, self.world = start_step, rank, world

    def indices_for_step(self, step: int) -> List[tuple]:
        """(epoch, index) pairs of this rank's batch at ``step``."""
        out = []
        first = (step * self.world + self.rank) * self.batch
        for k in range(first, first + self.batch):
            epoch, pos = divmod(k, self.n)
            perm = np.random.default_rng((self.seed, epoch)).permutation(self.n)
            out.append((epoch, int(perm[pos])))
        return out

    def __iter__(self) -> Iterator[List[tuple]]:
        step = self.start_step
        while True:
            yield self.indices_for_step(step)
            step += 1

    def __len__(self):  # endless; DataLoader only needs this for its progress estimates
        return 2**62

