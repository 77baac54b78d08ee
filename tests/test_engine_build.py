"""Engine building without a GPU: TensorRT-RTX parses the native ONNX and serializes a real engine."""
import pytest

from madf.common.errors import ModelError
from madf.engines.build import BuildOptions, build_engine, load_tensorrt, parse_shape
from madf.model.network import build_model


@pytest.fixture(scope="module")
def trt_backend():
    try:
        return load_tensorrt("auto")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no TensorRT / TensorRT-RTX Python module: {exc}")


@pytest.mark.parametrize("variant", ["native", "fp16"])
def test_builds_an_engine_from_the_native_onnx(exported, trt_backend, tmp_path, variant):
    _, paths = exported
    report = build_engine(paths[variant], tmp_path / "m.plan",
                          BuildOptions(min_shape=(1, 16, 16), opt_shape=(1, 64, 64), max_shape=(2, 128, 128)))
    print(f"{report.backend} {report.version}: {report.engine_bytes / 1e6:.1f} MB engine ({variant})")
    assert [(t["name"], t["shape"]) for t in report.inputs] == [("image", (-1, 3, -1, -1)), ("mask", (-1, 1, -1, -1))]
    assert [(t["name"], t["shape"]) for t in report.outputs] == [("inpainted", (-1, 3, -1, -1))]
    assert report.profile["image"] == ((1, 3, 16, 16), (1, 3, 64, 64), (2, 3, 128, 128))
    assert report.profile["mask"] == ((1, 1, 16, 16), (1, 1, 64, 64), (2, 1, 128, 128))
    data = (tmp_path / "m.plan").read_bytes()
    assert len(data) == report.engine_bytes > 100_000


def test_profile_must_respect_the_multiple(exported, trt_backend, tmp_path):
    _, paths = exported
    with pytest.raises(ModelError, match="multiples of 16"):
        build_engine(paths["native"], tmp_path / "m.plan", BuildOptions(max_shape=(1, 100, 128)))
    assert not (tmp_path / "m.plan").exists()


def test_plugin_lowering_without_the_plugin_is_a_clear_error(exported, trt_backend, tmp_path):
    # TensorRT-RTX has no plugin layers at all (its parser would abort the process): refused before parsing.
    # TensorRT without --plugin-lib: its parser finds no creator, and the message names --plugin-lib.
    _, paths = exported
    expected = "has no plugin layers" if trt_backend[1] == "tensorrt-rtx" else "MADFDynamicFilter plugin library"
    with pytest.raises(ModelError, match=expected):
        build_engine(paths["plugin"], tmp_path / "p.plan")
    assert not (tmp_path / "p.plan").exists()


def test_parse_shape():
    assert parse_shape("2x256x512") == (2, 256, 512)
    with pytest.raises(ValueError, match="not NxHxW"):
        parse_shape("256x256")


# ---- madf-build, the sidecar, madf-export --engine ------------------------------------------------------------------

from click.testing import CliRunner  # noqa: E402

from madf.cli.build import main as build_main  # noqa: E402
from madf.engines.sidecar import FORMAT, read_sidecar, sha256, sidecar_path  # noqa: E402

SMALL_PROFILE = ["--min", "1x16x16", "--opt", "1x64x64", "--max", "2x128x128"]


def _build(args):
    result = CliRunner().invoke(build_main, args)
    print(result.output)
    return result


def test_madf_build_writes_engine_and_sidecar(exported, trt_backend, tmp_path):
    _, paths = exported
    plan = tmp_path / "fp16.plan"
    result = _build(["--onnx", str(paths["fp16"]), "--output", str(plan), "--fp16", *SMALL_PROFILE])
    assert result.exit_code == 0, result.output
    side = read_sidecar(plan)
    assert side["format"] == FORMAT and sidecar_path(plan).name == "fp16.plan.json"
    assert side["engine"] == {"file": "fp16.plan", "bytes": plan.stat().st_size, "sha256": sha256(plan)}
    assert side["onnx"]["sha256"] == sha256(paths["fp16"])
    assert side["model"] == {"levels": 4, "width": 0.125, "refinement_decoders": 2, "train_size": 256}
    assert side["multiple"] == 16
    assert (side["lowering"], side["precision"]) == ("native", "fp16")
    assert side["profile"]["image"] == {"min": [1, 3, 16, 16], "opt": [1, 3, 64, 64], "max": [2, 3, 128, 128]}
    assert side["profile"]["mask"]["max"] == [2, 1, 128, 128]
    assert [t["name"] for t in side["contract"]["inputs"]] == ["image", "mask"]
    assert side["contract"]["outputs"][0]["dtype"] == "float32"        # FP16 inside, FP32 at the contract
    assert side["tensorrt"]["backend"] == trt_backend[1] and side["tensorrt"]["version"] == trt_backend[0].__version__
    if trt_backend[1] == "tensorrt-rtx":
        assert side["target"]["compute_capability"] == "8.9"
    assert side["version_compatible"] is False and side["plugins"] == []
    assert "lowering / precision" in result.output and "native / fp16" in result.output


