"""The image-level API: load a model once, inpaint numpy arrays or PIL images of any size.

``Inpainter`` does what every backend shares (mask polarity, reflect-padding to the network's multiple, batching,
cropping back, compositing at 8 bits so known pixels stay bit-exact); a backend only maps the contract tensors
(``madf.pipeline``) ``image (N,3,H,W) [0,1], mask (N,1,H,W) 1 = hole -> inpainted (N,3,H,W)`` as float32 numpy.
``TorchBackend`` is the PyTorch one; ONNX Runtime and TensorRT backends plug in the same way.

    from madf import Inpainter
    inpainter = Inpainter.from_checkpoint("places2.pth", device="cuda")
    result = inpainter(image, mask)          # PIL in -> PIL out, uint8 array in -> uint8 array out
"""
from __future__ import annotations

import logging
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from . import imaging
from .errors import ModelError, check_finite

log = logging.getLogger("madf")

ImageLike = Union[np.ndarray, Image.Image]


class Inpainter:
    def __init__(self, backend, batch_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(cls, path, device: str = "cpu", batch_size: int = 1, dynamic_filter: str = "rewrite",
                        **options):
        """``options``: madf.acceleration.TorchOptions fields (precision, channels_last, cuda_graph, compile)."""
        from .checkpoint import load_checkpoint
        net = load_checkpoint(path, dynamic_filter=dynamic_filter)
        return cls(TorchBackend(net, device=device, **options), batch_size=batch_size)

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
        """Yield uint8 (H, W, 3) results in order; consecutive images of one padded size share a batch."""
        pending: List[Tuple[np.ndarray, np.ndarray]] = []
        for i, (image, mask) in enumerate(pairs):
            name = names[i] if names is not None else f"image {i}"
            rgb = imaging.to_rgb_array(image)
            hole = imaging.to_hole_mask(mask, invert=invert_mask)
            imaging.check_pair(rgb, hole, name)
            if pending and self._padded(pending[0][0]) != self._padded(rgb):
                yield from self._run(pending)
                pending = []
            pending.append((rgb, hole))
            if not hole.any():
                log.warning("%s: the mask has no hole pixels; nothing to fill, copying the image through%s", name,
                            "" if invert_mask else " (white = hole; use --invert-mask for white = known masks)")
            if len(pending) == self.batch_size:
                yield from self._run(pending)
                pending = []
        if pending:
            yield from self._run(pending)

    def _padded(self, rgb: np.ndarray) -> Tuple[int, int]:
        return imaging.padded_size(rgb.shape[0], rgb.shape[1], self.multiple)

    def _run(self, items: List[Tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        todo = [i for i, (_, hole) in enumerate(items) if hole.any()]
        filled = {}
        if todo:
            image_t, mask_t = imaging.to_contract([items[i][0] for i in todo], [items[i][1] for i in todo],
                                                  self.multiple)
            out = np.asarray(self.backend(image_t, mask_t))
            check_finite({"output": out}, f"{self.backend.describe()}", ModelError,
                         fix="its weights are damaged or an FP16 engine overflowed; try the FP32 model")
            for j, i in enumerate(todo):
                h, w = items[i][1].shape
                filled[i] = imaging.to_uint8(out[j, :, :h, :w].transpose(1, 2, 0))
        for i, (rgb, hole) in enumerate(items):
            yield imaging.composite(rgb, filled[i], hole) if i in filled else rgb.copy()


class TorchBackend:
    """The contract on a MADFNet in PyTorch (CPU or CUDA), with the fast-inference options of
    madf.acceleration.TorchOptions (precision, channels_last, CUDA graphs, torch.compile; defaults per device)."""

    def __init__(self, net, device: str = "cpu", options=None, **option_values):
        from .acceleration import TorchOptions, prepare
        from .device import torch_device
        from .pipeline import InpaintModel
        self.device = torch_device(device)
        self.options = (options or TorchOptions(**option_values)).resolve(self.device)
        self.run, self.model = prepare(InpaintModel(net), self.device, self.options)
        self.multiple = net.config.multiple
        self.metadata = {"madf.precision": self.options.precision}   # what madf-parity's tolerance follows
        self.last_gpu_ms: Optional[float] = None

    def describe(self) -> str:
        return (f"PyTorch, {self.model.config.describe()}, {self.device}, {self.options.describe()}, "
                f"{self.model.net.dynamic_filter} filter")

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        from .acceleration import precision_context
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
