"""Engine building without a GPU: TensorRT-RTX parses the native ONNX and serializes a real engine."""
import pytest

from madf.engines.build import BuildOptions, build_engine, load_tensorrt, parse_shape
from madf.errors import ModelError


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
    _, paths = exported
    with pytest.raises(ModelError, match="MADFDynamicFilter plugin library"):
        build_engine(paths["plugin"], tmp_path / "p.plan")


def test_parse_shape():
    assert parse_shape("2x256x512") == (2, 256, 512)
    with pytest.raises(ValueError, match="not NxHxW"):
        parse_shape("256x256")
