"""INT8 files (madf.quantize.int8, madf-export --int8): Q/DQ graphs calibrated on real photos, a quality gate against
FP32 before the file takes its name, the sensitivity pass, and one line for each bad input with nothing written."""
import json
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from madf.cli.export import main as export_main
from madf.model.checkpoint import save_checkpoint
from madf.quantize.int8 import QuantizationError, QuantOptions, feeds, gate, noisiest_layers, quantize_file

pytest.importorskip("onnxruntime")
SMALL = dict(count=2, held_out=1, size=64)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from madf.model.network import build_model

    from conftest import TINY
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), path)
    return path


@pytest.fixture(scope="module")
def int8(exported, tmp_path_factory):
    """TINY's native export quantized once (tensorrt form) for the tests that only consume it."""
    out = tmp_path_factory.mktemp("int8") / "tiny-int8.onnx"
    quantize_file(exported[1]["native"], out, QuantOptions(**SMALL))
    return out


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_an_int8_file_is_qdq_gated_stamped_and_runs_in_every_onnx_consumer(exported, tmp_path):
    fp32 = exported[1]["native"]
    out = tmp_path / "tiny-int8.onnx"
    meta = quantize_file(fp32, out, QuantOptions(**SMALL))
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    scales = [i for i in model.graph.initializer if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] > 1]
    assert scales, "no per-channel weight scales"
    stored = _meta(out)
    print({k: v for k, v in stored.items() if "int8" in k})
    assert stored["madf.precision"] == "int8" and stored["madf.quant_method"] == "minmax"
    assert float(stored["madf.quant_psnr_db"]) >= 40.0 and stored == {**stored, **meta}
    # the same calibration inputs give the same file
    again = tmp_path / "again.onnx"
    quantize_file(fp32, again, QuantOptions(**SMALL))
    assert _meta(again)["madf.quant_calibration_sha256"] == stored["madf.quant_calibration_sha256"]
    assert again.read_bytes() == out.read_bytes()
    # the runtime opens it (its digest holds) and the Inpainter fills a photo with it
    from madf.inpaint.inpainter import Inpainter
    from madf.runtime.onnxruntime import OnnxRuntimeBackend
    backend = OnnxRuntimeBackend(out)
    assert backend.precision == "int8" and "int8" in backend.describe()
    from conftest import random_pair
    image, hole = random_pair(48, 40, seed=3)
    filled = Inpainter(backend)(image, hole)
    reference = Inpainter(OnnxRuntimeBackend(fp32))(image, hole)
    assert np.array_equal(filled[~hole], image[~hole])
    assert np.abs(filled.astype(int) - reference).max() < 64


@pytest.fixture(scope="module")
def kept(exported, tmp_path_factory):
    """Plain INT8 and a file made under a gate just above what plain INT8 reaches: layers go back to float."""
    fp32, folder = exported[1]["native"], tmp_path_factory.mktemp("kept")
    calibration, held_out, _ = feeds(QuantOptions(**SMALL), 16)
    plain = folder / "plain.onnx"
    quantize_file(fp32, plain, QuantOptions(**SMALL, gate_db=0.0))
    worst = gate(fp32, plain, held_out).worst
    ranked = noisiest_layers(fp32, plain, calibration)
    out = folder / "kept.onnx"
    meta = quantize_file(fp32, out, QuantOptions(**SMALL, gate_db=worst + 0.05))
    return out, meta, worst, ranked


def test_the_gate_keeps_the_costliest_layers_in_float_or_refuses(exported, kept, tmp_path):
    fp32 = exported[1]["native"]
    out, meta, worst, ranked = kept
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert sorted(ranked) == sorted(convs)
    kept = meta["madf.quant_float_layers"].split(",")
    print(f"plain INT8 {worst:.2f} dB; kept in float {kept}; now {meta['madf.quant_psnr_db']} dB")
    assert kept[0] == ranked[0] and float(meta["madf.quant_psnr_db"]) >= worst + 0.05
    kept_nodes = {n.name for n in onnx.load(str(out)).graph.node}
    assert set(kept) <= kept_nodes
    # an unreachable gate: one line naming a layer and the option, and no file
    never = tmp_path / "never.onnx"
    with pytest.raises(QuantizationError, match=r"gate 200 dB.*the noisiest left is \S+: loosen the gate "
                                                r"\(--quant-gate \d+\)"):
        quantize_file(fp32, never, QuantOptions(**SMALL, gate_db=200.0))
    assert not never.exists() and not list(tmp_path.glob(".madf-*"))


