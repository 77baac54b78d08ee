"""Reading and writing MADFNet weights, with strict name and shape checks.

Formats read by ``load_checkpoint`` (sniffed from the bytes, not the file name):

- official Pytorch-MADF files: ``torch.save({'n_iter', 'model', 'gen_optimizer'})`` with keys prefixed
  ``module.model.``, the loss's frozen VGG16 under ``module.extractor.*``, tensors saved on a GPU;
- a bare state dict (``torch.save(net.state_dict())``, with or without a ``module.`` prefix);
- this project's format: a safetensors file whose header metadata holds the ModelConfig as JSON.

Dropped by name, and reported: ``module.extractor.*`` (a loss network, not the model) and ``enc_conv_*.bn.*`` (a
BatchNorm the official forward never applies). Anything else that does not match is an error naming the missing,
unexpected and mis-shaped keys; nothing is ever loaded with ``strict=False``.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from madf.common.atomic import atomic_path
from madf.common.digest import KEY, weights_sha256
from madf.common.errors import CheckpointError, check_finite, first_line
from madf.model.config import ModelConfig
from madf.model.network import MADFNet, build_model

log = logging.getLogger("madf")

FORMAT_NAME = "madf-trt"
_OFFICIAL_PREFIX = "module.model."
_DROPPED = (re.compile(r"^module\.extractor\."), re.compile(r"^enc_conv_\d+\.bn\."))
_MAX_LISTED = 4
NO_DIGEST = "no digest recorded"


SAFETENSORS_HEADER_MAX = 100 << 20   # the safetensors crate refuses larger headers
PICKLE_PROTOCOLS = range(2, 6)      # torch.save's legacy (non-zip) format is a pickle of protocol 2


def sniff_format(path: Path) -> str:
    """"safetensors" or "torch", from each format's structure, not from a lucky first byte.

    safetensors: an 8-byte little-endian header length N that fits the file, then a JSON object (its first byte
    "{"). torch: a zip archive (torch.save since 1.6) or a legacy pickle (0x80 then a protocol number). The
    safetensors test goes first: its length's low byte is 0x80 for about 1 in 256 files (the bundled one too),
    which a first-byte test takes for a pickle."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(10)
    if len(head) < 10:
        raise CheckpointError(f"{path}: {len(head)} bytes, too short to be a checkpoint (truncated download?)")
    length = int.from_bytes(head[:8], "little")
    if head[8:9] == b"{" and 2 <= length <= min(SAFETENSORS_HEADER_MAX, size - 8):
        return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if head[:1] == b"\x80" and head[1] in PICKLE_PROTOCOLS:
        return "torch"
    if head[8:9] == b"{":
        raise CheckpointError(f"{path}: a safetensors header of {length} bytes in a file of {size}: the file is "
                              f"truncated; copy or save it again")
    raise CheckpointError(f"{path}: neither a torch checkpoint nor a safetensors file "
                          f"(starts with {head[:8]!r}); give a .pth from Pytorch-MADF or a .safetensors of madf-trt")


def _read_torch(path: Path) -> Tuple[Dict[str, torch.Tensor], str]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged archives
        raise CheckpointError(f"{path}: cannot be read by torch.load ({first_line(exc)[:200]}); the file is corrupt or "
                              f"truncated, download it again") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return dict(obj["model"]), "official"
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), "state_dict"
    kind = type(obj).__name__ if not isinstance(obj, dict) else f"dict with keys {sorted(obj)[:_MAX_LISTED]}"
    raise CheckpointError(f"{path}: holds a {kind}, not MADF weights; expected an official checkpoint "
                          f"({{'n_iter','model','gen_optimizer'}}) or a state dict")


