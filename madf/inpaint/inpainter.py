"""The image-level API: load a model once, inpaint numpy arrays or PIL images of any size.

``Inpainter`` does what every backend shares (mask polarity, reflect-padding to the network's multiple, batching,
cropping back, compositing at 8 bits so known pixels stay bit-exact); a backend only maps the contract tensors
(``madf.model.pipeline``) ``image (N,3,H,W) [0,1], mask (N,1,H,W) 1 = hole -> inpainted (N,3,H,W)`` as float32 numpy.
``TorchBackend`` is the PyTorch one; ONNX Runtime and TensorRT backends plug in the same way. A backend of a uint8
file (``io == "uint8"``, madf/runtime/uint8.py) pads, crops and composites in its graph: it gets the pieces as they
are, batched where their sizes agree, through ``run_uint8``.

    from madf import Inpainter
    inpainter = Inpainter.from_checkpoint("places2.pth", device="cuda")
    result = inpainter(image, mask)          # PIL in -> PIL out, uint8 array in -> uint8 array out
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from madf.common.errors import ModelError, check_finite
from madf.inpaint import imaging
from madf.inpaint.backend import BackendBase, check_backend
from madf.inpaint.seams import match_border
from madf.inpaint.strategy import DEFAULT_TRAIN_SIZE, Strategy, paste, pieces

log = logging.getLogger("madf")

ImageLike = Union[np.ndarray, Image.Image]


class Inpainter:
    """``strategy`` (madf.inpaint.strategy.Strategy): where the network looks; by default the whole frame up to
    800 px and
    crops around the holes beyond (or beyond the backend's largest size, an engine's profile)."""

    def __init__(self, backend, batch_size: int = 1, strategy: Optional[Strategy] = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_backend(backend)
        self.backend = backend
        self.batch_size = batch_size
        self.strategy = strategy or Strategy()
        if self.strategy.train_size is None:
            self.strategy = dataclasses.replace(self.strategy, train_size=train_size(backend))
        limit = backend.max_side   # an engine's profile bounds what one call can take
        if limit:
            limit = limit // backend.multiple * backend.multiple
            if limit < self.strategy.max_side:
                self.strategy = dataclasses.replace(self.strategy, max_side=limit,
                                                    trigger=min(self.strategy.trigger, limit))

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", batch_size: int = 1, dynamic_filter: str = "rewrite",
                        strategy: Optional[Strategy] = None, **options):
        """``options``: madf.model.acceleration.TorchOptions fields (precision, channels_last, cuda_graph, compile)."""
        from madf.model.checkpoint import load_checkpoint
        net = load_checkpoint(path, dynamic_filter=dynamic_filter)
        return cls(TorchBackend(net, device=device, **options), batch_size=batch_size, strategy=strategy)

    @classmethod
    def from_onnx(cls, path, device: str = "cpu", threads: Optional[int] = None, batch_size: int = 1,
                  strategy: Optional[Strategy] = None):
        """An ONNX file from madf-export on ONNX Runtime (``device``: cpu, cuda or tensorrt; no torch needed)."""
        from madf.backends.spec import BackendSpec, open_inpainter
        return open_inpainter(BackendSpec(path, backend="onnxruntime", device=device, threads=threads),
                              batch_size=batch_size, strategy=strategy)

    @classmethod
    def from_engine(cls, path, plugin_libs: Sequence = (), device: str = "cuda:0", cuda_graph: bool = False,
                    batch_size: int = 1, strategy: Optional[Strategy] = None):
        """A TensorRT plan from madf-build (with its sidecar; ``plugin_libs`` for plugin-lowered plans)."""
        from madf.backends.spec import BackendSpec, open_inpainter
        return open_inpainter(BackendSpec(path, backend="tensorrt", device=device, plugin_libs=tuple(plugin_libs),
                                          cuda_graph=cuda_graph), batch_size=batch_size, strategy=strategy)

    @property
    def multiple(self) -> int:
        return self.backend.multiple

    def __call__(self, image: ImageLike, mask: ImageLike, invert_mask: bool = False) -> ImageLike:
        return self.inpaint(image, mask, invert_mask)

    def inpaint(self, image: ImageLike, mask: ImageLike, invert_mask: bool = False, name: str = "image") -> ImageLike:
        """One image; returns the same kind it was given (PIL image or uint8 array)."""
        (result,) = self.inpaint_many([(image, mask)], invert_mask=invert_mask, names=[name])
        return Image.fromarray(result) if isinstance(image, Image.Image) else result

    def inpaint_many(self, pairs: Iterable[Tuple[ImageLike, ImageLike]], invert_mask: bool = False,
                     names: Optional[Sequence[str]] = None) -> Iterator[np.ndarray]:
        """Yield uint8 (H, W, 3) results in order. The pieces the network sees (whole frames, crops or resized
        frames) of all the pairs given are batched where their padded sizes agree; pass long sequences in chunks."""
        items: List[Tuple[np.ndarray, np.ndarray]] = []
        for i, (image, mask) in enumerate(pairs):
            name = names[i] if names is not None else f"image {i}"
            rgb = imaging.to_rgb_array(image)
            hole = imaging.to_hole_mask(mask, invert=invert_mask)
            imaging.check_pair(rgb, hole, name)
            if not hole.any():
                log.warning("%s: the mask has no hole pixels; nothing to fill, copying the image through%s", name,
                            "" if invert_mask else " (white = hole; invert the mask for white = known masks)")
            items.append((rgb, hole))
        todo = [piece for i, (rgb, hole) in enumerate(items) if hole.any()
                for piece in pieces(i, rgb, hole, self._strategy_for(rgb), self.multiple,
                                    name=names[i] if names is not None else f"image {i}")]
        todo.sort(key=lambda p: self._batch_key(p.rgb))   # same padded size next to each other: one batch
        results = [rgb.copy() for rgb, _ in items]
        start = 0
        while start < len(todo):
            size = self._batch_key(todo[start].rgb)
            stop = start + 1
            while stop < len(todo) and stop - start < self.batch_size and self._batch_key(todo[stop].rgb) == size:
                stop += 1
            for piece, filled in zip(todo[start:stop], self._run(todo[start:stop])):
                if self.strategy.match_border:
                    filled = match_border(filled, piece.rgb, piece.hole)
                paste(results[piece.image], piece, filled, items[piece.image][1])
            start = stop
        for result, (rgb, hole) in zip(results, items):
            imaging.grey_fill(result, rgb, hole)
        yield from results

    def _strategy_for(self, rgb: np.ndarray) -> Strategy:
        """Full frames that would not fit the backend's largest size are cropped instead."""
        limit = self.backend.max_side
        if limit and self.strategy.name == "full" and max(self._padded(rgb)) > limit:
            return dataclasses.replace(self.strategy, name="crop")
        return self.strategy

    def _padded(self, rgb: np.ndarray) -> Tuple[int, int]:
        return imaging.padded_size(rgb.shape[0], rgb.shape[1], self.multiple)

    def _batch_key(self, rgb: np.ndarray) -> Tuple[int, int]:
        """Pieces that can share a call: one padded size (float files), one size (uint8 files pad in the graph)."""
        return tuple(rgb.shape[:2]) if self._uint8 else self._padded(rgb)

    @property
    def _uint8(self) -> bool:
        return self.backend.io == "uint8"

    def _run(self, batch) -> List[np.ndarray]:
        if self._uint8:
            out = self.backend.run_uint8(np.stack([p.rgb for p in batch]), np.stack([p.hole for p in batch]))
            return list(out)
        image_t, mask_t = imaging.to_contract([p.rgb for p in batch], [p.hole for p in batch], self.multiple)
        out = np.asarray(self.backend(image_t, mask_t))
        check_finite({"output": out}, f"{self.backend.describe()}", ModelError,
                     fix="its weights are damaged or an FP16 engine overflowed; try the FP32 model")
        return [imaging.to_uint8(out[j, :, :p.hole.shape[0], :p.hole.shape[1]].transpose(1, 2, 0))
                for j, p in enumerate(batch)]


