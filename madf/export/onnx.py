"""ONNX export of the image-level contract (madf.model.pipeline.InpaintModel) with torch's dynamo exporter.

    image (N,3,H,W) float32 [0,1], mask (N,1,H,W) float32 1 = hole  ->  inpainted (N,3,H,W) float32 [0,1]

Lowerings of the dynamic filter:
    native  the exact rewrite: Conv + Mul + ReduceSum, standard ops only (ONNX Runtime, TensorRT without plugin)
    plugin  one madf::MADFDynamicFilter node per level (madf/export/symbolic.py), for the TensorRT plugin

``fp16`` exports a half-precision network inside an FP32 shell: I/O, normalization, masking, compositing and
clamping stay FP32 (TensorRT 11 builds strongly typed networks, so an FP16 engine needs an FP16 graph).

``io="uint8"`` wraps the finished graph in the uint8 shell (madf/export/uint8_io.py): raw photos of any size in,
the composite out, padding and cropping inside the graph.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import re
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import onnx
import torch

import madf
from madf.common.atomic import atomic_path
from madf.common.errors import MADFError
from madf.export.onnx_file import IO_KINDS, PLUGIN_LEVELS_KEY, lowering_of, stamp
from madf.export.uint8_io import uint8_metadata, wrap_uint8
from madf.model import fused_table
from madf.model.network import MADFNet
from madf.model.pipeline import InpaintModel
from madf.model.precision import cast_network

log = logging.getLogger("madf")

# what madf-export --dynconv asks for; "auto": the plugin at the levels where the fused kernel wins on --target
# (madf.model.fused_table), standard ops elsewhere. The file records what it became (onnx_file.LOWERINGS).
DYNCONV_CHOICES = ("native", "plugin", "auto")
DEFAULT_OPSET = 18
MIN_OPSET = 17   # torch's exporter writes 18 and converts to others, down to 17 and up to what onnx knows
INPUT_NAMES = ("image", "mask")
OUTPUT_NAME = "inpainted"
RAW_OUTPUT_NAMES = ("recovery", "refined_1", "refined_2")
# Upper bounds of the dynamic axes (TensorRT profiles and torch.export both want finite ones).
MAX_BATCH, MAX_SIDE = 256, 8192


class ExportError(MADFError):
    """The model cannot be exported as asked."""


@dataclasses.dataclass
class ExportOptions:
    lowering: str = "native"         # one of DYNCONV_CHOICES
    target: Optional[str] = None     # auto: the GPU architecture the engine will run on ('sm_90')
    fp16: bool = False
    batch: Optional[int] = None      # None = dynamic
    height: Optional[int] = None
    width: Optional[int] = None
    raw_outputs: bool = False
    opset: int = DEFAULT_OPSET
    simplify: bool = False
    io: str = "float"                # "uint8": raw photos in, the composite out (any H, W)
    invert_mask: bool = False        # uint8 only: mask < 128 = hole (white = keep)

    def validate(self, multiple: int) -> None:
        if self.lowering not in DYNCONV_CHOICES:
            raise ExportError(f"unknown lowering {self.lowering!r}; choose one of {', '.join(DYNCONV_CHOICES)}")
        if self.lowering == "auto" and not self.target:
            raise ExportError("--dynconv auto needs the GPU the engine will run on: --target sm_XY (measured: "
                              f"{', '.join(fused_table.architectures())}; another gets standard ops everywhere)")
        if self.target and not re.fullmatch(r"sm_\d{2,3}", self.target):
            raise ExportError(f"--target {self.target!r}: give a compute capability as sm_XY, e.g. sm_90")
        if self.io not in IO_KINDS:
            raise ExportError(f"unknown --io {self.io!r}; choose one of {', '.join(IO_KINDS)}")
        if self.io == "uint8" and self.raw_outputs:
            raise ExportError("--io uint8 returns the composite photo; --raw-outputs needs --io float")
        if self.invert_mask and self.io != "uint8":
            raise ExportError("--invert-mask is a property of --io uint8 files; float files take mask 1 = hole")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ExportError(f"--{name} {value} must be positive")
            if value is not None and self.io == "float" and value % multiple:
                raise ExportError(f"--{name} {value} is not a positive multiple of {multiple} (2^levels); the "
                                  f"runtime pads images, so pick the padded size")
        if self.batch is not None and self.batch <= 0:
            raise ExportError(f"--batch {self.batch} must be positive")
        newest = onnx.defs.onnx_opset_version()
        if not MIN_OPSET <= self.opset <= newest:   # before the export, not after minutes and onnxscript's trace
            raise ExportError(f"--opset {self.opset}: choose {MIN_OPSET}-{newest} (the installed onnx "
                              f"{onnx.__version__} knows opsets up to {newest})")


def output_names(net: MADFNet, raw: bool):
    return list(RAW_OUTPUT_NAMES[: net.config.refinement_decoders + 1]) if raw else [OUTPUT_NAME]


def plugin_levels(net: MADFNet, options: ExportOptions) -> List[int]:
    """The levels whose dynamic filter becomes the MADFDynamicFilter custom op."""
    if options.lowering == "plugin":
        return list(range(1, net.config.levels + 1))
    if options.lowering == "auto":
        return fused_table.fused_levels(net.config, options.target)
    return []


def prepare(net: MADFNet, options: ExportOptions) -> InpaintModel:
    """A private copy of the network set up for the lowering and precision, wrapped in the contract."""
    net = copy.deepcopy(net).float().eval()
    levels = plugin_levels(net, options)
    net.dynamic_filter = "rewrite"
    net.freeze_dynamic_filters()
    if levels:
        from madf.export import (
            symbolic,  # registers the custom op and its implementation
        )
        net.level_filters = {level: symbolic.IMPL for level in levels}
    if options.fp16:
        # normalization statistics folded in FP32 first; a tensor that cannot be FP16 is refused, never inf
        net = cast_network(net, torch.float16)
    return InpaintModel(net, raw_outputs=options.raw_outputs).eval()


def _padded(size: Optional[int], multiple: int) -> Optional[int]:
    return None if size is None else -(-size // multiple) * multiple


def _dynamic_shapes(options: ExportOptions, multiple: int):
    Dim = torch.export.Dim
    axes = {}
    if options.batch is None:
        axes[0] = Dim("batch", min=1, max=MAX_BATCH)
    if options.height is None:
        axes[2] = multiple * Dim("height_blocks", min=1, max=MAX_SIDE // multiple)
    if options.width is None:
        axes[3] = multiple * Dim("width_blocks", min=1, max=MAX_SIDE // multiple)
    return {"image": dict(axes), "mask": dict(axes)}


def _name_dynamic_axes(model: onnx.ModelProto) -> None:
    """Give every symbolic axis of the graph's inputs and outputs the contract's name (batch, height, width)."""
    names = {0: "batch", 2: "height", 3: "width"}
    for value in list(model.graph.input) + list(model.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_param") and axis in names:
                dim.dim_param = names[axis]


def metadata(net: MADFNet, options: ExportOptions) -> Dict[str, str]:
    meta = {
        "madf.version": madf.__version__,
        "madf.config": net.config.to_json(),
        "madf.multiple": str(net.config.multiple),
        "madf.lowering": lowering_of(net.config.levels, plugin_levels(net, options)),
        PLUGIN_LEVELS_KEY: ",".join(map(str, plugin_levels(net, options))),
        "madf.precision": "fp16" if options.fp16 else "fp32",
        "madf.opset": str(options.opset),
        "madf.raw_outputs": str(int(options.raw_outputs)),
        "madf.io": "float",
        "madf.mask": "hole",
        "madf.contract": "image (N,3,H,W) float32 RGB [0,1]; mask (N,1,H,W) float32 1=hole 0=keep -> "
                         "inpainted (N,3,H,W) float32 [0,1]; H, W multiples of madf.multiple",
    }
    info = getattr(net, "checkpoint_info", None)
    if info is not None:   # the file's own digest says it is intact, not that its source was: say what that was
        from madf.model.checkpoint import describe_digest
        meta["madf.source_weights"] = describe_digest(info)
    if options.io == "uint8":
        meta.update(uint8_metadata(options.invert_mask))
    return meta


def _simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        import onnxslim
    except ImportError:
        raise ExportError("--simplify needs onnxslim: pip install onnxslim") from None
    return onnxslim.slim(model)


@contextlib.contextmanager
def _quiet_torch_onnx():
    """torch's exporter logs one warning per missing torchvision op; none of them is ours."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_onnx(net: MADFNet, path, options: Optional[ExportOptions] = None,
                verify: Optional[Callable[[Path], None]] = None) -> onnx.ModelProto:
    """Export ``net`` behind the contract to ``path`` (written atomically) and return the checked model.
    ``verify(temp_file)`` runs on the finished file before it takes ``path``'s name: if it raises, nothing is left."""
    options = options or ExportOptions()
    multiple = net.config.multiple
    options.validate(multiple)
    model = prepare(net, options)
    n = options.batch or 1
    h = _padded(options.height, multiple) or 2 * multiple
    w = _padded(options.width, multiple) or 2 * multiple
    example = (torch.rand(n, 3, h, w), (torch.rand(n, 1, h, w) > 0.5).float())
    kwargs = {}
    if plugin_levels(net, options):
        from madf.export import symbolic
        kwargs["custom_translation_table"] = symbolic.onnx_translation()
    with torch.no_grad(), warnings.catch_warnings(), _quiet_torch_onnx():
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch-internal deprecations, not ours
        program = torch.onnx.export(model, example, dynamo=True, input_names=list(INPUT_NAMES),
                                    output_names=output_names(model.net, options.raw_outputs),
                                    dynamic_shapes=_dynamic_shapes(options, multiple),
                                    opset_version=options.opset, external_data=False, verbose=False, **kwargs)
    onnx_model = program.model_proto
    written = next((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != options.opset:   # the exporter falls back to an opset it knows, with only a warning
        raise ExportError(f"--opset {options.opset}: torch's ONNX exporter wrote opset {written} instead; choose "
                          f"--opset {written} or another it supports")
    if options.simplify:
        onnx_model = _simplify(onnx_model)
    _name_dynamic_axes(onnx_model)
    if options.io == "uint8":
        wrap_uint8(onnx_model, multiple, invert_mask=options.invert_mask, batch=options.batch,
                   height=options.height, width=options.width)
    del onnx_model.metadata_props[:]
    for key, value in metadata(model.net, options).items():
        onnx_model.metadata_props.add(key=key, value=value)
    stamp(onnx_model)   # the weights and graph digests
    onnx.checker.check_model(onnx_model, full_check=True)
    with atomic_path(path) as tmp:
        onnx.save_model(onnx_model, str(tmp))
        if verify is not None:
            verify(Path(tmp))
    levels = plugin_levels(net, options)
    log.info("wrote %s (%s, %s lowering%s, %s, %s I/O, opset %d, %.1f MB)", path, model.net.config.describe(),
             lowering_of(net.config.levels, levels), f" (plugin at levels {levels})" if levels else "",
             "fp16" if options.fp16 else "fp32", options.io, options.opset, Path(path).stat().st_size / 1e6)
    return onnx_model


def read_metadata(model: onnx.ModelProto) -> Dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


__all__ = ["ExportOptions", "ExportError", "export_onnx", "prepare", "metadata", "read_metadata", "DYNCONV_CHOICES"]
