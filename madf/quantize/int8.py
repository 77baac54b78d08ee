"""INT8 and FP8 files: an exported FP32 ONNX file quantized to explicit Q/DQ form (the form TensorRT 10/11 and ONNX
Runtime both take) by ONNX Runtime's static quantizer, calibrated on real photos with masks from the paper's
hole-ratio buckets, and held to a quality gate before it takes its name.

FP8 (E4M3, for TensorRT on Ada, Hopper and newer) is the tensorrt form with float8 Q/DQ; ONNX Runtime calibrates
float8 only by the distribution of each tensor, and runs its Q/DQ on the CPU, so the gate holds it to FP32 too. E4M3
keeps 3 mantissa bits: about 30 dB of signal to noise per tensor whatever the scale, so a deep network's composite
lands near 30 dB, not 40: the gate for FP8 is the user's to set (``--quant-gate``).

Why ONNX Runtime's quantizer (not NVIDIA Model Optimizer's): the gate, the sensitivity pass and every CPU consumer run
on ONNX Runtime, and its debugging module (``qdq_loss_debug``) measures each tensor's quantization noise, which is
what the sensitivity pass ranks by. Its Q/DQ output is symmetric INT8 with per-channel weight scales (TensorRT's
explicit-quantization rules). Only Conv and ConvTranspose are quantized: the dynamic filter's Mul / ReduceSum and
the compositing stay in float, as the plugin lowering's custom op would.

The gate: on held-out photos (never the calibration ones) the composite of the INT8 file against the FP32 file's
must reach ``gate_db`` (default 40 dB) on every photo; the hole-only PSNR is reported beside it. A file that misses
it gets the layers whose quantization is noisiest kept in float, one at a time, until it passes; one that cannot pass
is never written, and the error names the layer and the option to loosen.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx

from madf.common.atomic import atomic_path
from madf.common.errors import InputError, MADFError
from madf.inpaint import imaging

log = logging.getLogger("madf")
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile", "distribution": "Distribution"}
QUANTIZED_OPS = ("Conv", "ConvTranspose")   # the layers the sensitivity pass ranks and may keep in float


@dataclasses.dataclass(frozen=True)
class Form:
    """Which ops get Q/DQ and how activations are quantized. Measured on ONNX Runtime (benchmarks/int8.py, docs/
    benchmarks.md, 2026-12-02, 2-core AVX2 CPU without VNNI, official-size network, 256x256, batch 1; FP32 414 ms):
    tensorrt 590 ms, 43.9 dB; onnxruntime 325 ms (1.27x), 42.2 dB."""
    ops: tuple
    activations: str        # QInt8, QUInt8 or QFLOAT8E4M3FN
    symmetric: bool
    int32_bias: bool        # ONNX Runtime's default; TensorRT's parser refuses an INT32 DequantizeLinear
    weights: str = "QInt8"
    precision: str = "int8"


FORMS = {
    # TensorRT's explicit quantization takes only symmetric INT8; ONNX Runtime runs it too, slower than FP32 on a CPU
    "tensorrt": Form(QUANTIZED_OPS, "QInt8", True, False),
    # ONNX Runtime's CPU fast path: UINT8 activations with zero points (u8s8 kernels), and the activations between
    # layers quantized too, so DQ -> Conv -> Q fuses into QLinearConv; TensorRT refuses UINT8 zero points
    "onnxruntime": Form(QUANTIZED_OPS + ("LeakyRelu", "Relu", "Concat", "Resize", "Add"), "QUInt8", False, True),
    # FP8 E4M3 for TensorRT (TensorRT-RTX builds it for SM 8.9: 34 of 38 convolution layers in FP8, test network)
    "fp8": Form(QUANTIZED_OPS, "QFLOAT8E4M3FN", True, False, weights="QFLOAT8E4M3FN", precision="fp8"),
}
FLOAT_METHODS = ("distribution",)   # what ONNX Runtime calibrates float8 with
GATE_DB = 40.0
MAX_KEPT_FLOAT = 12   # layers the sensitivity pass may keep in float before it gives up
CLEAN_DB = 120.0      # the SQNR of a tensor no quantization touched (the inputs)


class QuantizationError(MADFError, ValueError):
    """An INT8 or FP8 file could not be made (no calibration photos, a gate it cannot reach): one line, nothing
    written."""


@dataclasses.dataclass
class QuantOptions:
    method: Optional[str] = None           # one of METHODS (None: minmax, for FP8 distribution)
    form: str = "tensorrt"                 # one of FORMS: the runtime (or FP8) the file is made for
    calibration: Optional[Path] = None     # a folder of photos (default: the bundled photos)
    count: int = 8                         # calibration inputs
    held_out: int = 4                      # gate inputs (other photos than the calibration ones)
    size: int = 256                        # square side of every input (a multiple of the network's)
    gate_db: float = GATE_DB
    seed: int = 0

    @property
    def calibration_method(self) -> str:
        return self.method or (FLOAT_METHODS[0] if FORMS[self.form].precision == "fp8" else "minmax")

    def validate(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise InputError(f"--calib-method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.form not in FORMS:
            raise InputError(f"--int8-for {self.form!r}: choose one of {', '.join(FORMS)}")
        fp8 = FORMS[self.form].precision == "fp8"
        if fp8 != (self.calibration_method in FLOAT_METHODS):
            raise InputError(f"--calib-method {self.calibration_method}: ONNX Runtime calibrates "
                             + ("FP8 by distribution only; drop --calib-method" if fp8 else
                                "distribution for FP8 only; choose minmax, entropy or percentile"))
        if self.count < 1 or self.held_out < 1:
            raise InputError("--int8 needs at least one calibration and one held-out photo")


@dataclasses.dataclass
class GateResult:
    composite_db: List[float]   # per held-out photo: the INT8 composite against the FP32 one
    hole_db: List[float]        # the same in the hole only

    @property
    def worst(self) -> float:
        return min(self.composite_db)

    def passes(self, gate_db: float) -> bool:
        return self.worst >= gate_db


def _photos(options: QuantOptions) -> List[Path]:
    if options.calibration is None:
        from madf.data.photos import sample_photos
        return sample_photos()
    folder = Path(options.calibration)
    if not folder.is_dir():
        raise InputError(f"--calib {folder}: not a folder of photos")
    found = imaging.list_images(folder)
    if not found:
        raise InputError(f"--calib {folder}: no photos in it (.png, .jpg, .webp, .tif)")
    return found


def feeds(options: QuantOptions, multiple: int, io: str = "float", invert_mask: bool = False):
    """(calibration feeds, held-out feeds, the calibration set's SHA-256): the central squares of real photos
    resized to ``options.size``, each with a seeded mask from the next hole-ratio bucket, in the file's own I/O
    (float contract or uint8)."""
    from PIL import Image

    from madf.data.masks import BUCKETS, free_form_mask
    photos = _photos(options)
    need = options.count + options.held_out
    if len(photos) < need:
        raise InputError(f"--calib {options.calibration}: {len(photos)} photo(s); --int8 needs {need} "
                         f"({options.count} to calibrate, {options.held_out} to check against FP32)")
    size = options.size
    if size % multiple:
        raise InputError(f"--int8 calibration size {size} is not a multiple of the network's {multiple}")
    digest = hashlib.sha256()
    out = []
    for i, path in enumerate(photos[:need]):
        with Image.open(path) as img:
            if min(img.size) < multiple:
                raise InputError(f"{path}: {img.size[0]}x{img.size[1]} is smaller than the network's multiple "
                                 f"{multiple}; give photos of at least {multiple}x{multiple}")
            image = imaging.center_square(img, size)
        hole = free_form_mask(size, size, seed=options.seed + i, bucket=BUCKETS[i % len(BUCKETS)])
        if io == "uint8":
            rgb = imaging.to_rgb_array(image)
            white = hole.astype(bool) != invert_mask   # the file reads >= 128 as the hole, or as kept if inverted
            feed = {"image": rgb[None], "mask": (white * 255).astype(np.uint8)[None, ..., None]}
        else:
            image_t, mask_t = imaging.to_contract(image, hole, size)
            feed = {"image": image_t, "mask": mask_t}
        if i < options.count:
            for value in feed.values():
                digest.update(np.ascontiguousarray(value).tobytes())
        out.append(feed)
    return out[:options.count], out[options.count:], digest.hexdigest()


def _Reader(items: Sequence[Dict[str, np.ndarray]]):
    """ONNX Runtime's CalibrationDataReader over a list of feeds."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(list(items))

        def get_next(self):
            return next(self.items, None)

    return Reader()


def _options(precision: str):
    import onnxruntime as ort

    from madf.export.onnx_file import ort_graph_level
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ort_graph_level(precision))
    return options