def test_the_onnxruntime_form_quantizes_activations_between_layers(exported, tmp_path):
    """--int8-for onnxruntime: UINT8 activations with zero points, and Q/DQ between layers too, so ONNX Runtime
    fuses more of the graph into QLinearConv (its INT8 kernel); the TensorRT form stays symmetric INT8 (zero
    points 0)."""
    import onnxruntime as ort
    fp32 = exported[1]["native"]
    fused = {}
    for form in ("tensorrt", "onnxruntime"):
        out = tmp_path / f"{form}.onnx"
        quantize_file(fp32, out, QuantOptions(**SMALL, form=form))
        model = onnx.load(str(out))
        inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
        if form == "tensorrt":
            assert points and all(p.dtype == np.int8 and not p.any() for p in points)
        else:
            assert points and all(p.dtype == np.uint8 for p in points)
        assert _meta(out)["madf.quant_form"] == form
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{form}-optimized.onnx")
        ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
        fused[form] = sum(n.op_type == "QLinearConv" for n in optimized.graph.node)
    print("QLinearConv after ONNX Runtime's fusion:", fused)
    assert fused["onnxruntime"] > fused["tensorrt"]


def test_uint8_files_are_calibrated_in_their_own_io(exported, tmp_path):
    from madf.export.uint8_io import convert_file
    u8 = tmp_path / "u8.onnx"
    convert_file(exported[1]["native"], u8, invert_mask=True)
    out = tmp_path / "u8-int8.onnx"
    meta = quantize_file(u8, out, QuantOptions(**SMALL))
    stored = _meta(out)
    assert stored["madf.io"] == "uint8" and stored["madf.mask"] == "inverted"
    assert float(meta["madf.quant_hole_psnr_db"]) > 20   # the hole was filled (an inverted mask read right)


def test_madf_export_int8_and_its_bad_inputs(ckpt, tmp_path):
    run = lambda *args: CliRunner().invoke(export_main, ["--ckpt", str(ckpt), *map(str, args)])   # noqa: E731
    out = tmp_path / "m-int8.onnx"
    result = run("--int8", "--output", out, "--check-size", "64")
    assert result.exit_code == 0, result.output
    assert out.is_file() and "PSNR vs FP32" in result.output and "gate 40" in result.output
    assert _meta(out)["madf.precision"] == "int8"

    def one_line(result, match):
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert result.exit_code != 0 and len(errors) == 1 and match in errors[0], result.output
        assert "Traceback" not in result.output

    one_line(run("--int8", "--fp16", "--output", tmp_path / "a.onnx"), "--int8 with --fp16")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line(run("--int8", "--calib", empty, "--output", tmp_path / "a.onnx"), "no photos in it")
    small = tmp_path / "small"
    small.mkdir()
    for i in range(12):
        Image.fromarray(np.full((40, 12 if i == 5 else 40, 3), 20 * i, np.uint8)).save(small / f"{i}.png")
    one_line(run("--int8", "--calib", small, "--output", tmp_path / "a.onnx", "--check-size", "64"),
             "5.png: 12x40 is smaller than the network's multiple 16")
    one_line(run("--int8", "--int8-gate", "200", "--output", tmp_path / "a.onnx", "--check-size", "64"),
             "loosen the gate")
    one_line(run("--int8", "--fp8", "--output", tmp_path / "a.onnx"), "--int8 with --fp8: choose one")
    one_line(run("--fp8", "--calib-method", "minmax", "--output", tmp_path / "a.onnx"), "FP8 by distribution only")
    one_line(run("--int8", "--calib-method", "distribution", "--output", tmp_path / "a.onnx"),
             "distribution for FP8 only")
    one_line(run("--fp8", "--fp16", "--output", tmp_path / "a.onnx"), "--fp8 with --fp16")
    assert not (tmp_path / "a.onnx").exists() and not list(tmp_path.glob(".madf-*"))