def _read_safetensors(path: Path) -> Tuple[Dict[str, torch.Tensor], Optional[ModelConfig], Optional[str]]:
    """(tensors, config, the digest checked): a recorded digest must match, or the file is refused."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({exc}); write it again with "
                              f"madf.save_checkpoint") from None
    recorded = meta.get(KEY)
    if recorded is not None and recorded != state_sha256(tensors):
        raise CheckpointError(f"{path}: its weights do not match the SHA-256 recorded when it was written (damaged "
                              f"in storage or transfer); copy or save it again")
    config = None
    if "config" in meta:
        try:
            config = ModelConfig.from_json(meta["config"])
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: bad ModelConfig in its metadata ({exc})") from None
    return tensors, config, recorded


def state_sha256(state: Dict[str, torch.Tensor]) -> str:
    """The weights digest (madf.common.digest) of a state dict."""
    return weights_sha256((name, str(t.dtype), tuple(t.shape), t.detach().cpu().contiguous().reshape(-1)
                           .view(torch.uint8).numpy()) for name, t in state.items())


def normalize_keys(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Strip the official / DataParallel prefixes; drop keys that are not the model's. Returns (state, dropped)."""
    if any(k.startswith(_OFFICIAL_PREFIX) for k in state):
        state = {k[len(_OFFICIAL_PREFIX):] if k.startswith(_OFFICIAL_PREFIX) else k: v for k, v in state.items()}
    elif state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    dropped = sorted(k for k in state if any(p.search(k) for p in _DROPPED))
    return {k: v for k, v in state.items() if k not in dropped}, dropped


def infer_config(state: Dict[str, torch.Tensor]) -> ModelConfig:
    """Levels, width and K read off the (normalized) state dict's names and shapes."""
    levels = 0
    while f"filter_gen_{levels + 1}.conv.0.weight" in state:
        levels += 1
    if levels == 0 or "enc_up_1.0.weight" not in state:
        listed = ", ".join(sorted(state)[:_MAX_LISTED]) or "none"
        raise CheckpointError(f"not MADF weights: no filter_gen_1.conv.0.weight / enc_up_1.0.weight among "
                              f"{len(state)} keys (first: {listed})")
    k = 0
    while f"dec_ref{k}_1.weight" in state:
        k += 1
    width = state["enc_up_1.0.weight"].shape[0] / 64.0
    return ModelConfig(levels=levels, width=width, refinement_decoders=k)


def _listed(names: List[str]) -> str:
    more = f", ... {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return "[" + ", ".join(names[:_MAX_LISTED]) + more + "]"


def check_state_dict(net: MADFNet, state: Dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError naming every missing, unexpected and mis-shaped key."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                       for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} {_listed(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped {len(misshaped)} {_listed(misshaped)}")
    if problems:
        raise CheckpointError(f"weights do not fit {net.config.describe()}: " + "; ".join(problems))


def read_checkpoint(path) -> Tuple[Dict[str, torch.Tensor], ModelConfig, dict]:
    """(normalized state dict, its config, info) without building a model."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = sniff_format(path)
    if kind == "safetensors":
        state, config, digest = _read_safetensors(path)
        fmt = FORMAT_NAME
    else:
        (state, fmt), config, digest = _read_torch(path), None, None
    state, dropped = normalize_keys(state)
    check_finite(state, str(path), CheckpointError, fix="the checkpoint is damaged: download or save it again")
    try:
        config = config or infer_config(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    # the digest the weights were checked against, or None: nothing says these bytes are the ones written
    return state, config, {"format": fmt, "dropped": dropped, "path": str(path), "digest": digest}


def describe_digest(info: dict) -> str:
    """What is known of a checkpoint's integrity, for logs and export metadata."""
    return f"verified sha256 {info['digest'][:16]}" if info.get("digest") else NO_DIGEST


def load_checkpoint(path, config: Optional[ModelConfig] = None, dynamic_filter: str = "rewrite",
                    device: str = "cpu") -> MADFNet:
    """A MADFNet in eval mode with the checkpoint's weights. ``config`` overrides the one read off the file."""
    state, found, info = read_checkpoint(path)
    config = config or found
    net = build_model(config, dynamic_filter)
    try:
        check_state_dict(net, state)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    if info["dropped"]:
        groups = sorted({re.sub(r"\d+", "N", k.split(".")[0] + "." + k.split(".")[1]) for k in info["dropped"]})
        log.info("%s: ignored %d keys that are not the inference model's (%s)", path, len(info["dropped"]),
                 ", ".join(groups))
    if not info["digest"]:
        log.info("%s: %s; damage in storage would go unnoticed (madf-trt .safetensors files carry one)", path,
                 NO_DIGEST)
    net.checkpoint_info = info
    return net.to(device).eval()


def save_checkpoint(net: MADFNet, path, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write weights + config as one safetensors file (config JSON in its metadata, plus ``metadata``),
    atomically."""
    from safetensors.torch import save_file

    from madf import __version__
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {**(metadata or {}), "format": FORMAT_NAME, "config": net.config.to_json(), "madf_version": __version__,
            KEY: state_sha256(state)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "read_checkpoint", "infer_config",
           "check_state_dict", "normalize_keys", "sniff_format", "describe_digest"]
