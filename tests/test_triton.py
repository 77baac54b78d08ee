"""madf-build / madf-export --triton-repo: the repository's files, its config parsed with Triton's own schema."""
import json
import shutil

import pytest
from click.testing import CliRunner

from madf.engines.triton import triton_config, write_triton_repo
from madf.common.errors import ModelError


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
    side["profile"]["image"]["min"][0] = 2   # min N > 1: the batch dim is the model's, not Triton's
    config = _parse(triton_config(side, "fixed"))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [-1, 3, -1, -1]
    assert not config.HasField("dynamic_batching")


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
    from conftest import TINY
    from madf.model.checkpoint import save_checkpoint
    from madf.cli.export import main as export_main
    from madf.model.network import build_model
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), ckpt)
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--output", str(tmp_path / "tiny.onnx"),
                                              "--max", "4x64x64", "--triton-repo", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tiny.plan").is_file()
    config = _parse((tmp_path / "models" / "madf" / "config.pbtxt").read_text())
    assert config.max_batch_size == 4