def test_tensorrts_parser_takes_the_tensorrt_form_and_triton_describes_it(int8, rtx, tmp_path):
    """TensorRT-RTX (no GPU needed) parses the Q/DQ graph and serializes an engine; its report says int8, and so do
    the sidecar and the Triton repository made from it. (ONNX Runtime's default INT32 bias quantization made its
    parser refuse the file: the tensorrt form keeps biases float.)"""
    from madf.cli.build import main as build_main
    from madf.engines.sidecar import read_sidecar
    plan = tmp_path / "int8.plan"
    result = CliRunner().invoke(build_main, ["--onnx", str(int8), "--output", str(plan), "--min", "1x16x16",
                                             "--opt", "1x64x64", "--max", "1x128x128", "--triton-repo",
                                             str(tmp_path / "repo"), "--triton-name", "madf_int8"])
    print(result.output)
    assert result.exit_code == 0, result.output
    sidecar = read_sidecar(plan)
    assert plan.stat().st_size == sidecar["engine"]["bytes"] > 100_000
    assert sidecar["precision"] == "int8" and "int8" in result.output
    folder = tmp_path / "repo" / "madf_int8"
    config = (folder / "config.pbtxt").read_text()
    assert 'key: "madf.precision"\n  value: { string_value: "int8" }' in config
    assert "data_type: TYPE_FP32" in config   # Q/DQ is inside the engine: clients send floats as before
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert ", int8, native lowering" in readme
    # which convolutions the engine runs in INT8, from the builder's layer table: every Conv; TensorRT-RTX 1.7
    # runs ConvTranspose in float even with per-tensor or axis-0 weight scales (tried), and the table says so
    nodes = onnx.load(str(int8)).graph.node
    convs = {n.name for n in nodes if n.op_type == "Conv"}
    every = convs | {n.name for n in nodes if n.op_type == "ConvTranspose"}
    found = sidecar["convolutions"]
    assert convs <= set(found["Int8"]) and {n for names in found.values() for n in names} == every
    assert re.search(rf"INT8 convolutions +{len(found['Int8'])} of {len(every)}\b", result.output)
    assert all(n in result.output for n in every - set(found["Int8"]))


def test_the_build_names_the_convolutions_kept_in_float(kept, rtx, tmp_path):
    from madf.engines.build import BuildOptions, build_engine
    out, meta, _, _ = kept
    report = build_engine(out, tmp_path / "kept.plan", BuildOptions(min_shape=(1, 16, 16), opt_shape=(1, 64, 64),
                                                                    max_shape=(1, 64, 64)))
    print(report.convolutions)
    floats = {n for t, names in report.convolutions.items() if t != "Int8" for n in names}
    kept_float = set(meta["madf.quant_float_layers"].split(","))
    assert kept_float <= floats and not kept_float & set(report.convolutions["Int8"])


def test_madf_eval_scores_an_int8_file(int8, tmp_path):
    from madf.cli.eval import main as eval_main
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(
            photos / f"p{i}.png")
    result = CliRunner().invoke(eval_main, ["--model", str(int8), "--images", str(photos), "--size", "64",
                                            "--per-bucket", "1", "--output", str(tmp_path / "eval")])
    print(result.output)
    assert result.exit_code == 0, result.output
    assert "int8" in result.output and (tmp_path / "eval" / "eval.json").is_file()


def test_madf_parity_judges_an_int8_file_by_its_own_tolerance(int8, ckpt):
    """The same TINY network (seed 0) as a checkpoint and as the INT8 file quantized from its export."""
    from madf.cli.parity import main as parity_main
    from madf.runtime.parity import TOLERANCE
    result = CliRunner().invoke(parity_main, ["--ckpt", str(ckpt), "--model", str(int8), "--size", "64"])
    print(result.output)
    assert f"tolerance max abs <= {TOLERANCE['int8']:g} (int8)" in result.output
    assert result.exit_code == 0 and "FAIL" not in result.output


def test_madf_serve_serves_an_int8_file(int8):
    """madf-serve's app on an INT8 file: /info says int8, and a photo comes back with its known pixels exact."""
    import io

    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from madf.inpaint.inpainter import Inpainter
    from madf.runtime.onnxruntime import OnnxRuntimeBackend
    from madf.serve.app import create_app

    from conftest import random_pair
    image, hole = random_pair(40, 48, seed=5)
    files = {}
    for name, array in (("image", image), ("mask", (hole * 255).astype(np.uint8))):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        files[name] = (f"{name}.png", buffer.getvalue())
    with TestClient(create_app(Inpainter(OnnxRuntimeBackend(int8)))) as client:
        assert client.get("/info").json()["precision"] == "int8"
        response = client.post("/inpaint", files=files)
    assert response.status_code == 200, response.text
    filled = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert filled.shape == image.shape and np.array_equal(filled[~hole], image[~hole])