def _session(path: Path, precision: str):
    import onnxruntime as ort
    return ort.InferenceSession(str(path), _options(precision), providers=["CPUExecutionProvider"])


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    if not a.size:   # no pixel to compare (a uint8 file that changed nothing)
        return float("inf")
    return imaging.compare(a / peak, b / peak)["psnr"]


def outputs(path: Path, feeds, precision: str = "fp32") -> List[np.ndarray]:
    """The file's output for each feed (run once for the FP32 reference, however many candidates are gated), run as
    madf's ONNX Runtime backend runs a file of that precision."""
    sess = _session(path, precision)
    return [sess.run(None, feed)[0] for feed in feeds]


def gate(fp32: Path, quantized: Path, held_out, io: str = "float",
         reference: Optional[List[np.ndarray]] = None, precision: str = "int8") -> GateResult:
    """Each held-out photo through both files (``reference``: the FP32 file's outputs, when already run); PSNR of
    the composites, and in the hole only."""
    reference = outputs(fp32, held_out) if reference is None else reference
    composite, hole_db = [], []
    for feed, outs in zip(held_out, zip(reference, outputs(quantized, held_out, precision))):
        if io == "uint8":   # the file composites and rounds itself; its mask input may be inverted
            hole = np.any(outs[0] != feed["image"], axis=-1) | np.any(outs[1] != feed["image"], axis=-1)
            pair, peak = outs, 255.0
            holes = [o[hole] for o in outs]
        else:
            m = feed["mask"]
            pair = [feed["image"] * (1 - m) + o * m for o in outs]
            peak = 1.0
            inside = np.broadcast_to(m >= 0.5, outs[0].shape)
            holes = [o[inside] for o in outs]
        composite.append(_psnr(pair[0], pair[1], peak))
        hole_db.append(_psnr(holes[0], holes[1], peak))
    return GateResult(composite, hole_db)


