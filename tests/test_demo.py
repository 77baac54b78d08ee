import json

from click.testing import CliRunner

from madf.cli.demo import DEMO_PHOTOS
from madf.cli.demo import main as demo_main
from madf.inpaint import imaging


def test_random_init_demo_says_so(tmp_path):
    result = CliRunner().invoke(demo_main, ["--output", str(tmp_path), "--random-init"])
    assert result.exit_code == 0, result.output
    assert "seeded random-init" in result.output and "not inpainting quality" in result.output


def test_demo_runs_the_whole_path(tmp_path):
    result = CliRunner().invoke(demo_main, ["--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "known pixels bit-exact: yes" in result.output
    assert "model: bundled madf-small-photos.safetensors" in result.output or "seeded random-init" in result.output
    results = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert len(results) == DEMO_PHOTOS
    grid = imaging.read_image(tmp_path / "grid.png")
    assert grid.shape == (DEMO_PHOTOS * 256, 3 * 256, 3)
    # the parity table: one row per photo, max abs error of the rewrite vs the official unfold well below 8 bits
    rows = [line.split() for line in result.output.splitlines() if line.split()[:1] and line.split()[0] in results]
    assert len(rows) == DEMO_PHOTOS and all(float(r[3]) < 1e-4 for r in rows)
    # the deployment half: ONNX export, ONNX Runtime results beside PyTorch's, parity, the engine
    assert (tmp_path / "model.onnx").is_file()
    assert sorted(p.name for p in (tmp_path / "results-onnx").iterdir()) == results
    assert "verdict" in result.output and "FAIL" not in result.output
    assert ((tmp_path / "model.plan").is_file() and (tmp_path / "model.plan.json").is_file()) \
        or "skipped engine build" in result.output
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert set(bench["results"]) == {"torch", "onnxruntime"} and "onnxruntime " in result.output
