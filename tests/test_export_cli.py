import json

import pytest
from click.testing import CliRunner

from madf.cli.export import main as export_main
from madf.cli.parity import main as parity_main
from madf.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from madf.model.network import build_model

    from conftest import TINY
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), path)
    return path


def test_export_with_check_passes_and_prints_the_table(ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--output", str(out), "--check",
                                              "--check-size", "64"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "max abs" in result.output and "pass" in result.output and "FAIL" not in result.output
    assert ".madf-" not in result.output and "m.onnx" in result.output   # the user's name, never the temp file's
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta["madf.source_weights"].startswith("verified sha256 "), meta.get("madf.source_weights")


def test_an_export_of_weights_without_a_digest_says_so(tmp_path):
    """An official-style .pth carries no digest: the ONNX file's own digest must not read as a check of it."""
    import onnx
    import torch

    from madf.model.checkpoint import NO_DIGEST
    from madf.model.network import build_model

    from conftest import TINY
    torch.save(build_model(TINY, seed=0).state_dict(), tmp_path / "plain.pth")
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(export_main, ["--ckpt", str(tmp_path / "plain.pth"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert meta["madf.source_weights"] == NO_DIGEST


def test_parity_cli_fp16_tolerances(ckpt, tmp_path, exported):
    out = tmp_path / "m16.onnx"
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--output", str(out), "--fp16"])
    assert result.exit_code == 0, result.output
    assert "FP16 headroom" in result.output
    ok = CliRunner().invoke(parity_main, ["--ckpt", str(ckpt), "--model", str(out), "--size", "64", "--photos", "2",
                                          "--json", str(tmp_path / "p.json")])
    assert ok.exit_code == 0, ok.output
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["precision"] == "fp16" and report["atol"] == 5e-2 and report["passed"]
    assert all(0 < r["max_abs"] < 5e-2 for r in report["rows"])       # FP16 is close, and not bit-identical
    strict = CliRunner().invoke(parity_main, ["--ckpt", str(ckpt), "--model", str(out), "--size", "64",
                                              "--photos", "1", "--atol", "1e-9"])
    assert strict.exit_code == 1 and "FAIL" in strict.output and "differ past the tolerance" in strict.output


def test_check_refuses_the_plugin_lowering(ckpt, tmp_path):
    result = CliRunner().invoke(export_main, ["--ckpt", str(ckpt), "--output", str(tmp_path / "p.onnx"),
                                              "--dynconv", "plugin", "--check"])
    assert result.exit_code == 2 and "--dynconv native" in result.output


def test_bad_checkpoint_is_one_line(tmp_path):
    (tmp_path / "x.pth").write_bytes(b"garbage bytes here")
    result = CliRunner().invoke(export_main, ["--ckpt", str(tmp_path / "x.pth"), "--output",
                                              str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
