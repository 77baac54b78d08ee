"""An exported madf ONNX file as the tools that load it see it: its madf.* metadata checked (a malformed or edited
file is one ModelError naming what to do) and its weights checked finite. Torch-free (onnx and numpy), shared by
the ONNX Runtime backend and madf-build."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from madf.common.digest import KEY, weights_sha256
from madf.common.errors import ModelError, check_finite

# What a file's dynamic filters are: standard ops everywhere, the MADFDynamicFilter custom op everywhere, or the
# custom op at the levels listed in madf.plugin_levels only (madf-export --dynconv auto).
LOWERINGS = ("native", "plugin", "mixed")
PLUGIN_LEVELS_KEY = "madf.plugin_levels"


def uses_plugin(lowering: Optional[str]) -> bool:
    """Whether a file (or an engine built from it) of this lowering needs the MADFDynamicFilter plugin."""
    return lowering in ("plugin", "mixed")


def plugin_levels_of(meta) -> list:
    """The levels a file's metadata says carry the custom op (files from before madf.plugin_levels: every level of
    a plugin file)."""
    listed = [int(v) for v in meta.get(PLUGIN_LEVELS_KEY, "").split(",") if v]
    if not listed and meta.get("madf.lowering") == "plugin" and "madf.config" in meta:
        import json
        listed = list(range(1, json.loads(meta["madf.config"])["levels"] + 1))
    return listed


def lowering_of(levels: int, plugin_levels) -> str:
    """The file's lowering for the levels that carry the custom op."""
    return "native" if not plugin_levels else "plugin" if len(plugin_levels) == levels else "mixed"
PRECISIONS = ("fp32", "fp16", "int8", "fp8")
QUANTIZED = {"int8": "Int8", "fp8": "FP8"}   # Q/DQ precisions, and the data type TensorRT's layer table names


def ort_graph_level(precision: str) -> str:
    """The ONNX Runtime graph optimization level a file of this precision runs at: all, except FP8, since ONNX
    Runtime 1.32's extended CPU optimizations break float8 Q/DQ graphs (the bundled model's FP8 file: 29.9 dB against
    FP32 with basic optimizations, 15.6 dB with all; one ReLU's Q/DQ before a ConvTranspose alone costs 20 dB)."""
    return "ORT_ENABLE_BASIC" if precision == "fp8" else "ORT_ENABLE_ALL"
# What a file takes and returns: the float contract (NCHW [0, 1], padded by the caller) or the uint8 shell
# (madf/export/uint8_io.py: raw NHWC photos of any size in, the composite out); and the uint8 mask's polarity.
IO_KINDS = ("float", "uint8")
MASK_POLARITIES = ("hole", "inverted")
# The graph without its weights' bytes (nodes, initializers' names, types and shapes, inputs and outputs), recorded
# beside the weights digest: weights that changed in an unchanged graph rotted; a changed graph was rewritten by a
# tool (onnxslim, ONNX Runtime's optimizer or quantizer), which is not damage.
GRAPH_KEY = "madf.graph_sha256"
EXPORTERS = ("pytorch",)   # the producer_name torch's exporter writes; another one means a tool rewrote the file
RESTAMPED_KEY = "madf.restamped"


# What each kind of model file is called and which option takes it, for "you gave the other one" messages.
KINDS = {".onnx": ("an ONNX file", "--model"), ".plan": ("a TensorRT engine", "--engine"),
         ".engine": ("a TensorRT engine", "--engine"), ".pth": ("a checkpoint", "--ckpt"),
         ".pt": ("a checkpoint", "--ckpt"), ".safetensors": ("a checkpoint", "--ckpt")}


