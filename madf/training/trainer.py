"""Training: Adam (the paper's lr 2e-4, betas 0.9/0.999; constant or cosine), AMP (GPU; bf16 on CPU too), DDP
under torchrun, exact resume.

One script for one process or many: under ``torchrun --nproc-per-node N`` each rank takes every N-th batch slot of
the same seeded order (madf.data.images.ResumableSampler) and gradients are averaged by DistributedDataParallel
(NCCL on GPUs, gloo on CPUs). Rank 0 writes everything.

``output/train_state.pt`` (model, optimizer, AMP scaler, step, RNG states, config) is written atomically every
``save_every`` steps and when SIGINT/SIGTERM arrives (all ranks agree on the stop step, then rank 0 saves), so a
killed run loses at most ``save_every`` steps and ``resume`` continues exactly: the data order and every
augmentation are functions of (seed, step), not of process state. ``output/model.safetensors`` is the inference
checkpoint (madf-inpaint, madf-export read it).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pickle
import signal
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist

from madf.common.atomic import atomic_path
from madf.common.device import torch_device
from madf.common.errors import CheckpointError, InputError, MADFError, check_finite
from madf.data.images import InpaintingDataset, ResumableSampler
from madf.data.masks import MaskFolder
from madf.model.checkpoint import load_checkpoint, save_checkpoint
from madf.model.config import ModelConfig
from madf.model.network import MADFNet
from madf.model.pipeline import IMAGENET_MEAN, IMAGENET_STD
from madf.training.losses import InpaintingLoss, load_inception, load_vgg16, to_unit

log = logging.getLogger("madf")
STATE_FILE = "train_state.pt"
MODEL_FILE = "model.safetensors"


@dataclasses.dataclass
class TrainConfig:
    images: str
    output: str
    model: Dict = dataclasses.field(default_factory=lambda: ModelConfig().to_dict())
    size: int = 256
    batch_size: int = 6
    steps: int = 10000
    lr: float = 2e-4
    betas: tuple = (0.9, 0.999)
    masks: Optional[str] = None
    invert_masks: bool = False
    perceptual: str = "vgg"          # vgg | inception | none
    vgg_weights: Optional[str] = None
    ssim_weight: float = 0.0         # 1 - SSIM of the last composite (beyond the paper; 0 = the paper's losses)
    amp: str = "auto"                # auto | bf16 | fp16 | none
    lr_schedule: str = "constant"    # constant | cosine (to 0 at ``steps``)
    channels_last: bool = False
    save_every: int = 500
    grid_every: int = 500
    log_every: int = 10
    seed: int = 0
    workers: int = 2
    init: Optional[str] = None       # fine-tune from these weights (official or madf-trt)
    zoom: Optional[tuple] = None     # (lo, hi): crops of z * size photo pixels (None: area 30-100% crops)
    device: str = "auto"


# Options a resumed run may change: how long it runs and what it reports, not what it learns.
RESUMABLE_CHANGES = {"steps", "save_every", "grid_every", "log_every", "workers", "device", "output"}


class TrainingError(MADFError):
    """Training cannot go on (a diverged loss): one line, the run's folder left as its last save wrote it."""


def _plain(config: "TrainConfig") -> Dict:
    """The config as JSON types (paths as strings): what config.json and the state file record."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


class _Stop:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves and exits."""

    def __init__(self):
        self.requested = False
        self.signal = 0
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested, self.signal = True, signum
        log.warning("signal %d: saving at the end of this step", signum)

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process: Ctrl-C (sent to the whole process group) or a
    scheduler's SIGTERM to every process would otherwise kill a worker first, and the main process would die on the
    lost worker instead of saving."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def _amp_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    if mode == "none":
        return None
    if device.type != "cuda":
        # On CPU only an explicit bf16 autocasts (oneDNN runs it on AMX / AVX512-BF16, about 2x fp32 there);
        # auto stays fp32, which every CPU runs at full precision.
        if mode == "fp16":
            raise InputError("--amp fp16 needs a GPU; on a CPU use --amp bf16 or none")
        return torch.bfloat16 if mode == "bf16" else None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


def lr_at(config: "TrainConfig", step: int) -> float:
    """The learning rate of ``step`` (0-based): a function of the step alone, so a resumed run follows the same
    schedule. cosine anneals from ``lr`` to 0 at ``steps`` (the last steps of a short run gain the most)."""
    if config.lr_schedule == "constant":
        return config.lr
    if config.lr_schedule == "cosine":
        return 0.5 * config.lr * (1 + math.cos(math.pi * min(step, config.steps) / config.steps))
    raise InputError(f"--lr-schedule {config.lr_schedule!r}: choose constant or cosine")