def train_size(backend) -> int:
    """The size the backend's model was trained at (ModelConfig.train_size; its default for files without one)."""
    config = backend.config
    if isinstance(config, dict):
        return int(config.get("train_size", DEFAULT_TRAIN_SIZE))
    return int(getattr(config, "train_size", DEFAULT_TRAIN_SIZE))


class TorchBackend(BackendBase):
    """The contract on a MADFNet in PyTorch (CPU or CUDA), with the fast-inference options of
    madf.model.acceleration.TorchOptions (precision, channels_last, CUDA graphs, torch.compile; defaults per device)."""

    def __init__(self, net, device: str = "cpu", options=None, **option_values):
        from madf.common.device import torch_device
        from madf.model.acceleration import TorchOptions, prepare
        from madf.model.pipeline import InpaintModel
        self.device = torch_device(device)
        self.options = (options or TorchOptions(**option_values)).resolve(self.device)
        self.run, self.model = prepare(InpaintModel(net), self.device, self.options)
        self.multiple = net.config.multiple
        self.last_gpu_ms: Optional[float] = None

    @property
    def config(self):
        return self.model.config

    @property
    def precision(self) -> str:
        return self.options.precision

    def describe(self) -> str:
        return (f"PyTorch, {self.model.config.describe()}, {self.device}, {self.options.describe()}, "
                f"{self.model.net.dynamic_filter} filter")

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        from madf.model.acceleration import precision_context
        cuda = self.device.type == "cuda"
        with torch.inference_mode(), precision_context(self.options, self.device):
            image_t, mask_t = torch.from_numpy(image).to(self.device), torch.from_numpy(mask).to(self.device)
            if self.options.channels_last:
                image_t = image_t.contiguous(memory_format=torch.channels_last)
                mask_t = mask_t.contiguous(memory_format=torch.channels_last)
            if cuda:   # CUDA events around the network alone, as madf-bench reports GPU compute apart from copies
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
            out = self.run(image_t, mask_t)
            if cuda:
                end.record()
            out = out.float().contiguous().cpu().numpy()
        self.last_gpu_ms = start.elapsed_time(end) if cuda else None
        return out

    def gpu_memory_mb(self) -> Optional[float]:
        """Peak memory torch's CUDA allocator handed out on this device (None on CPU)."""
        if self.device.type != "cuda":
            return None
        import torch
        return torch.cuda.max_memory_allocated(self.device) / 2**20
