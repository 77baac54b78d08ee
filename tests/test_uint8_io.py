"""madf-export --io uint8: raw uint8 photos of any size in, the composite out, everything else inside the graph.

Judged against the float file through the Python Inpainter (the host-side pad / crop / round / composite it
replaces): hole pixels within 1 level of 255 (printed), known pixels the input's bytes."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY, random_pair

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from madf.common.errors import InputError, ModelError  # noqa: E402
from madf.export.onnx import ExportError, ExportOptions, export_onnx  # noqa: E402
from madf.export.uint8_io import convert_file  # noqa: E402
from madf.inpaint.inpainter import Inpainter  # noqa: E402
from madf.inpaint.strategy import Strategy  # noqa: E402
from madf.runtime.onnxruntime import OnnxRuntimeBackend  # noqa: E402

ODD_SIZES = [(37, 53), (5, 3), (1, 7), (16, 16), (100, 20), (2, 2)]


@pytest.fixture(scope="module")
def u8(exported, tmp_path_factory):
    """{name: path}: one real madf-export --io uint8, and the shared float exports converted (inverted, FP16,
    plugin) - the same wrap the exporter applies."""
    net, files = exported
    folder = tmp_path_factory.mktemp("u8")
    out = {"native": folder / "u8.onnx", "inverted": folder / "u8-inv.onnx", "fp16": folder / "u8-fp16.onnx",
           "plugin": folder / "u8-plugin.onnx"}
    export_onnx(net, out["native"], ExportOptions(io="uint8"))
    convert_file(files["native"], out["inverted"], invert_mask=True)
    convert_file(files["fp16"], out["fp16"])
    convert_file(files["plugin"], out["plugin"])
    return files, out


def _levels(a, b):
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_odd_sizes_match_the_float_path(u8):
    floats, files = u8
    # the float path's network output (the whole frame, no border matching): what the graph alone computes
    reference = Inpainter(OnnxRuntimeBackend(floats["native"]), strategy=Strategy("full", match_border=False))
    backend = OnnxRuntimeBackend(files["native"])
    assert backend.io == "uint8"
    session = backend.session
    assert [(i.name, i.type) for i in session.get_inputs()] == [("image", "tensor(uint8)"), ("mask", "tensor(uint8)")]
    for h, w in ODD_SIZES:
        image, hole = random_pair(h, w, seed=h * w)
        expected = reference(image, hole)
        raw = session.run(None, {"image": image[None], "mask": (hole * 255).astype(np.uint8)[None, ..., None]})[0][0]
        diff = _levels(raw, expected)
        print(f"{h}x{w}: max {diff} levels between the uint8 graph and the float path")
        assert raw.dtype == np.uint8 and raw.shape == (h, w, 3)
        assert diff <= 1
        assert np.array_equal(raw[~hole], image[~hole])   # known pixels: the input's bytes


def test_batch_of_several_in_one_call(u8):
    _, files = u8
    backend = OnnxRuntimeBackend(files["native"])
    pairs = [random_pair(29, 41, seed=s) for s in range(3)]
    images, holes = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    together = backend.run_uint8(images, holes)
    for i, (image, hole) in enumerate(pairs):
        alone = backend.run_uint8(image[None], hole[None])[0]
        assert np.array_equal(together[i], alone)


def test_inverted_polarity(u8):
    _, files = u8
    normal, inverted = OnnxRuntimeBackend(files["native"]), OnnxRuntimeBackend(files["inverted"])
    assert inverted.inverted_mask and not normal.inverted_mask
    image, hole = random_pair(33, 21, seed=3)
    # the same hole, written white-on-black for one file and black-on-white for the other
    a = normal.session.run(None, {"image": image[None], "mask": (hole * 255).astype(np.uint8)[None, ..., None]})[0]
    b = inverted.session.run(None, {"image": image[None], "mask": (~hole * 255).astype(np.uint8)[None, ..., None]})[0]
    assert np.array_equal(a, b)
    # and run_uint8 takes holes, encoding them in each file's polarity
    assert np.array_equal(inverted.run_uint8(image[None], hole[None]), a)


def test_inpainter_batches_and_crops_through_the_graph(u8):
    floats, files = u8
    pairs = [random_pair(h, w, seed=i) for i, (h, w) in enumerate([(37, 53), (37, 53), (5, 3), (900, 40)])]
    expected = list(Inpainter(OnnxRuntimeBackend(floats["native"]), batch_size=3).inpaint_many(pairs))
    got = list(Inpainter(OnnxRuntimeBackend(files["native"]), batch_size=3).inpaint_many(pairs))
    for (image, hole), e, g in zip(pairs, expected, got):
        assert _levels(e, g) <= 1 and np.array_equal(g[~hole], image[~hole])


def test_fp16_file(u8):
    floats, files = u8
    # the float path's network output (the whole frame, no border matching): what the graph alone computes
    reference = Inpainter(OnnxRuntimeBackend(floats["native"]), strategy=Strategy("full", match_border=False))
    backend = OnnxRuntimeBackend(files["fp16"])
    assert backend.metadata["madf.precision"] == "fp16" and backend.io == "uint8"
    image, hole = random_pair(45, 30, seed=7)
    got = backend.run_uint8(image[None], hole[None])[0]
    diff = _levels(got, reference(image, hole))
    print(f"fp16 uint8 file vs FP32 float path: max {diff} levels")
    assert diff <= 13   # parity's FP16 tolerance, 0.05 of 255
    assert np.array_equal(got[~hole], image[~hole])


def test_plugin_lowering_is_wrapped(u8):
    _, files = u8
    model = onnx.load(str(files["plugin"]))
    onnx.checker.check_model(model, full_check=True)
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert ("madf", "MADFDynamicFilter") in ops
    types = [i.type.tensor_type.elem_type for i in model.graph.input]
    assert types == [onnx.TensorProto.UINT8, onnx.TensorProto.UINT8]
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["madf.io"] == "uint8" and meta["madf.lowering"] == "plugin"


def test_float_contract_and_parity_on_a_uint8_file(u8, tmp_path):
    """madf-parity and the float contract accept a uint8 file; the table's tolerance includes 8-bit rounding."""
    floats, files = u8
    from madf.inpaint import imaging
    backend = OnnxRuntimeBackend(files["native"])
    image, hole = random_pair(32, 48, seed=1)
    contract = imaging.to_contract(image, hole, 16)
    out = backend(*contract)
    assert out.dtype == np.float32 and out.shape == (1, 3, 32, 48)
    reference = OnnxRuntimeBackend(floats["native"])(*contract)
    stats = imaging.compare(reference, out)
    print(f"float contract on the uint8 file: max abs {stats['max_abs']:.2e}, PSNR {stats['psnr']:.1f} dB")
    assert stats["max_abs"] <= 0.5 / 255 + 1e-4
    from madf.cli.parity import main as parity_main
    report = tmp_path / "parity.json"
    result = CliRunner().invoke(parity_main, ["--model", str(floats["native"]), "--engine", str(files["native"]),
                                              "--size", "32"])
    assert result.exit_code != 0   # an ONNX file given as --engine is named
    result = CliRunner().invoke(parity_main, ["--model", str(files["native"]), "--ckpt", str(_ckpt(tmp_path)),
                                              "--size", "32", "--photos", "2", "--json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["passed"] and data["atol"] == pytest.approx(1e-4 + 0.5 / 255) and "uint8" in data["precision"]


def _ckpt(tmp_path):
    from madf.model.checkpoint import save_checkpoint
    from madf.model.network import build_model
    path = tmp_path / "tiny.safetensors"
    if not path.exists():
        save_checkpoint(build_model(TINY, seed=0), path)
    return path


def test_bench_times_the_uint8_call(u8):
    from madf.runtime.bench import BenchSettings, make_inputs, run_benchmark
    _, files = u8
    backend = OnnxRuntimeBackend(files["native"])
    settings = BenchSettings(batch=1, height=32, width=32, warmup_s=0, warmup_runs=1, runs=2)
    result = run_benchmark(backend, *make_inputs(settings, 16), settings)
    assert result["io"] == "uint8" and result["bytes_per_call"] == 32 * 32 * 7


def test_bad_input_and_options(u8, tmp_path):
    floats, files = u8
    with pytest.raises(ModelError, match="--io uint8"):
        OnnxRuntimeBackend(floats["native"]).run_uint8(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8), bool))
    with pytest.raises(ExportError, match="--raw-outputs needs --io float"):
        ExportOptions(io="uint8", raw_outputs=True).validate(16)
    with pytest.raises(ExportError, match="--invert-mask"):
        ExportOptions(invert_mask=True).validate(16)
    ExportOptions(io="uint8", height=37, width=53).validate(16)   # any fixed size for uint8 files
    with pytest.raises(ModelError, match="not a float-contract file"):
        convert_file(files["native"], tmp_path / "twice.onnx")
    assert not (tmp_path / "twice.onnx").exists()
    # a file claiming an I/O kind madf does not write
    model = onnx.load(str(files["native"]))
    for p in model.metadata_props:
        if p.key == "madf.io":
            p.value = "int16"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ModelError, match="madf.io 'int16' is not one of"):
        OnnxRuntimeBackend(tmp_path / "bad.onnx")


