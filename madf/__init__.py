"""madf: the MADF inpainting model (mask-aware dynamic filtering, cascaded refinement) for training and deployment.

Public API (imported lazily, so ``import madf.imaging`` needs neither torch nor onnx):

    ModelConfig, OFFICIAL, SMALL     model shape (madf.config)
    MADFNet, build_model             the network (madf.model)
    InpaintModel                     the image-level contract as an nn.Module (madf.pipeline)
    load_checkpoint, save_checkpoint  weights I/O (madf.checkpoint)
    CheckpointError, InputError, DeviceError   one-line user errors (madf.errors)
    Inpainter, TorchBackend          inpaint arrays or PIL images of any size (madf.inpaint)
    dynamic_filter                   the op and its implementations (madf.dynamic_filter)
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ModelConfig": "config", "OFFICIAL": "config", "SMALL": "config",
    "MADFNet": "model", "build_model": "model",
    "InpaintModel": "pipeline",
    "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "CheckpointError": "errors", "InputError": "errors", "DeviceError": "errors",
    "Inpainter": "inpaint", "TorchBackend": "inpaint",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'madf' has no attribute {name!r}")
