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
        "255": np.array(255.0, np.float32), "per_threshold": np.array(1.0 / MASK_THRESHOLD, np.float32),
        "zero_f": np.array(0.0, np.float32), "one_f": np.array(1.0, np.float32), "half": np.array(0.5, np.float32),
        "multiple": np.array(multiple, np.int64), "m_minus_1": np.array(multiple - 1, np.int64),
        "zero": np.array(0, np.int64), "one": np.array(1, np.int64), "two": np.array(2, np.int64),
        "axis_h": np.array(1, np.int64), "axis_w": np.array(2, np.int64),
        "channel_axis": np.array([3], np.int64), "one_1d": np.array([1], np.int64),
        "starts": np.array([0, 0], np.int64), "crop_axes": np.array([2, 3], np.int64),
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
        node("Range", [size, size + "_padded", "one"], size + "_range")   # the padding's indices only
        node("Mod", [size + "_range", size + "_period"], size + "_t")
        node("Less", [size + "_t", size], size + "_inside")
        node("Sub", [size + "_period", size + "_t"], size + "_mirror")
        node("Where", [size + "_inside", size + "_t", size + "_mirror"], size + "_index")
    # The image in [0, 255] floats (exact) and the hole as 0/1, both NCHW, then padded. Layout matters on ONNX
    # Runtime's CPU: an innermost axis of size 1 (the NHWC mask) makes every elementwise op ~20x slower, so the mask
    # drops its channel axis first and gets it back in front.
    node("Cast", ["image"], "image_nhwc", to=TensorProto.FLOAT)
    node("Transpose", ["image_nhwc"], "image_255", perm=[0, 3, 1, 2])
    node("Cast", ["mask"], "mask_nhwc", to=TensorProto.FLOAT)   # TensorRT takes uint8 tensors into Cast only
    node("Squeeze", ["mask_nhwc", "channel_axis"], "mask_255")
    # hole = mask >= 128 as 0/1: floor(mask / 128), exact (128 is a power of two); 1 - that when inverted.
    node("Mul", ["mask_255", "per_threshold"], "mask_scaled")
    node("Floor", ["mask_scaled"], "keep_f" if invert_mask else "hole_nhw")
    if invert_mask:
        node("Sub", ["one_f", "keep_f"], "hole_nhw")
    node("Unsqueeze", ["hole_nhw", "one_1d"], "hole_f")
    # Padding = the tensor, then its reflected rows (columns) gathered: only the pad is gathered, the rest copied.
    for src, dst in (("image_255", "image_nchw"), ("hole_f", "mask_f")):
        node("Gather", [src, "h_index"], dst + "_hpad", axis=2)
        node("Concat", [src, dst + "_hpad"], dst + "_h", axis=2)
        node("Gather", [dst + "_h", "w_index"], dst + "_wpad", axis=3)
        node("Concat", [dst + "_h", dst + "_wpad"], dst, axis=3)
    node("Div", ["image_nchw", "255"], "image_f")   # the host's astype(float32) / 255, to the bit
    nodes_before = list(nodes)
    nodes.clear()
    # After the float graph, in its padded NCHW (ONNX Runtime broadcasts a 1-channel mask over channels fast there):
    # imaging.to_uint8 (clip, * 255, + 0.5, floor), then image + hole * (filled - image), exactly filled or image as
    # all values are integers below 256; crop to H x W, back to NHWC.
    node("Clip", ["inpainted_f", "zero_f", "one_f"], "out_clip")
    node("Mul", ["out_clip", "255"], "out_255")
    node("Add", ["out_255", "half"], "out_half")
    node("Floor", ["out_half"], "filled")
    node("Sub", ["filled", "image_nchw"], "change")
    node("Mul", ["change", "mask_f"], "hole_change")
    node("Add", ["image_nchw", "hole_change"], "composite_nchw")
    node("Unsqueeze", ["h", "zero"], "h_1d")
    node("Unsqueeze", ["w", "zero"], "w_1d")
    node("Concat", ["h_1d", "w_1d"], "ends", axis=0)
    node("Slice", ["composite_nchw", "starts", "ends", "crop_axes"], "composite_crop")
    node("Transpose", ["composite_crop"], "composite", perm=[0, 2, 3, 1])
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
    from madf.common.errors import ModelError
    from madf.export.onnx_file import (
        check_weights,
        load_model,
        stamp,
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
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    stamp(model)   # the shell's constants and nodes are new: both digests recomputed
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(dst) as tmp:
        onnx.save_model(model, str(tmp))
    return model
