import dataclasses
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from madf.common.errors import CheckpointError
from madf.model.checkpoint import load_checkpoint
from madf.model.network import MADFNet
from madf.training.trainer import MODEL_FILE, STATE_FILE, TrainConfig, train

from conftest import TINY, write_official_checkpoint


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
    assert load_checkpoint(run / MODEL_FILE).config == dataclasses.replace(TINY, train_size=32)   # --size recorded
    assert any((run / "tensorboard").iterdir())
    state = torch.load(run / STATE_FILE, weights_only=True)
    assert state["step"] == 4 and "exp_avg" in state["optimizer"]["state"][0]


def test_resume_is_exact(photos, tmp_path):
    train(_config(photos, tmp_path / "straight", steps=6))
    train(_config(photos, tmp_path / "split", steps=3, save_every=3))
    assert train(_config(photos, tmp_path / "split", steps=6, save_every=3), resume=True) == 6
    a, b = _weights(tmp_path / "straight" / MODEL_FILE), _weights(tmp_path / "split" / MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=True)["optimizer"]["state"]
    got = torch.load(tmp_path / "split" / STATE_FILE, weights_only=True)["optimizer"]["state"]
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


@pytest.mark.parametrize("workers, to", [("0", "process"), ("1", "group")])
def test_sigterm_saves_and_resume_continues(photos, tmp_path, workers, to):
    """SIGTERM to the trainer, or to its whole process group (as Ctrl-C or a job scheduler sends it: the DataLoader
    worker gets it too), saves and exits cleanly."""
    out = tmp_path / "run"
    args = ["--images", str(photos), "--output", str(out), "--levels", "4", "--width", "0.125", "--size", "32",
            "--batch-size", "2", "--steps", "100000", "--perceptual", "none", "--save-every", "100000",
            "--grid-every", "0", "--workers", workers, "--device", "cpu", "--log-every", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "madf.cli.train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 60
    while not (out / "config.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)                                   # let it take some steps
    if to == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    # saved, but not finished: the exit status says so (128 + SIGTERM), as a shell reports a killed command
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "interrupted by signal 15" in output and "continue with --resume" in output
    step = torch.load(out / STATE_FILE, weights_only=True)["step"]
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
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state["step"] == 3 and state["world"] == 2
    assert load_checkpoint(out / MODEL_FILE).config == dataclasses.replace(TINY, train_size=32)


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


def test_cosine_schedule_follows_the_step():
    from madf.common.errors import InputError
    from madf.training.trainer import lr_at
    cfg = TrainConfig(images="x", output="y", steps=100, lr=2e-4, lr_schedule="cosine")
    got = [lr_at(cfg, s) for s in (0, 50, 100, 150)]
    print("cosine lr at 0/50/100/150:", got)
    assert got[0] == pytest.approx(2e-4) and got[1] == pytest.approx(1e-4) and got[2] == got[3] == pytest.approx(0)
    assert all(a > b for a, b in zip([lr_at(cfg, s) for s in range(100)], [lr_at(cfg, s) for s in range(1, 101)]))
    assert lr_at(TrainConfig(images="x", output="y", lr=3e-4), 99) == 3e-4
    with pytest.raises(InputError, match="choose constant or cosine"):
        lr_at(TrainConfig(images="x", output="y", lr_schedule="step"), 0)


def test_bf16_channels_last_cosine_run_resumes_exactly(photos, tmp_path, monkeypatch):
    """The CPU fast path (bf16 autocast, NHWC) under the cosine schedule: stopped after 3 of 6 steps (as SIGTERM
    would) and resumed, it ends bit-equal to a straight run."""
    import madf.training.trainer as train_module
    opts = dict(amp="bf16", channels_last=True, lr_schedule="cosine", grid_every=0, steps=6, save_every=6)
    train(_config(photos, tmp_path / "straight", **opts))

    class StopAfterThree(train_module._Stop):
        reads = 0

        @property
        def requested(self):       # read once per step
            StopAfterThree.reads += 1
            return StopAfterThree.reads >= 3

        @requested.setter
        def requested(self, value):
            pass

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_Stop", StopAfterThree)
        assert train(_config(photos, tmp_path / "split", **opts)) == 3
    state = torch.load(tmp_path / "split" / STATE_FILE, weights_only=True)
    third_lr = train_module.lr_at(_config(photos, "x", **opts), 2)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(third_lr)
    assert train(_config(photos, tmp_path / "split", **opts), resume=True) == 6
    a, b = _weights(tmp_path / "straight" / MODEL_FILE), _weights(tmp_path / "split" / MODEL_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert next(iter(a.values())).dtype == torch.float32           # bf16 autocast keeps fp32 weights
    torch.manual_seed(0)                                            # the run's initial weights (seed 0)
    start = MADFNet(TINY).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a if a[k].is_floating_point())


def test_ssim_weight_reaches_the_loss_and_a_negative_one_is_refused(photos, tmp_path):
    from madf.common.errors import InputError
    from madf.training.trainer import Trainer
    assert Trainer(_config(photos, tmp_path / "a", ssim_weight=0.5)).loss.weights["ssim"] == 0.5
    assert Trainer(_config(photos, tmp_path / "b")).loss.weights["ssim"] == 0.0     # the paper's losses
    with pytest.raises(InputError, match="--ssim-weight -1.0: must be >= 0"):
        Trainer(_config(photos, tmp_path / "c", ssim_weight=-1.0))


def test_fp16_autocast_on_cpu_is_refused(photos, tmp_path):
    from madf.common.errors import InputError
    with pytest.raises(InputError, match="--amp fp16 needs a GPU; on a CPU use --amp bf16"):
        train(_config(photos, tmp_path / "run", amp="fp16"))


# Hostile runs: divergence, planted state files, odd photos, folders that feed on themselves, changed options.

def test_a_diverging_step_stops_the_run_and_keeps_the_last_good_save(photos, tmp_path, monkeypatch):
    from madf.training import trainer as trainer_module
    from madf.training.trainer import TrainingError
    run = tmp_path / "run"
    assert train(_config(photos, run, steps=2, save_every=2)) == 2
    good_model, good_state = (run / MODEL_FILE).read_bytes(), (run / STATE_FILE).read_bytes()
    real = trainer_module.InpaintingLoss.__call__

    def diverging(self, outputs, gt, known):
        loss, terms = real(self, outputs, gt, known)
        return loss * float("nan"), terms
    monkeypatch.setattr(trainer_module.InpaintingLoss, "__call__", diverging)
    with pytest.raises(TrainingError, match=r"step 3: the loss is nan.*still hold step 2.*lower --lr"):
        train(_config(photos, run, steps=4, save_every=1), resume=True)
    assert (run / MODEL_FILE).read_bytes() == good_model and (run / STATE_FILE).read_bytes() == good_state


def test_non_finite_weights_are_never_saved(photos, tmp_path):
    from madf.training.trainer import Trainer, TrainingError
    trainer = Trainer(_config(photos, tmp_path / "run"))
    with torch.no_grad():
        next(trainer.net.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(TrainingError, match="holds NaN or Inf"):
        trainer.save()
    assert not (tmp_path / "run" / MODEL_FILE).exists()


def test_resume_never_runs_code_from_the_state_file(photos, tmp_path):
    run = tmp_path / "run"
    assert train(_config(photos, run, steps=2, save_every=2)) == 2
    planted = tmp_path / "planted"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {planted}",))
    torch.save({"step": 2, "payload": Payload()}, run / STATE_FILE)
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        train(_config(photos, run, steps=4), resume=True)
    assert not planted.exists()


def test_resume_with_other_options_is_refused(photos, tmp_path):
    run = tmp_path / "run"
    assert train(_config(photos, run, steps=2, save_every=2)) == 2
    before = (run / "config.json").read_text()
    with pytest.raises(CheckpointError, match=r"other options \(lr 0\.0002 -> 0\.001\)"):
        train(_config(photos, run, steps=4, lr=1e-3), resume=True)
    assert (run / "config.json").read_text() == before
    assert train(_config(photos, run, steps=3, save_every=1), resume=True) == 3   # --steps may change


def _bomb_png(path):
    """A small PNG whose header declares 20000 x 20000 pixels: Pillow refuses it as a decompression bomb."""
    import struct
    import zlib
    Image.new("L", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))


def test_odd_photos_train_as_the_cli_reads_them(tmp_path):
    """16-bit photos are scaled, not read as white; an unreadable or oversized file is skipped, never fatal."""
    from madf.data.images import InpaintingDataset
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((40, 40), 32768, np.uint16)).save(folder / "a16.png")
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _bomb_png(folder / "c_bomb.png")
    data = InpaintingDataset(folder, 32, seed=0)
    for index in range(3):
        image, _ = data.at(0, index)
        assert abs(float(image.mean()) - 0.5) < 0.01, float(image.mean())   # every read falls back to the 16-bit one


def test_output_inside_the_images_is_refused(photos, tmp_path):
    from click.testing import CliRunner

    from madf.cli.train import main
    result = CliRunner().invoke(main, ["--images", str(photos), "--output", str(photos / "run"), "--levels", "4",
                                       "--width", "0.125", "--size", "32", "--steps", "1", "--perceptual", "none"])
    assert result.exit_code == 1 and "is inside --images" in result.output, result.output
    assert not (photos / "run").exists()
