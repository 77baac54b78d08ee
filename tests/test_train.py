import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, write_official_checkpoint
from madf.checkpoint import load_checkpoint
from madf.errors import CheckpointError
from madf.train import MODEL_FILE, STATE_FILE, TrainConfig, train


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def _config(photos, output, **kw):
    base = dict(images=str(photos), output=str(output), model=TINY.to_dict(), size=32, batch_size=2, steps=4,
                perceptual="none", save_every=2, grid_every=2, log_every=1, workers=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path):
    return load_checkpoint(path).state_dict()


def test_short_run_writes_everything(photos, tmp_path):
    assert train(_config(photos, tmp_path / "run")) == 4
    run = tmp_path / "run"
    assert (run / STATE_FILE).is_file() and (run / "config.json").is_file()
    assert sorted(p.name for p in (run / "grids").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    grid = np.asarray(Image.open(run / "grids" / "step_0000004.png"))
    assert grid.shape == (2 * 32, 6 * 32, 3)          # 2 samples x (input, mask, 3 outputs, ground truth)
    assert load_checkpoint(run / MODEL_FILE).config == TINY
    assert any((run / "tensorboard").iterdir())
    state = torch.load(run / STATE_FILE, weights_only=False)
    assert state["step"] == 4 and "exp_avg" in state["optimizer"]["state"][0]


def test_resume_is_exact(photos, tmp_path):
    train(_config(photos, tmp_path / "straight", steps=6))
    train(_config(photos, tmp_path / "split", steps=3, save_every=3))
    assert train(_config(photos, tmp_path / "split", steps=6, save_every=3), resume=True) == 6
    a, b = _weights(tmp_path / "straight" / MODEL_FILE), _weights(tmp_path / "split" / MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=False)["optimizer"]["state"]
    got = torch.load(tmp_path / "split" / STATE_FILE, weights_only=False)["optimizer"]["state"]
    assert all(torch.equal(ref[i]["exp_avg_sq"], got[i]["exp_avg_sq"]) for i in ref)


def test_resume_refuses_another_model(photos, tmp_path):
    train(_config(photos, tmp_path / "run", steps=2))
    other = dict(TINY.to_dict(), refinement_decoders=1)
    with pytest.raises(CheckpointError, match="resume with the same options"):
        train(_config(photos, tmp_path / "run", steps=4, model=other), resume=True)
    with pytest.raises(CheckpointError, match="no .*train_state.pt; start without --resume"):
        train(_config(photos, tmp_path / "fresh"), resume=True)


def test_fine_tune_from_an_official_checkpoint(photos, tmp_path, tiny_net):
    ckpt = write_official_checkpoint(tiny_net, tmp_path / "official.pth")
    cfg = _config(photos, tmp_path / "ft", steps=2, init=str(ckpt), model={"levels": 7})
    train(cfg)
    tuned = _weights(tmp_path / "ft" / MODEL_FILE)
    start = tiny_net.state_dict()
    assert tuned.keys() == start.keys()
    changed = [k for k in start if start[k].is_floating_point() and not torch.equal(start[k], tuned[k])]
    assert changed                                    # it trained from those weights, in their config


def test_sigterm_saves_and_resume_continues(photos, tmp_path):
    out = tmp_path / "run"
    args = ["--images", str(photos), "--output", str(out), "--levels", "4", "--width", "0.125", "--size", "32",
            "--batch-size", "2", "--steps", "100000", "--perceptual", "none", "--save-every", "100000",
            "--grid-every", "0", "--workers", "0", "--device", "cpu", "--log-every", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "madf.cli.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (out / "config.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)                                   # let it take some steps
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    step = torch.load(out / STATE_FILE, weights_only=False)["step"]
    assert 0 < step < 100000 and f"stopped at step {step}" in output
    assert train(_config(photos, out, model=dict(TINY.to_dict()), steps=step + 2,
                         save_every=100000), resume=True) == step + 2


def test_ddp_two_processes_on_gloo(photos, tmp_path):
    out = tmp_path / "ddp"
    args = ["--images", str(photos), "--output", str(out), "--levels", "4", "--width", "0.125", "--size", "32",
            "--batch-size", "2", "--steps", "3", "--perceptual", "none", "--save-every", "3", "--grid-every", "0",
            "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(_free_port()), "-m", "madf.cli.train", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / STATE_FILE, weights_only=False)
    assert state["step"] == 3 and state["world"] == 2
    assert load_checkpoint(out / MODEL_FILE).config == TINY


@pytest.mark.parametrize("args, message", [
    (["--images", "/nonexistent", "--perceptual", "vgg"], "image folder /nonexistent: no such folder"),
    (["--size", "100"], "--size 100 is not a multiple of 16"),
    (["--perceptual", "vgg"], "pass --vgg-weights vgg16-397923af.pth"),
])
def test_cli_errors_are_one_line(photos, tmp_path, args, message, monkeypatch):
    from click.testing import CliRunner
    from madf.cli.train import main
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-cache"))
    base = ["--images", str(photos), "--output", str(tmp_path / "run"), "--levels", "4", "--width", "0.125",
            "--size", "32", "--steps", "1", "--workers", "0", "--perceptual", "none"]
    result = CliRunner().invoke(main, base + args)
    assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output
    assert not (tmp_path / "run" / STATE_FILE).exists()
