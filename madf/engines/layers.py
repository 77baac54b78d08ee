"""Which convolutions of a built engine compute in INT8, read from the builder's own log.

TensorRT's engine inspector needs a runtime and so a GPU; the builder, asked for ``ProfilingVerbosity.DETAILED``,
logs every engine layer with its inputs' data types and the ONNX nodes fused into it (TensorRT-RTX: one verbose
message starting ``Layers:``, a line per layer). A Q/DQ file whose Conv runs in float means TensorRT could not fuse
its Q/DQ pair (a scale it cannot fold, a zero point it refuses); the build says so instead of silently serving a
slower, float layer.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional

CONVOLUTIONS = ("correlation", "deconv", "convolution")   # layer types, lower case, as the builders name them
_LAYER = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<type>\w+), Inputs: \[(?P<inputs>.*?)\], Constants:")
_DATATYPE = re.compile(r"Datatype: (\w+)")
_ONNX = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def capturing_logger(trt, keep: List[str]):
    """A logger that prints warnings and errors as ``trt.Logger(WARNING)`` does and keeps the layer table."""
    severity = trt.ILogger.Severity

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.min_severity = severity.VERBOSE

        def log(self, level, message):
            if message.startswith("Layers:"):
                keep.append(message)
            elif level in (severity.INTERNAL_ERROR, severity.ERROR, severity.WARNING):
                print(f"[TRT] [{str(level).rsplit('.', 1)[-1][0]}] {message}", flush=True)

    return Logger()


def convolution_precisions(messages: List[str]) -> Optional[Dict[str, List[str]]]:
    """{data type of its input: [ONNX Conv / ConvTranspose nodes]} over the engine's convolution layers, or None
    when the log has no layer table (TensorRT's own builder words it otherwise)."""
    table = next((m for m in messages if m.startswith("Layers:")), None)
    if table is None:
        return None
    out: Dict[str, List[str]] = {}
    for line in table.splitlines()[1:]:
        layer = _LAYER.match(line)
        if not layer or not any(kind in layer["type"].lower() for kind in CONVOLUTIONS):
            continue
        types = _DATATYPE.findall(layer["inputs"])
        nodes = [n for n in _ONNX.findall(line) if not n.endswith(("QuantizeLinear", "DequantizeLinear"))]
        out.setdefault(types[0] if types else "?", []).append(nodes[0] if nodes else layer["name"])
    return out