def test_an_fp8_file_is_made_gated_and_built_for_ada(exported, rtx, tmp_path):
    """--fp8: the tensorrt form with float8 (E4M3) Q/DQ, calibrated by distribution (ONNX Runtime's only float8
    method), gated on ONNX Runtime, and built by TensorRT-RTX for SM 8.9 with its convolutions in FP8."""
    from madf.engines.build import BuildOptions, build_engine
    out = tmp_path / "fp8.onnx"
    meta = quantize_file(exported[1]["native"], out, QuantOptions(**SMALL, form="fp8", gate_db=10.0))
    print({k: v for k, v in meta.items() if "quant" in k})
    assert meta["madf.precision"] == "fp8" and meta["madf.quant_method"] == "distribution"
    model = onnx.load(str(out))
    types = {i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.FLOAT8E4M3FN in types and float(meta["madf.quant_psnr_db"]) >= 10.0
    # madf's ONNX Runtime backend runs it with basic graph optimizations only, as the gate did (ONNX Runtime's
    # extended CPU optimizations break float8 Q/DQ graphs: the bundled model's file 29.9 -> 15.6 dB)
    import onnxruntime as ort

    from madf.quantize.int8 import outputs
    from madf.runtime.onnxruntime import OnnxRuntimeBackend
    backend = OnnxRuntimeBackend(out)
    assert backend.precision == "fp8"
    level = backend.session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    _, held_out, _ = feeds(QuantOptions(**SMALL, form="fp8"), 16)
    assert np.array_equal(backend.session.run(None, held_out[0])[0], outputs(out, held_out[:1], "fp8")[0])
    report = build_engine(out, tmp_path / "fp8.plan", BuildOptions(min_shape=(1, 16, 16), opt_shape=(1, 64, 64),
                                                                   max_shape=(1, 64, 64), compute_capability="8.9"))
    print(report.convolutions)
    assert report.precision == "fp8" and len(report.convolutions.get("FP8", [])) >= 20


def test_the_plugin_lowering_takes_its_native_twins_qdq(ckpt, tmp_path):
    """--int8 --dynconv plugin: ONNX Runtime cannot run the custom op, so the native twin is calibrated and gated,
    and the plugin file gets Q/DQ around the same convolutions with the same scales; the custom op stays float."""
    from onnx import numpy_helper

    run = lambda *args: CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--check-size", "64", *map(str, args)])  # noqa: E731
    native, plugin = tmp_path / "native.onnx", tmp_path / "plugin.onnx"
    for out, extra in ((native, []), (plugin, ["--dynconv", "plugin"])):
        result = run("--int8", "--output", out, *extra)
        assert result.exit_code == 0, result.output
    meta = _meta(plugin)
    assert meta["madf.precision"] == "int8" and meta["madf.lowering"] == "plugin"
    assert meta["madf.quant_gated_on"] == "native lowering"
    assert float(meta["madf.quant_psnr_db"]) >= float(meta["madf.quant_gate_db"]) == 40

    def scales(path):
        model = onnx.load(str(path))
        values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        return model, {n.input[0]: float(values[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}

    lowered, got = scales(plugin)
    _, want = scales(native)
    assert got and all(want[t] == v for t, v in got.items())   # the native twin's calibration, tensor by tensor
    # the custom op stays float: its generator weights and biases are the float initializers, not dequantized INT8
    floats = {i.name for i in lowered.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    custom = [n for n in lowered.graph.node if n.op_type == "MADFDynamicFilter"]
    assert len(custom) == json.loads(meta["madf.config"])["levels"]   # one per level, as exported
    assert all(n.input[2] in floats and n.input[3] in floats for n in custom)


def test_madf_inpaint_and_madf_bench_run_an_int8_file(int8, tmp_path):
    from madf.cli.bench import main as bench_main
    from madf.cli.inpaint import main as inpaint_main

    from conftest import random_pair
    image, hole = random_pair(40, 56, seed=7)
    Image.fromarray(image).save(tmp_path / "p.png")
    Image.fromarray((hole * 255).astype(np.uint8)).save(tmp_path / "m.png")
    result = CliRunner().invoke(inpaint_main, ["--model", str(int8), "--image", str(tmp_path / "p.png"), "--mask",
                                               str(tmp_path / "m.png"), "--output", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    filled = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    assert np.array_equal(filled[~hole], image[~hole]) and not np.array_equal(filled, image)
    result = CliRunner().invoke(bench_main, ["--model", str(int8), "--size", "64", "--runs", "3",
                                             "--warmup-runs", "1"])
    print(result.output)
    assert result.exit_code == 0, result.output
    assert "int8" in result.output
