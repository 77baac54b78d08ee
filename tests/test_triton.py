"""madf-build / madf-export --triton-repo: the repository's files, its config parsed with Triton's own schema."""
import json
import shutil

import pytest
from click.testing import CliRunner

from madf.common.errors import ModelError
from madf.engines.triton import triton_config, write_triton_repo


def _parse(text):
    text_format = pytest.importorskip("google.protobuf.text_format")
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    return text_format.Parse(text, model_config_pb2.ModelConfig())   # raises on anything Triton would reject


def test_repository_layout_and_config(plan, tmp_path):
    repo = tmp_path / "models"
    folder = write_triton_repo(repo, plan, name="inpaint", instances=2, max_queue_delay_us=500)
    assert folder == repo / "inpaint"
    assert (folder / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert json.loads((folder / "1" / "model.plan.json").read_text())["format"] == "madf-engine/1"
    config = _parse((folder / "config.pbtxt").read_text())
    assert config.name == "inpaint" and config.platform == "tensorrt_plan"
    assert config.max_batch_size == 2                              # the profile's max N (it starts at 1)
    assert [(i.name, list(i.dims)) for i in config.input] == [("image", [3, -1, -1]), ("mask", [1, -1, -1])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("inpainted", [3, -1, -1])]
    assert config.input[0].data_type == 11                         # TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [2]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == 1   # KIND_GPU
    assert config.parameters["madf.multiple"].string_value == "16"
    readme = (repo / "README.md").read_text()
    assert "tritonserver --model-repository=/models" in readme and "multiples of 16" in readme
    assert "TensorRT-RTX" in readme or "tensorrt-rtx" not in readme


def test_fixed_batch_profiles_are_not_batched_by_triton(plan):
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    side["profile"]["image"]["min"][0] = side["profile"]["image"]["max"][0] = 2   # one fixed N: the model's dim
    config = _parse(triton_config(side, "fixed"))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [-1, 3, -1, -1]
    assert not config.HasField("dynamic_batching")


def test_a_profile_that_cannot_take_batch_one_is_refused(plan):
    """min N = 2 < max N: Triton would send batches of 1 the engine cannot run (it wrote max_batch_size 0)."""
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    side["profile"]["image"]["min"][0], side["profile"]["image"]["max"][0] = 2, 4
    with pytest.raises(ModelError, match="build it with --min 1xHxW"):
        triton_config(side, "m")


def test_names_and_texts_are_escaped_and_the_repo_is_readable(plan, tmp_path):
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    side["contract"]["text"] = 'image "RGB" \\ mask\nnext'
    config = _parse(triton_config(side, 'odd"name'))
    assert config.name == 'odd"name' and config.parameters["madf.contract"].string_value == side["contract"]["text"]
    folder = write_triton_repo(tmp_path / "models", plan)
    assert (folder.stat().st_mode & 0o055) == 0o055   # group and others can list and read it (mkdtemp made 0700)


def test_the_plugin_library_lives_inside_the_model(plan, tmp_path):
    """Triton takes every top-level folder of a repository for a model: a plugins/ folder there fails to load."""
    plugin_plan = tmp_path / "p.plan"
    shutil.copy(plan, plugin_plan)
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    side["lowering"] = "plugin"
    plugin_plan.with_name("p.plan.json").write_text(json.dumps(side))
    lib = tmp_path / "libmadf_plugins.so"
    lib.write_bytes(b"\x7fELF stand-in")
    repo = tmp_path / "models"
    folder = write_triton_repo(repo, plugin_plan, name="p", plugin_libs=[lib])
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "p"]
    assert (folder / "1" / lib.name).read_bytes() == lib.read_bytes()
    assert "plugins=/models/p/1/libmadf_plugins.so" in (repo / "README.md").read_text()


def test_rewriting_replaces_the_model_whole_and_errors_are_clear(plan, tmp_path):
    repo = tmp_path / "models"
    write_triton_repo(repo, plan)
    (repo / "madf" / "stale.txt").write_text("old")
    write_triton_repo(repo, plan)
    assert not (repo / "madf" / "stale.txt").exists()
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "madf"]   # no staging folders left
    plugin_plan = tmp_path / "p.plan"
    shutil.copy(plan, plugin_plan)
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    side["lowering"] = "plugin"
    plugin_plan.with_name("p.plan.json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match="pass --plugin-lib"):
        write_triton_repo(repo, plugin_plan, name="p")
    with pytest.raises(ModelError, match="plain folder name"):
        write_triton_repo(repo, plan, name="../x")
    assert not (repo / "p").exists()


def test_export_writes_a_repository(tmp_path):
    pytest.importorskip("tensorrt_rtx_bindings")
    from madf.cli.export import main as export_main
    from madf.model.checkpoint import save_checkpoint
    from madf.model.network import build_model

    from conftest import TINY
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), ckpt)
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--output", str(tmp_path / "tiny.onnx"),
                                              "--max", "4x64x64", "--triton-repo", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny.plan").is_file()
    config = _parse((tmp_path / "models" / "madf" / "config.pbtxt").read_text())
    assert config.max_batch_size == 4


def test_a_min_only_profile_triton_cannot_serve_is_refused_before_the_build(exported, tmp_path):
    """--min 2x... alone: the default max N (4) makes a profile from 2 to 4, refused before anything is built."""
    from madf.cli.build import main as build_main
    _, files = exported
    result = CliRunner().invoke(build_main, ["--onnx", str(files["native"]), "--output", str(tmp_path / "m.plan"),
                                             "--min", "2x16x16", "--triton-repo", str(tmp_path / "models")])
    assert result.exit_code == 1 and "starts at N = 2" in result.output, result.output
    assert not (tmp_path / "m.plan").exists() and not (tmp_path / "models").exists()


def test_the_readme_names_the_outputs_config_pbtxt_has(plan, tmp_path):
    """A --raw-outputs engine's README names recovery / refined_* (what config.pbtxt has), not `inpainted`."""
    from madf.engines.triton import _readme
    side = json.loads(plan.with_name(plan.name + ".json").read_text())
    image = side["contract"]["outputs"][0]
    side["contract"]["outputs"] = [dict(image, name=n) for n in ("recovery", "refined_1", "refined_2")]
    config = _parse(triton_config(side, "raw"))
    readme = _readme(tmp_path, "raw", side, [])
    named = [o.name for o in config.output]
    assert named == ["recovery", "refined_1", "refined_2"]
    assert all(f"`{n}`" in readme for n in named) and "`inpainted`" not in readme
    side["io"] = "uint8"
    side["contract"]["outputs"] = [dict(image, name="inpainted", dtype="uint8")]
    assert "as_numpy('inpainted')" in _readme(tmp_path, "u8", side, [])


def test_the_documented_http_client_imports():
    """The README's snippet uses tritonclient.http: installed with madf (tritonclient[grpc,http])."""
    http = pytest.importorskip("tritonclient.http", reason="pip install -e '.[dev]' installs tritonclient[http]")
    assert hasattr(http, "InferenceServerClient") and hasattr(http, "InferInput")
