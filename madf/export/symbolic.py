"""The dynamic filter as ONE custom op, for the plugin lowering (export only; the model code never imports this).

``torch.ops.madf.dynamic_filter`` is a torch.library custom op (its eager kernel is the exact rewrite, so a model
using it still computes correctly), registered as the dynamic-filter implementation ``custom_op``. Its ONNX
translation emits a single ``madf::MADFDynamicFilter`` node; TensorRT's ONNX parser finds the plugin of that name
through the ``plugin_namespace`` / ``plugin_version`` attributes. The op's contract is docs/ops/MADFDynamicFilter.md.
"""
from __future__ import annotations

import torch

from madf.model.dynamic_filter import dynamic_filter_rewrite, register

OP_TYPE = "MADFDynamicFilter"
DOMAIN = "madf"
OP_VERSION = "1"
IMPL = "custom_op"


@torch.library.custom_op("madf::dynamic_filter", mutates_args=())
def dynamic_filter_op(x: torch.Tensor, m: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, kernel_size: int,
                      stride: int, padding: int) -> torch.Tensor:
    return dynamic_filter_rewrite(x, m, weight, bias, kernel_size, stride, padding)


@dynamic_filter_op.register_fake
def _(x, m, weight, bias, kernel_size, stride, padding):
    cout = weight.shape[0] // (x.shape[1] * kernel_size * kernel_size)
    return x.new_empty(x.shape[0], cout, m.shape[2], m.shape[3])


@register(IMPL)
def _dynamic_filter_custom_op(x, m, weight, bias, kernel_size, stride, padding):
    return torch.ops.madf.dynamic_filter(x, m, weight, bias, kernel_size, stride, padding)


def _register_schema() -> None:
    """An ONNX schema for the op, so onnx.checker and onnxscript know its inputs, attributes and types."""
    import onnx
    from onnx.defs import OpSchema

    if onnx.defs.has(OP_TYPE, DOMAIN):
        return
    T = "T"
    schema = OpSchema(
        OP_TYPE, DOMAIN, 1,
        doc="Mask-aware dynamic filter (docs/ops/MADFDynamicFilter.md); no activation.",
        inputs=[OpSchema.FormalParameter("features", T), OpSchema.FormalParameter("mask_features", T),
                OpSchema.FormalParameter("weight", T), OpSchema.FormalParameter("bias", T)],
        outputs=[OpSchema.FormalParameter("output", T)],
        type_constraints=[(T, ["tensor(float)", "tensor(float16)"], "float32 or float16, one type for all")],
        attributes=[OpSchema.Attribute("kernel_size", OpSchema.AttrType.INT, "k (square window)"),
                    OpSchema.Attribute("stride", OpSchema.AttrType.INT, "stride (2 in MADF)"),
                    OpSchema.Attribute("padding", OpSchema.AttrType.INT, "zero padding on every side"),
                    OpSchema.Attribute("out_channels", OpSchema.AttrType.INT, "Cout"),
                    OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
                    OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version")],
    )
    onnx.defs.register_schema(schema)


def onnx_translation():
    """{op: onnxscript function} for torch.onnx.export(custom_translation_table=...)."""
    from onnxscript import values

    _register_schema()
    opset = values.Opset(DOMAIN, 1)

    def madf_dynamic_filter(x, m, weight, bias, kernel_size: int, stride: int, padding: int):
        # weight is an initializer, so its shape is static: Cout = D / (Cin * k * k).
        cout = weight.shape[0] // (x.shape[1] * kernel_size * kernel_size)
        return opset.MADFDynamicFilter(x, m, weight, bias, kernel_size=kernel_size, stride=stride, padding=padding,
                                       out_channels=int(cout), plugin_namespace=DOMAIN, plugin_version=OP_VERSION)

    return {torch.ops.madf.dynamic_filter.default: madf_dynamic_filter}