class _NoPreprocessHint(logging.Filter):
    """ONNX Runtime suggests its pre-processing on every call; its symbolic shape inference cannot finish on a
    graph with dynamic H and W, so the hint is noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def _quantize(fp32: Path, out: Path, calibration, method: str, exclude: Sequence[str], form: Form,
              cache: Path) -> None:
    """ONNX Runtime's static quantizer; ``cache`` keeps the calibrated ranges (ONNX Runtime's calibration cache):
    the float model's ranges do not change with the layers kept in float, and a plugin file, which ONNX Runtime
    cannot run, takes its native twin's."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    hint = _NoPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # its calibrators print their progress
            quantize_static(str(fp32), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ,
                            calibration_cache_path=str(cache),
                            per_channel=True, activation_type=getattr(QuantType, form.activations),
                            weight_type=getattr(QuantType, form.weights),
                            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
                            op_types_to_quantize=list(form.ops), nodes_to_exclude=list(exclude),
                            extra_options={"ActivationSymmetric": form.symmetric, "WeightSymmetric": True,
                                           "QuantizeBias": form.int32_bias})
    finally:
        logging.getLogger().removeFilter(hint)


def activations(path: Path, calibration, precision: str = "fp32") -> Dict[str, list]:
    """Every intermediate tensor of the file on the calibration inputs (ONNX Runtime's qdq_loss_debug)."""
    from onnxruntime.quantization import qdq_loss_debug as debug
    with tempfile.TemporaryDirectory(prefix="madf-int8-") as work:
        augmented = Path(work) / "augmented.onnx"
        debug.modify_model_output_intermediate_tensors(str(path), str(augmented))
        return debug.collect_activations(str(augmented), _Reader(calibration), session_options=_options(precision))


