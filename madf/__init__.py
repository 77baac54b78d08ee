"""madf: the MADF inpainting model (mask-aware dynamic filtering, cascaded refinement) for training and deployment.

Public API (imported lazily, so ``import madf.inpaint.imaging`` needs neither torch nor onnx):

    ModelConfig, OFFICIAL, SMALL     model shape (madf.model.config)
    MADFNet, build_model             the network (madf.model.network)
    InpaintModel                     the image-level contract as an nn.Module (madf.model.pipeline)
    load_checkpoint, save_checkpoint  weights I/O (madf.model.checkpoint)
    CheckpointError, InputError, DeviceError   one-line user errors (madf.common.errors)
    Inpainter, TorchBackend          inpaint arrays or PIL images of any size (madf.inpaint.inpainter)
    Strategy                         full / crop / resize for large photos (madf.inpaint.strategy)

The packages, in the order data flows (a package imports only those before it; tests/test_layers.py checks):
common -> model -> inpaint, data -> training, export -> engines -> runtime -> serve -> cli.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ModelConfig": "model.config", "OFFICIAL": "model.config", "SMALL": "model.config",
    "MADFNet": "model.network", "build_model": "model.network",
    "InpaintModel": "model.pipeline",
    "load_checkpoint": "model.checkpoint", "save_checkpoint": "model.checkpoint",
    "CheckpointError": "common.errors", "InputError": "common.errors", "DeviceError": "common.errors",
    "Inpainter": "inpaint.inpainter", "TorchBackend": "inpaint.inpainter", "Strategy": "inpaint.strategy",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'madf' has no attribute {name!r}")