def test_fixed_size_uint8_export(exported, tmp_path):
    """A fixed odd size: the input is that size exactly, the network inside the padded one."""
    net, _ = exported
    path = tmp_path / "fixed.onnx"
    export_onnx(net, path, ExportOptions(io="uint8", batch=2, height=21, width=35))
    backend = OnnxRuntimeBackend(path)
    assert backend.fixed_batch == 2 and backend.fixed_size == (21, 35)
    image, hole = random_pair(21, 35, seed=2)
    out = backend.run_uint8(image[None], hole[None])   # one item: the fixed batch is padded and cut back
    assert out.shape == (1, 21, 35, 3) and np.array_equal(out[0][~hole], image[~hole])
    with pytest.raises(InputError, match="exported for 35x21"):
        backend.run_uint8(np.zeros((1, 22, 35, 3), np.uint8), np.zeros((1, 22, 35), bool))


def test_cli_export_and_inpaint(u8, tmp_path):
    """madf-export --io uint8 then madf-inpaint --model on a photo of an odd size: the float file's result."""
    from PIL import Image

    from madf.cli.export import main as export_main
    from madf.cli.inpaint import main as inpaint_main
    floats, files = u8
    ckpt = _ckpt(tmp_path)
    out = tmp_path / "cli-u8.onnx"
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--io", "uint8", "--invert-mask",
                                              "--output", str(out)])
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["madf.io"] == "uint8" and meta["madf.mask"] == "inverted"
    image, hole = random_pair(43, 61, seed=5)
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray((hole * 255).astype(np.uint8)).save(tmp_path / "hole.png")
    for model, name in ((floats["native"], "float.png"), (out, "u8.png")):
        result = CliRunner().invoke(inpaint_main, ["--model", str(model), "--image", str(tmp_path / "photo.png"),
                                                   "--mask", str(tmp_path / "hole.png"),
                                                   "--output", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("float.png", "u8.png"))
    assert _levels(a, b) <= 1


def test_madf_eval_on_a_uint8_file_scores_like_the_float_file(u8, tmp_path):
    from PIL import Image

    from madf.cli.eval import main as eval_main
    floats, files = u8
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    scores = {}
    for name, model in (("float", floats["native"]), ("uint8", files["native"])):
        result = CliRunner().invoke(eval_main, ["--model", str(model), "--images", str(photos), "--size", "32",
                                                "--per-bucket", "1", "--output", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        scores[name] = json.loads((tmp_path / name / "eval.json").read_text())["summary"]["ALL"]["madf"]
    print("madf-eval ALL:", scores)
    for metric, value in scores["float"].items():
        assert scores["uint8"][metric] == pytest.approx(value, rel=1e-3, abs=1e-3), metric


def test_a_0_1_mask_fills_nothing_and_parity_says_so(u8):
    """The trap of a user's own script: a 0/1 mask is all known to a uint8 file (>= 128 = hole), so the photo comes
    back unchanged with no error; madf-parity's hole check fails such a model."""
    from madf.runtime import uint8
    from madf.runtime.parity import MIN_FILLED, compare, photo_feeds
    _, files = u8
    backend = OnnxRuntimeBackend(files["native"])
    image, hole = random_pair(32, 48, seed=2)
    out = backend._run(image[None], hole[None, ..., None].astype(np.uint8))   # 0/1, not 0/255
    assert np.array_equal(out[0], image)

    class ZeroOneMasks:   # the same file, fed as such a script feeds it
        io, multiple, inverted_mask = "uint8", backend.multiple, False

        def run_uint8(self, images, holes):
            return backend._run(images, holes.astype(np.uint8)[..., None])

        def __call__(self, image, mask):
            return uint8.run_contract(self, image, mask)

    rows, passed = compare({"file": backend, "0/1 masks": ZeroOneMasks()}, photo_feeds(32, count=2), atol=1.0)
    print([(r["backend"], f"{r['filled']:.0%}") for r in rows])
    assert not passed and all(r["filled"] < MIN_FILLED for r in rows)
    rows, passed = compare({"file": backend, "again": backend}, photo_feeds(32, count=2), atol=1.0)
    assert passed and all(r["filled"] > 0.5 for r in rows)