def _normalize(image: torch.Tensor) -> torch.Tensor:
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def _rng_state() -> Dict:
    # tensors and plain values only, so the state file loads with torch.load(weights_only=True)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False):
        self.config = config
        self.rank, self.world, local = _dist_info()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
        if config.device == "auto":
            self.device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.output = Path(config.output)
        self.step = 0
        self.saved_step: Optional[int] = None   # the step the files in the run folder hold
        self.stop_signal = 0                    # the signal that ended the run early, if one did

        torch.manual_seed(config.seed)
        if config.init:
            net = load_checkpoint(config.init)
            config.model = net.config.to_dict()
        # the weights record the size they learn at (ModelConfig.train_size): the strategy fills holes to fit it
        config.model = {**config.model, "train_size": config.size}
        if config.init:
            net.config = ModelConfig.from_dict(config.model)
        else:
            net = MADFNet(ModelConfig.from_dict(config.model))
        self.net = net.to(self.device).train()
        if config.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.model = (torch.nn.parallel.DistributedDataParallel(self.net, device_ids=[self.device.index])
                      if self.world > 1 and self.device.type == "cuda" else
                      torch.nn.parallel.DistributedDataParallel(self.net) if self.world > 1 else self.net)
        # Inputs first: a wrong folder or size is reported before anything heavy is loaded.
        multiple = self.net.config.multiple
        if config.size % multiple:
            raise InputError(f"--size {config.size} is not a multiple of {multiple} (2^levels)")
        masks = MaskFolder(config.masks, invert=config.invert_masks) if config.masks else None
        self.dataset = InpaintingDataset(config.images, config.size, masks=masks, seed=config.seed,
                                         zoom=tuple(config.zoom) if config.zoom else None)
        vgg = None
        if config.perceptual == "vgg":
            vgg = load_vgg16(config.vgg_weights).to(self.device)
        elif config.perceptual == "inception":
            vgg = load_inception().to(self.device)
        elif config.perceptual != "none":
            raise InputError(f"--perceptual {config.perceptual!r}: choose vgg, inception or none")
        if config.ssim_weight < 0:
            raise InputError(f"--ssim-weight {config.ssim_weight}: must be >= 0")
        self.loss = InpaintingLoss(vgg, weights={"ssim": config.ssim_weight})
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, betas=tuple(config.betas))
        self.amp = _amp_dtype(config.amp, self.device)
        lr_at(config, 0)   # an unknown schedule is refused before the first step
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        if resume:
            self._load_state()


    # State ---------------------------------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.output / STATE_FILE

    def save(self) -> None:
        if self.rank != 0:
            return
        # never replace good weights with non-finite ones
        check_finite(self.net.state_dict(), f"step {self.step}", TrainingError,
                     fix=self._diverged_fix())
        state = {"step": self.step, "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": _rng_state(), "config": _plain(self.config),
                 "world": self.world}
        with atomic_path(self._state_path()) as tmp:
            torch.save(state, tmp)
        save_checkpoint(self.net, self.output / MODEL_FILE)
        self.saved_step = self.step
        log.info("step %d: saved %s and %s", self.step, self._state_path(), MODEL_FILE)

    def _diverged_fix(self) -> str:
        kept = (f"{MODEL_FILE} and {STATE_FILE} still hold step {self.saved_step}" if self.saved_step is not None
                else "nothing was saved")
        return (f"training diverged; stopped without saving ({kept}); lower --lr (now {self.config.lr:g}) or "
                f"resume from the last save")

    def _load_state(self) -> None:
        path = self._state_path()
        if not path.is_file():
            raise CheckpointError(f"--resume: no {path}; start without --resume")
        try:
            # tensors and plain values only: a state file is never a way to run code (RNG states stay on CPU)
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise CheckpointError(f"{path} holds objects other than tensors and plain values (a planted file, or "
                                  f"one from an older madf): not loaded; start again without --resume") from None
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{path}: unreadable ({exc.__class__.__name__}); start again or restore a "
                                  f"copy") from None
        if state["config"]["model"] != self.config.model:
            raise CheckpointError(f"{path} holds a {ModelConfig.from_dict(state['config']['model']).describe()}, "
                                  f"not the model asked for; resume with the same options")
        now = _plain(self.config)
        changed = [k for k, v in now.items() if k not in RESUMABLE_CHANGES and state["config"].get(k) != v]
        if changed:
            was = ", ".join(f"{k} {state['config'].get(k)!r} -> {now[k]!r}" for k in changed)
            raise CheckpointError(f"{path} was trained with other options ({was}); resume with the same options "
                                  f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change) or start a new run")
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step = self.saved_step = int(state["step"])
        log.info("resumed %s at step %d", path, self.step)

    # Loop ----------------------------------------------------------------------------------------------------
    def _loader(self):
        sampler = ResumableSampler(len(self.dataset), self.config.batch_size, seed=self.config.seed,
                                   start_step=self.step, rank=self.rank, world=self.world)
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler,
                                           num_workers=self.config.workers,
                                           worker_init_fn=_ignore_stop_signals,
                                           persistent_workers=self.config.workers > 0,
                                           pin_memory=self.device.type == "cuda")

    def train_step(self, image: torch.Tensor, known: torch.Tensor):
        gt = _normalize(image)
        known3 = known.expand(-1, 3, -1, -1)
        if self.config.channels_last:
            gt, known3 = (t.contiguous(memory_format=torch.channels_last) for t in (gt, known3))
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.config, self.step)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            outputs = self.model(gt * known3, known3)
        loss, terms = self.loss([o.float() for o in outputs], gt, known)
        # a non-finite loss stops the run before it reaches the weights (with FP16's scaler, an overflow is the
        # scaler's to skip: it lowers the scale and drops that step)
        if self._agree(not bool(torch.isfinite(loss.detach()))) and not self.scaler.is_enabled():
            raise TrainingError(f"step {self.step + 1}: the loss is {float(loss.detach()):g}; {self._diverged_fix()}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return outputs, terms

    def run(self) -> int:
        """Train until ``steps`` or a signal; returns the step reached."""
        from tqdm import tqdm
        cfg = self.config
        writer = self._writer() if self.rank == 0 else None
        if self.rank == 0:
            self.output.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.output / "config.json") as tmp:
                tmp.write_text(json.dumps(_plain(cfg), indent=2))
        bar = tqdm(total=cfg.steps, initial=self.step, unit="step", disable=self.rank != 0, dynamic_ncols=True)
        seen, started = 0, time.perf_counter()
        with _Stop() as stop:
            batches = iter(self._loader())
            while self.step < cfg.steps:
                image, known = (t.to(self.device, non_blocking=True) for t in next(batches))
                outputs, terms = self.train_step(image, known)
                self.step += 1
                seen += image.shape[0] * self.world
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    rate = seen / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{terms['total']:.3f}", img_s=f"{rate:.1f}")
                    if writer:
                        for key, value in terms.items():
                            writer.add_scalar(f"loss/{key}", float(value), self.step)
                        writer.add_scalar("images_per_s", rate, self.step)
                        writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], self.step)
                if self.rank == 0 and cfg.grid_every and self.step % cfg.grid_every == 0:
                    self._grid(image, known, outputs)
                stopping = self._agree(stop.requested)
                if stopping or self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                if stopping:
                    self.stop_signal = stop.signal or signal.SIGTERM   # another rank's signal ended this one
                    break
        bar.close()
        if writer:
            writer.close()
        return self.step

    def _agree(self, flag: bool) -> bool:
        """Every rank stops on the same step (else the next collective would hang)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _writer(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed (pip install tensorboard): no scalars will be written")
            return None
        return SummaryWriter(str(self.output / "tensorboard"))

    @torch.no_grad()
    def _grid(self, image, known, outputs) -> None:
        """Rows: input with the hole in white, the mask (white = hole), the K+1 outputs (composited), ground
        truth."""
        from madf.inpaint import imaging
        rows = []
        for i in range(min(4, image.shape[0])):
            k = known[i:i + 1]
            cells = [image[i:i + 1] * k + (1 - k), (1 - k).expand(-1, 3, -1, -1)]   # hole shown white
            cells += [(k * image[i:i + 1] + (1 - k) * to_unit(o[i:i + 1].float())).clamp(0, 1)
                      for o in outputs]
            cells.append(image[i:i + 1])
            rows.append(torch.cat(cells, 3))
        grid = torch.cat(rows, 2)[0].permute(1, 2, 0).cpu().numpy()
        imaging.write_png(self.output / "grids" / f"step_{self.step:07d}.png", imaging.to_uint8(grid))


def run_training(config: TrainConfig, resume: bool = False) -> Trainer:
    """Train, then leave the process group; the trainer tells the step reached and the signal that stopped it."""
    trainer = Trainer(config, resume=resume)
    try:
        trainer.run()
        return trainer
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train(config: TrainConfig, resume: bool = False) -> int:
    """Train; the step reached."""
    return run_training(config, resume).step


__all__ = ["TrainConfig", "Trainer", "TrainingError", "train", "run_training", "lr_at", "STATE_FILE", "MODEL_FILE"]