def noisiest_layers(fp32: Path, int8: Path, calibration, float_activations: Optional[Dict[str, list]] = None,
                    precision: str = "int8") -> List[str]:
    """Quantized layers, costliest first: how much each Conv lowers the signal-to-quantization-noise ratio of the
    INT8 model's activations against the float model's (``float_activations``, when already collected), from its
    input to its output (ONNX Runtime's qdq_loss_debug over the calibration inputs): the error a layer adds, not the
    error it inherits."""
    from onnxruntime.quantization import qdq_loss_debug as debug
    if float_activations is None:
        float_activations = activations(fp32, calibration)
    matching = debug.create_activation_matching(activations(int8, calibration, precision), float_activations)
    errors = debug.compute_activation_error(matching)
    sqnr = {tensor: min(float(err.get("xmodel_err", CLEAN_DB)), CLEAN_DB) for tensor, err in errors.items()}
    model = onnx.load(str(fp32), load_external_data=False)
    added = [(sqnr.get(node.input[0], CLEAN_DB) - sqnr.get(node.output[0], CLEAN_DB), node.name)
             for node in model.graph.node if node.op_type in QUANTIZED_OPS]
    return [name for _, name in sorted(added, reverse=True)]


def quantize_file(fp32: Path, output: Path, options: Optional[QuantOptions] = None, *, lowered: Optional[Path] = None,
                  on_progress=None) -> Dict[str, str]:
    """Quantize the exported FP32 file ``fp32`` into ``output`` (written atomically, only once it passes the gate);
    returns the metadata recorded in it.

    ``lowered``: the same network exported with the plugin (or mixed) lowering, whose MADFDynamicFilter op ONNX
    Runtime cannot run. ``fp32`` (its native twin) is calibrated and gated; ``lowered`` then gets Q/DQ around the
    same standard ops with the same ranges and the same layers in float, its custom op left in float (the op's
    contract: it equals the native lowering, tests/test_op_contract.py), and is what ``output`` holds."""
    from madf.export.onnx_file import stamp
    options = options or QuantOptions()
    options.validate()
    form, method = FORMS[options.form], options.calibration_method
    name = form.precision.upper()
    model = onnx.load(str(fp32), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("madf.precision", "fp32") != "fp32":
        raise InputError(f"{fp32}: an {meta['madf.precision']} file; {name} is quantized from FP32 (drop --fp16)")
    if "MADFDynamicFilter" in {n.op_type for n in model.graph.node}:
        raise InputError(f"{fp32}: the plugin lowering's custom op cannot run in ONNX Runtime's calibration; "
                         f"quantize its native twin and pass this file as lowered= (madf-export does)")
    io = meta.get("madf.io", "float")
    calibration, held_out, digest = feeds(options, int(meta.get("madf.multiple", "1")), io,
                                          meta.get("madf.mask") == "inverted")
    twins: Dict[str, Optional[str]] = {}
    if lowered is not None:   # checked, and matched to the native file, before any calibration
        lowered_model = onnx.load(str(lowered), load_external_data=False)
        lowered_meta = _lowered_meta(lowered, lowered_model, meta)
        twins = _twins(model, lowered_model)
    kept: List[str] = []
    # a lowered file's custom op is float: its native twin's own convolutions inside the dynamic filter stay float too
    fixed = [native for native, twin in twins.items() if twin is None]
    reference = outputs(fp32, held_out)   # the FP32 side of every gate and sensitivity pass, computed once
    float_activations = None
    with tempfile.TemporaryDirectory(prefix="madf-int8-") as work:
        candidate, cache = Path(work) / "quantized.onnx", Path(work) / "ranges.json"
        while True:
            if on_progress:
                on_progress(f"calibrating ({method}, {len(calibration)} photos"
                            + (f", {len(kept)} layer(s) in float" if kept else "") + ")")
            _quantize(fp32, candidate, calibration, method, fixed + kept, form, cache)
            result = gate(fp32, candidate, held_out, io, reference, form.precision)
            log.info("%s gate: composite %.2f dB (worst), hole %.2f dB; %d layer(s) in float", name, result.worst,
                     min(result.hole_db), len(kept))
            if result.passes(options.gate_db):
                break
            if float_activations is None:
                float_activations = activations(fp32, calibration)
            ranked = [n for n in noisiest_layers(fp32, candidate, calibration, float_activations, form.precision)
                      if n not in kept and n not in fixed]
            if not ranked or len(kept) >= MAX_KEPT_FLOAT:
                worst = ranked[0] if ranked else (kept[-1] if kept else "?")
                raise QuantizationError(
                    f"{name} reaches {result.worst:.2f} dB against FP32 (gate {options.gate_db:g} dB) with "
                    f"{len(kept)} layer(s) kept in float; the noisiest left is {worst}: loosen the gate "
                    f"(--quant-gate {max(0.0, np.floor(result.worst)):g})"
                    + (", try --calib-method entropy or percentile" if form.precision == "int8" else "")
                    + ", or export FP16")
            kept.append(ranked[0])
        if lowered is not None:
            meta = lowered_meta
            _quantize(lowered, candidate, calibration, method, [twins[n] for n in kept], form, cache)
        quantized = onnx.load(str(candidate))
    extra = {"madf.precision": form.precision, "madf.quant_method": method, "madf.quant_form": options.form,
             "madf.quant_calibration_sha256": digest, "madf.quant_calibration_photos": str(len(calibration)),
             "madf.quant_gate_db": f"{options.gate_db:g}",
             "madf.quant_psnr_db": f"{result.worst:.2f}", "madf.quant_hole_psnr_db": f"{min(result.hole_db):.2f}",
             "madf.quant_float_layers": ",".join(kept),
             **({"madf.quant_gated_on": "native lowering"} if lowered is not None else {})}
    kept_meta = {k: v for k, v in meta.items() if k not in extra}
    del quantized.metadata_props[:]
    for key, value in kept_meta.items():
        quantized.metadata_props.add(key=key, value=value)
    stamp(quantized, **extra)
    with atomic_path(output) as tmp:
        onnx.save_model(quantized, str(tmp))
    return extra


def _lowered_meta(lowered: Path, model: onnx.ModelProto, native_meta: Dict[str, str]) -> Dict[str, str]:
    """The lowered file's metadata, after checking it is the native file's network."""
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("madf.config") != native_meta.get("madf.config") or meta.get("madf.io") != native_meta.get("madf.io"):
        raise InputError(f"{lowered}: not the same network and I/O as the native file it is quantized with")
    return meta


def _twins(native: onnx.ModelProto, lowered: onnx.ModelProto) -> Dict[str, Optional[str]]:
    """{native convolution: the lowered file's convolution on the same inputs, or None (one inside a dynamic filter
    the lowered file runs as its custom op)}."""
    def convolutions(model):
        return {(n.op_type, tuple(n.input)): n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS}
    theirs = convolutions(lowered)
    return {name: theirs.get(key) for key, name in convolutions(native).items()}
