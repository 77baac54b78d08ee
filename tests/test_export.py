import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from madf.export.onnx import ExportError, ExportOptions, export_onnx, read_metadata
from madf.model.network import build_model
from madf.model.pipeline import InpaintModel

from conftest import TINY


def _run(path, image, mask):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": image, "mask": mask})


def _inputs(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), (torch.rand(n, 1, h, w, generator=g) > 0.6).float()


def _dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_native_contract_io_metadata_and_ops(exported):
    net, paths = exported
    model = onnx.load(str(paths["native"]))
    onnx.checker.check_model(model, full_check=True)
    assert [(i.name, _dims(i)) for i in model.graph.input] == [("image", ["batch", 3, "height", "width"]),
                                                                ("mask", ["batch", 1, "height", "width"])]
    assert [(o.name, _dims(o)) for o in model.graph.output] == [("inpainted", ["batch", 3, "height", "width"])]
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}          # standard ops only
    assert {"Conv", "Mul", "ReduceSum"} <= {n.op_type for n in model.graph.node}
    meta = read_metadata(model)
    assert json.loads(meta["madf.config"]) == TINY.to_dict()
    assert meta["madf.lowering"] == "native" and meta["madf.precision"] == "fp32"
    assert meta["madf.multiple"] == "16" and meta["madf.opset"] == "18" and meta["madf.version"]


@pytest.mark.parametrize("n, h, w", [(1, 16, 16), (2, 48, 32)])
def test_native_matches_pytorch_on_dynamic_shapes(exported, n, h, w):
    net, paths = exported
    image, mask = _inputs(n, h, w)
    (out,) = _run(paths["native"], image.numpy(), mask.numpy())
    with torch.no_grad():
        ref = InpaintModel(net)(image, mask).numpy()
    err = np.abs(out - ref).max()
    print(f"native ONNX vs PyTorch, {n}x{h}x{w}: max abs {err:.2e}")
    assert out.shape == (n, 3, h, w) and err <= 1e-4


def test_fp16_graph_keeps_fp32_shell_and_stays_close(exported):
    net, paths = exported
    model = onnx.load(str(paths["fp16"]))
    onnx.checker.check_model(model, full_check=True)
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(v.type.tensor_type.elem_type == f32 for v in list(model.graph.input) + list(model.graph.output))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")}
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert conv_weights and all(inits[w] == f16 for w in conv_weights if w in inits)
    assert read_metadata(model)["madf.precision"] == "fp16"
    image, mask = _inputs(2, 32, 32, seed=3)
    (out16,) = _run(paths["fp16"], image.numpy(), mask.numpy())
    (out32,) = _run(paths["native"], image.numpy(), mask.numpy())
    diff = np.abs(out16.astype(np.float64) - out32)
    psnr = 10 * np.log10(1 / max((diff ** 2).mean(), 1e-30))
    print(f"FP16 vs FP32 ONNX: max abs {diff.max():.2e}, mean abs {diff.mean():.2e}, PSNR {psnr:.1f} dB")
    assert np.isfinite(out16).all() and diff.max() < 5e-2 and psnr > 40
    known = mask.numpy().repeat(3, axis=1) == 0
    assert np.array_equal(out16[known], image.numpy()[known])    # compositing stayed FP32: exact


def test_plugin_lowering_has_one_node_per_level_with_its_weights(exported):
    net, paths = exported
    model = onnx.load(str(paths["plugin"]))
    onnx.checker.check_model(model, full_check=True)
    nodes = [n for n in model.graph.node if n.op_type == "MADFDynamicFilter"]
    assert len(nodes) == TINY.levels and all(n.domain == "madf" for n in nodes)
    assert not any(n.op_type == "ReduceSum" for n in model.graph.node)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    state = net.state_dict()
    for node, shape in zip(nodes, TINY.level_shapes()):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"kernel_size": shape["kernel"], "stride": 2, "padding": shape["padding"],
                         "out_channels": shape["cout"], "plugin_namespace": b"madf", "plugin_version": b"1"}
        level = shape["level"]
        assert np.array_equal(inits[node.input[2]], state[f"filter_gen_{level}.conv1.0.weight"].numpy())
        assert np.array_equal(inits[node.input[3]], state[f"filter_gen_{level}.conv1.0.bias"].numpy())
    assert read_metadata(model)["madf.lowering"] == "plugin"


def test_custom_op_eager_kernel_is_the_dynamic_filter():
    from madf.export import symbolic  # noqa: F401  (registers the op)
    from madf.model.dynamic_filter import dynamic_filter_unfold
    g = torch.Generator().manual_seed(0)
    x, m = torch.randn(2, 6, 11, 9, generator=g, dtype=torch.float64), torch.rand(2, 4, 6, 5, generator=g,
                                                                                    dtype=torch.float64)
    w, b = torch.randn(6 * 49 * 3, 4, 1, 1, dtype=torch.float64), torch.randn(6 * 49 * 3, dtype=torch.float64)
    out = torch.ops.madf.dynamic_filter(x, m, w, b, 7, 2, 3)
    assert (out - dynamic_filter_unfold(x, m, w, b, 7, 2, 3)).abs().max() < 1e-10


def test_fixed_shapes_and_raw_outputs(tmp_path):
    net = build_model(TINY, seed=1)
    model = export_onnx(net, tmp_path / "fixed.onnx", ExportOptions(batch=2, height=32, width=48, raw_outputs=True))
    assert [_dims(i) for i in model.graph.input] == [[2, 3, 32, 48], [2, 1, 32, 48]]
    assert [o.name for o in model.graph.output] == ["recovery", "refined_1", "refined_2"]
    image, mask = _inputs(2, 32, 48)
    outs = _run(tmp_path / "fixed.onnx", image.numpy(), mask.numpy())
    with torch.no_grad():
        refs = InpaintModel(net, raw_outputs=True)(image, mask)
    assert len(outs) == 3 and all(np.abs(o - r.numpy()).max() < 1e-4 for o, r in zip(outs, refs))


def test_simplify_keeps_the_result(tmp_path):
    pytest.importorskip("onnxslim")
    net = build_model(TINY, seed=2)
    export_onnx(net, tmp_path / "slim.onnx", ExportOptions(simplify=True))
    image, mask = _inputs(1, 32, 32)
    (out,) = _run(tmp_path / "slim.onnx", image.numpy(), mask.numpy())
    with torch.no_grad():
        assert np.abs(out - InpaintModel(net)(image, mask).numpy()).max() < 1e-4


@pytest.mark.parametrize("options, match", [
    (ExportOptions(height=24), "--height 24 is not a positive multiple of 16"),
    (ExportOptions(lowering="magic"), "unknown lowering 'magic'"),
    (ExportOptions(batch=0), "--batch 0 must be positive"),
])
def test_bad_options(tmp_path, options, match):
    with pytest.raises(ExportError, match=match):
        export_onnx(build_model(TINY, seed=0), tmp_path / "x.onnx", options)
    assert not (tmp_path / "x.onnx").exists()
