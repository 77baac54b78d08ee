"""The uint8 I/O shell: an exported float-contract graph wrapped so a client sends raw photos and gets the result.

    image (N, H, W, 3) uint8 RGB, mask (N, H, W, 1) uint8 (>= 128 = hole; < 128 with invert)
        ->  inpainted (N, H, W, 3) uint8, known pixels the input's bytes

Inside the graph, in standard ONNX ops only (ONNX Runtime, TensorRT, a browser): binarize the mask, reflect-pad both
to the network's multiple with pads computed from the input's shape (any H and W), convert to the float contract,
run the float graph unchanged (either lowering, FP32 or FP16), crop back, clamp, round to 8 bits and composite.
Every step is the one madf.inpaint.imaging does on the host, in the same order and arithmetic, so the result matches
the float file's through the Python Inpainter. Torch-free (onnx only).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from madf.export.onnx_file import IO_KINDS  # noqa: F401 - the kinds madf-export writes

PREFIX = "madf_io/"
# imaging.MASK_THRESHOLD: a byte at or above it is a hole (below it with the inverted polarity)
MASK_THRESHOLD = 128


def _rename_inputs(graph: onnx.GraphProto, renames) -> None:
    """Point every use of a graph input / output name at its new name (the float graph becomes the middle)."""
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in list(graph.value_info):
        value.name = renames.get(value.name, value.name)


def _dim(value: Optional[int], name: str):
    return value if value is not None else name


def wrap_uint8(model: onnx.ModelProto, multiple: int, invert_mask: bool = False, batch: Optional[int] = None,
               height: Optional[int] = None, width: Optional[int] = None) -> onnx.ModelProto:
    """``model`` (the float contract: image, mask -> inpainted, NCHW) inside the uint8 shell, in place."""
    graph = model.graph
    if [i.name for i in graph.input] != ["image", "mask"] or [o.name for o in graph.output] != ["inpainted"]:
        raise ValueError("the uint8 shell wraps the contract graph (image, mask -> inpainted)")
    inner = {"image": PREFIX + "image_f", "mask": PREFIX + "mask_f", "inpainted": PREFIX + "inpainted_f"}
    _rename_inputs(graph, inner)
    del graph.input[:]
    del graph.output[:]
    p = PREFIX
    consts = {
        "255": np.array(255.0, np.float32), "threshold": np.array(MASK_THRESHOLD - 0.5, np.float32),
        "zero_f": np.array(0.0, np.float32), "one_f": np.array(1.0, np.float32), "half": np.array(0.5, np.float32),
        "multiple": np.array(multiple, np.int64), "m_minus_1": np.array(multiple - 1, np.int64),
        "zero": np.array(0, np.int64), "one": np.array(1, np.int64), "two": np.array(2, np.int64),
        "axis_h": np.array(1, np.int64), "axis_w": np.array(2, np.int64),
        "starts": np.array([0, 0], np.int64), "crop_axes": np.array([1, 2], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, p + k) for k, v in consts.items())
    nodes = []

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, [x if x in ("image", "mask") else p + x for x in inputs], [p + name],
                                      name=p + name, **attrs))
        return name

    # Shapes: H, W of the input and their padded sizes ceil(H / m) * m, as int64 scalars.
    node("Shape", ["image"], "shape")
    for axis, size in (("axis_h", "h"), ("axis_w", "w")):
        node("Gather", ["shape", axis], size, axis=0)
        node("Add", [size, "m_minus_1"], size + "_up")
        node("Div", [size + "_up", "multiple"], size + "_blocks")
        node("Mul", [size + "_blocks", "multiple"], size + "_padded")
        # numpy's reflect, repeated as often as needed: index i -> t = i mod 2(S-1), t or 2(S-1) - t; edge at S = 1
        node("Sub", [size, "one"], size + "_minus_1")
        node("Mul", [size + "_minus_1", "two"], size + "_period2")
        node("Max", [size + "_period2", "one"], size + "_period")
        node("Range", ["zero", size + "_padded", "one"], size + "_range")
        node("Mod", [size + "_range", size + "_period"], size + "_t")
        node("Less", [size + "_t", size], size + "_inside")
        node("Sub", [size + "_period", size + "_t"], size + "_mirror")
        node("Where", [size + "_inside", size + "_t", size + "_mirror"], size + "_index")
    # The image in [0, 255] floats (exact), the hole as 0/1, both padded; then the float contract's NCHW [0, 1].
    node("Cast", ["image"], "image_255", to=TensorProto.FLOAT)
    node("Cast", ["mask"], "mask_255", to=TensorProto.FLOAT)
    node("Less" if invert_mask else "Greater", ["mask_255", "threshold"], "hole")
    node("Cast", ["hole"], "hole_f", to=TensorProto.FLOAT)
    for src, dst in (("image_255", "image_pad"), ("hole_f", "hole_pad")):
        node("Gather", [src, "h_index"], dst + "_h", axis=1)
        node("Gather", [dst + "_h", "w_index"], dst, axis=2)
    node("Transpose", ["image_pad"], "image_nchw", perm=[0, 3, 1, 2])
    node("Div", ["image_nchw", "255"], "image_f")   # the host's astype(float32) / 255, to the bit
    node("Transpose", ["hole_pad"], "mask_f", perm=[0, 3, 1, 2])
    nodes_before = list(nodes)
    nodes.clear()
    # After the float graph: back to NHWC, crop to H x W, imaging.to_uint8 (clip, * 255, + 0.5, floor), composite.
    node("Transpose", ["inpainted_f"], "out_nhwc", perm=[0, 2, 3, 1])
    node("Unsqueeze", ["h", "zero"], "h_1d")
    node("Unsqueeze", ["w", "zero"], "w_1d")
    node("Concat", ["h_1d", "w_1d"], "ends", axis=0)
    node("Slice", ["out_nhwc", "starts", "ends", "crop_axes"], "out_crop")
    node("Clip", ["out_crop", "zero_f", "one_f"], "out_clip")
    node("Mul", ["out_clip", "255"], "out_255")
    node("Add", ["out_255", "half"], "out_half")
    node("Floor", ["out_half"], "filled")
    node("Where", ["hole", "filled", "image_255"], "composite")
    nodes.append(helper.make_node("Cast", [p + "composite"], ["inpainted"], name=p + "to_uint8", to=TensorProto.UINT8))
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes_before + body + nodes)
    n, h, w = _dim(batch, "batch"), _dim(height, "height"), _dim(width, "width")
    graph.input.extend([helper.make_tensor_value_info("image", TensorProto.UINT8, [n, h, w, 3]),
                        helper.make_tensor_value_info("mask", TensorProto.UINT8, [n, h, w, 1])])
    graph.output.extend([helper.make_tensor_value_info("inpainted", TensorProto.UINT8, [n, h, w, 3])])
    return model


def contract_text(invert_mask: bool) -> str:
    hole = "< 128" if invert_mask else ">= 128"
    return (f"image (N,H,W,3) uint8 RGB; mask (N,H,W,1) uint8 {hole} = hole -> inpainted (N,H,W,3) uint8, known "
            f"pixels copied; any H, W (padded inside the graph)")


def uint8_metadata(invert_mask: bool) -> dict:
    """The madf.* properties that tell every runtime it holds a uint8 file."""
    return {"madf.io": "uint8", "madf.mask": "inverted" if invert_mask else "hole",
            "madf.contract": contract_text(invert_mask)}


def convert_file(src, dst, invert_mask: bool = False) -> onnx.ModelProto:
    """An existing float-contract file from madf-export (either lowering, FP32 or FP16) as a uint8 file, no
    checkpoint needed; written atomically, its weights digest carried over (the initializers are unchanged
    but for the shell's constants, which it recomputes)."""
    from madf.common.atomic import atomic_path
    from madf.common.digest import KEY
    from madf.common.errors import ModelError
    from madf.export.onnx_file import (
        check_weights,
        initializers_sha256,
        load_model,
        validate_metadata,
    )
    model = load_model(src)
    meta = validate_metadata({p.key: p.value for p in model.metadata_props}, src)
    if meta.get("madf.io", "float") != "float" or meta.get("madf.raw_outputs") == "1":
        raise ModelError(f"{src} is not a float-contract file (it is {meta.get('madf.io')} I/O or has raw "
                         f"outputs); convert the plain madf-export output")
    check_weights(src, model)
    wrap_uint8(model, int(meta["madf.multiple"]), invert_mask=invert_mask)
    meta.update(uint8_metadata(invert_mask))
    meta[KEY] = initializers_sha256(model)
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(dst) as tmp:
        onnx.save_model(model, str(tmp))
    return model