def check_file_kind(path: Path, wanted: str, option: str) -> None:
    """``path`` exists, is a file, and is not by its name another kind of model file: one line naming the fix."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{option} {path} is a folder; give {wanted} in it")
    found = KINDS.get(path.suffix.lower())
    if found and found[0] != wanted:
        raise ModelError(f"{option} {path} is {found[0]}, not {wanted}: pass it as {found[1]}")
    if not path.is_file():
        make = ("engine; build one with madf-build --onnx MODEL.onnx --output " if option == "--engine"
                else "ONNX file; write one with madf-export --ckpt CKPT --output ")
        raise ModelError(f"{path}: no such {make}{path}")


def load_model(path: Path, data: Optional[bytes] = None):
    """The ONNX model of ``path`` (or of ``data``, its bytes when the caller has read them already)."""
    import onnx
    try:
        return onnx.load_model_from_string(data) if data is not None else onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and friends
        raise ModelError(f"{path}: not a readable ONNX file ({exc.__class__.__name__}); export it again with "
                         f"madf-export") from None


def validate_metadata(meta: Dict[str, str], path) -> Dict[str, str]:
    """The madf.* properties madf-export writes, each checked for what the loaders rely on."""
    fix = "export it again with madf-export"
    if "madf.multiple" not in meta:
        raise ModelError(f"{path}: no madf metadata (madf.multiple); {fix}")
    try:
        multiple = int(meta["madf.multiple"])
    except ValueError:
        raise ModelError(f"{path}: madf.multiple {meta['madf.multiple']!r} is not a number; {fix}") from None
    if multiple < 1 or multiple & (multiple - 1):
        raise ModelError(f"{path}: madf.multiple {multiple} is not a power of two (2^levels); {fix}")
    if meta.get("madf.lowering", "native") not in LOWERINGS:
        raise ModelError(f"{path}: madf.lowering {meta['madf.lowering']!r} is not one of {LOWERINGS}; {fix}")
    if meta.get("madf.precision", "fp32") not in PRECISIONS:
        raise ModelError(f"{path}: madf.precision {meta['madf.precision']!r} is not one of {PRECISIONS}; {fix}")
    if meta.get("madf.io", "float") not in IO_KINDS:
        raise ModelError(f"{path}: madf.io {meta['madf.io']!r} is not one of {IO_KINDS}; {fix}")
    if meta.get("madf.mask", "hole") not in MASK_POLARITIES:
        raise ModelError(f"{path}: madf.mask {meta['madf.mask']!r} is not one of {MASK_POLARITIES}; {fix}")
    if "madf.config" in meta:
        try:
            config = json.loads(meta["madf.config"])
            if not isinstance(config, dict) or 2 ** int(config["levels"]) != multiple:
                raise ValueError("levels do not match madf.multiple")
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: madf.config is malformed ({exc}); {fix}") from None
    return meta


def initializers_sha256(model) -> str:
    """The weights digest (madf.common.digest) of an ONNX model's initializers."""
    from onnx import numpy_helper
    arrays = ((i.name, numpy_helper.to_array(i)) for i in model.graph.initializer)
    return weights_sha256((name, str(a.dtype), a.shape, np.ascontiguousarray(a).reshape(-1).view(np.uint8))
                          for name, a in arrays)


def graph_sha256(model) -> str:
    """The digest of everything but the weights' bytes (see GRAPH_KEY)."""
    digest = hashlib.sha256()
    for node in model.graph.node:
        digest.update(node.SerializeToString(deterministic=True))
    for init in sorted(model.graph.initializer, key=lambda i: i.name):
        digest.update(f"{init.name}\0{init.data_type}\0{tuple(init.dims)}\0".encode())
    for value in (*model.graph.input, *model.graph.output):
        digest.update(value.SerializeToString(deterministic=True))
    return digest.hexdigest()


def stamp(model, **extra: str) -> None:
    """Record the weights and graph digests (and ``extra`` properties) in ``model``'s metadata, replacing old ones."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in (KEY, GRAPH_KEY, *extra)]
    del model.metadata_props[:]
    for key, value in [*kept, *extra.items(), (KEY, initializers_sha256(model)), (GRAPH_KEY, graph_sha256(model))]:
        model.metadata_props.add(key=key, value=value)


def _mismatch(path: Path, model, meta: Dict[str, str]) -> str:
    """Why the weights differ from the export's digest: rotted bytes, or a rewrite by a tool (and the way on)."""
    recorded_graph = meta.get(GRAPH_KEY)
    producer = f"{model.producer_name} {model.producer_version}".strip()
    restamp = f"madf-parity --model ORIGINAL.onnx --restamp {Path(path).name}"
    if recorded_graph is not None and recorded_graph == graph_sha256(model):
        return (f"{path}: its weights do not match the SHA-256 madf-export recorded, in an unchanged graph: damaged "
                f"in storage or transfer; copy or export it again")
    if recorded_graph is not None or model.producer_name not in EXPORTERS:
        by = f" by {producer}" if model.producer_name not in EXPORTERS else ""
        return (f"{path}: its graph was rewritten{by} after madf-export (onnxslim, ONNX Runtime's optimizer or "
                f"quantizer), so the export's weights digest no longer applies; check it against the original and "
                f"stamp it: {restamp} (if you did not rewrite it, it is damaged: copy or export it again)")
    return (f"{path}: its weights do not match the SHA-256 madf-export recorded: damaged in storage or transfer "
            f"(copy or export it again), or rewritten by a graph tool (then: {restamp})")


def check_weights(path: Path, model=None, digest: bool = True) -> None:
    """Every initializer finite, and as written (the SHA-256 madf-export recorded): a damaged file must not become
    an engine or fill holes with black. A file rewritten by a tool is told from a damaged one (``_mismatch``).
    ``digest=False``: finite only (a rewrite on its way to madf-parity --restamp)."""
    from onnx import numpy_helper
    model = model if model is not None else load_model(path)
    check_finite({i.name: numpy_helper.to_array(i) for i in model.graph.initializer}, str(path), ModelError,
                 fix="the file is damaged: export it again with madf-export")
    meta = {p.key: p.value for p in model.metadata_props}
    recorded = meta.get(KEY)
    if digest and recorded is not None and recorded != initializers_sha256(model):
        raise ModelError(_mismatch(path, model, meta))


def read_checked(path: Path) -> Dict[str, str]:
    """The validated metadata of an ONNX file whose weights are all finite, from one read of the file."""
    model = load_model(path)
    meta = validate_metadata({p.key: p.value for p in model.metadata_props}, path)
    check_weights(path, model)
    return meta