def test_fp16_from_an_fp32_onnx(exported, trt_backend, tmp_path):
    trt, name = trt_backend
    _, paths = exported
    result = _build(["--onnx", str(paths["native"]), "--output", str(tmp_path / "x.plan"), "--fp16", *SMALL_PROFILE])
    if name == "tensorrt" and hasattr(trt.BuilderFlag, "FP16"):   # TensorRT 10: weakly typed cast, with a warning
        assert result.exit_code == 0 and read_sidecar(tmp_path / "x.plan")["precision"] == "fp16"
    else:
        assert result.exit_code == 1 and "madf-export --fp16" in result.output
        assert not (tmp_path / "x.plan").exists()


def test_version_compatible_and_timing_cache(exported, trt_backend, tmp_path):
    _, paths = exported
    cache = tmp_path / "timing.cache"
    plan = tmp_path / "vc.plan"
    result = _build(["--onnx", str(paths["native"]), "--output", str(plan), "--version-compatible",
                     "--exclude-lean-runtime", "--timing-cache", str(cache), *SMALL_PROFILE])
    assert result.exit_code == 0, result.output
    side = read_sidecar(plan)
    assert side["version_compatible"] is True and side["lean_runtime_excluded"] is True
    # TensorRT writes the cache; TensorRT-RTX keeps none (its timing-cache API is a no-op), so none is written
    assert cache.is_file() == (trt_backend[1] == "tensorrt")
    again = _build(["--onnx", str(paths["native"]), "--output", str(tmp_path / "again.plan"),
                    "--timing-cache", str(cache), *SMALL_PROFILE])     # an existing cache is read back
    assert again.exit_code == 0, again.output
    # Embedding the lean runtime needs libnvinfer_lean; without it the error names the way out.
    embedded = _build(["--onnx", str(paths["native"]), "--output", str(tmp_path / "e.plan"), "--version-compatible",
                       *SMALL_PROFILE])
    if embedded.exit_code == 0:
        assert read_sidecar(tmp_path / "e.plan")["lean_runtime_excluded"] is False
    else:
        assert "--exclude-lean-runtime" in embedded.output and not (tmp_path / "e.plan").exists()


def test_build_errors_are_one_line(exported, trt_backend, tmp_path):
    _, paths = exported
    cases = {
        "plugin library": ["--onnx", str(paths["plugin"]), "--plugin-lib", str(tmp_path / "libnone.so")],
        "not a readable ONNX": ["--onnx", str(tmp_path / "bad.onnx")],
        "no such ONNX file": ["--onnx", str(tmp_path / "missing.onnx")],
        "NxHxW": ["--onnx", str(paths["native"]), "--max", "1024"],
        "only": ["--onnx", str(paths["native"]), "--exclude-lean-runtime"],
    }
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    for expected, args in cases.items():
        result = _build(args + ["--output", str(tmp_path / "x.plan")])
        assert result.exit_code != 0 and expected in result.output, (expected, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "x.plan").exists() and not (tmp_path / "x.plan.json").exists()


def test_sidecar_errors(tmp_path):
    from madf.common.errors import ModelError
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"engine")
    with pytest.raises(ModelError, match="rebuild the engine with madf-build"):
        read_sidecar(plan)
    assert read_sidecar(plan, required=False) is None
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        read_sidecar(plan)
    sidecar_path(plan).write_text('{"format": "other/1"}')
    with pytest.raises(ModelError, match="not a madf-engine/1 sidecar"):
        read_sidecar(plan)


def test_export_chains_the_build(trt_backend, tmp_path):
    from madf.cli.export import main as export_main
    from madf.model.checkpoint import save_checkpoint

    from conftest import TINY
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), ckpt)
    plan = tmp_path / "tiny.plan"
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--output", str(tmp_path / "tiny.onnx"),
                                              "--engine", str(plan), *SMALL_PROFILE])
    assert result.exit_code == 0, result.output
    side = read_sidecar(plan)
    assert side["onnx"]["file"] == "tiny.onnx" and side["precision"] == "fp32" and plan.stat().st_size > 100_000
