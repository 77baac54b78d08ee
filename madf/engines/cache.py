"""An engine cache: one plan per (ONNX file, TensorRT flavour and version, target GPU, profile, precision, plugins),
built once and reused, as Torch-TensorRT's and ONNX Runtime's TensorRT provider caches are.

    DIR/
      <key>/model.plan, model.plan.json   one entry: the plan and its sidecar (with the key's fields under "cache")
      <key>.lock                          held while that entry is looked up or built (filelock)
      .index.lock                         held while entries are listed or evicted
      timing-<flavour>-<version>-sm<X.Y>.cache   TensorRT's timing cache, shared by every build for that GPU

An entry appears by renaming a finished folder into place, so a reader never sees a half-written plan; several
processes asking for one key at once (Triton instances, Ray actors) build it once, the others wait on its lock and
then read it. A hit is checked against its sidecar (size and SHA-256) before it is returned; a corrupt entry is
rebuilt. The folder's size is bounded: after each build the least recently used entries go until it fits.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from madf.common.errors import ModelError, OutputError
from madf.engines.build import (
    BuildOptions,
    build_engine,
    load_tensorrt,
    profile_shapes,
    read_input_dims,
)
from madf.engines.sidecar import (
    build_sidecar,
    read_plan,
    read_sidecar,
    sha256,
    write_sidecar,
)

log = logging.getLogger("madf")

PLAN = "model.plan"
DEFAULT_MAX_BYTES = 8 << 30
LOCK_TIMEOUT_S = 3600.0   # a real build of the official network takes minutes; a dead holder's lock is released


@dataclasses.dataclass
class CacheResult:
    plan: Path
    hit: bool
    seconds: float          # lookup (hit) or build (miss) time
    key: str
    fields: Dict


def _target(name: str, options: BuildOptions) -> Optional[str]:
    """The compute capability the plan is for: TensorRT-RTX's chosen target, else this machine's GPU."""
    if name == "tensorrt-rtx":
        return options.compute_capability
    from madf.engines.sidecar import current_gpu
    return (current_gpu() or {}).get("compute_capability")


class EngineCache:
    def __init__(self, folder, max_bytes: int = DEFAULT_MAX_BYTES):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"--cache {self.folder} is a file; give a folder for the engine cache")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the engine cache {self.folder}: {exc.strerror}") from None
        if not os.access(self.folder, os.W_OK):
            raise OutputError(f"cannot write the engine cache {self.folder}: permission denied; choose another "
                              f"--cache folder")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes

    def _lock(self, name: str):
        from filelock import FileLock
        return FileLock(str(self.folder / name), timeout=LOCK_TIMEOUT_S)

    def key(self, onnx_path, options: BuildOptions, backend: str = "auto"):
        """(key, fields): every input the plan depends on, and the SHA-256 of their canonical JSON."""
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path}: no such ONNX file; write one with madf-export")
        # one read, no weights check: the file's SHA-256 is in the key, and a miss builds (which checks them)
        meta, dims = read_input_dims(onnx_path)
        trt, name = load_tensorrt(backend)
        profile = profile_shapes(dims, options, int(meta["madf.multiple"]), meta.get("madf.io", "float"))
        fields = {
            "onnx_sha256": sha256(onnx_path),
            "tensorrt": {"backend": name, "version": trt.__version__},
            "compute_capability": _target(name, options),
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
            "precision": {"file": meta.get("madf.precision", "fp32"), "fp16_required": bool(options.fp16)},
            "plugins": sorted(sha256(p) for p in options.plugin_libs),
            "version_compatible": bool(options.version_compatible),
            "exclude_lean_runtime": bool(options.exclude_lean_runtime),
            "workspace_mb": options.workspace_mb,
        }
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32], fields

    def _timing_cache(self, fields: Dict) -> Optional[Path]:
        trt = fields["tensorrt"]
        if trt["backend"] != "tensorrt":   # TensorRT-RTX keeps none
            return None
        return self.folder / f"timing-{trt['backend']}-{trt['version']}-sm{fields['compute_capability'] or 'any'}.cache"

    def _valid(self, entry: Path) -> bool:
        """The entry's plan matches its sidecar (size, SHA-256); False for a missing or damaged entry."""
        plan = entry / PLAN
        try:
            read_plan(plan, read_sidecar(plan))
            ok = True
        except (OSError, ModelError, KeyError, TypeError):
            ok = False
        if not ok and entry.exists():
            log.warning("engine cache entry %s is damaged (its plan does not match its sidecar); rebuilding it", entry)
        return ok

    def get_or_build(self, onnx_path, options: Optional[BuildOptions] = None, backend: str = "auto") -> CacheResult:
        """The cached plan for these inputs, building it (once, whatever the number of callers) on a miss."""
        options = options or BuildOptions()
        started = time.perf_counter()
        key, fields = self.key(onnx_path, options, backend)
        entry = self.folder / key
        with self._lock(key + ".lock"):
            if self._valid(entry):
                os.utime(entry)   # most recently used
                return CacheResult(entry / PLAN, True, time.perf_counter() - started, key, fields)
            self._remove(entry)
            staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.folder))
            try:
                timing = options.timing_cache or self._timing_cache(fields)
                report = build_engine(onnx_path, staging / PLAN, dataclasses.replace(options, timing_cache=timing),
                                      backend=backend)
                sidecar = build_sidecar(staging / PLAN, onnx_path, report)
                sidecar["cache"] = {"key": key, **fields}
                write_sidecar(staging / PLAN, sidecar)
                os.chmod(staging, 0o755)
                os.replace(staging, entry)   # the entry appears whole, or not at all
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
        self.evict(keep=key)
        return CacheResult(entry / PLAN, False, time.perf_counter() - started, key, fields)

    @staticmethod
    def _remove(entry: Path) -> None:
        if entry.exists():   # renamed away first: a reader never sees a half-deleted entry
            trash = entry.with_name(f".{entry.name}.trash-{os.getpid()}")
            os.replace(entry, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def entries(self) -> List[Dict]:
        """Every complete entry, most recently used first: key, bytes, last use, and its sidecar."""
        found = []
        for entry in self.folder.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                sidecar = read_sidecar(entry / PLAN)
                size = sum(f.stat().st_size for f in entry.iterdir())
                used = entry.stat().st_mtime
            except (OSError, ModelError):
                continue
            found.append({"key": entry.name, "path": entry / PLAN, "bytes": size, "last_used": used,
                          "sidecar": sidecar})
        return sorted(found, key=lambda e: -e["last_used"])

    def evict(self, keep: Optional[str] = None) -> List[str]:
        """Remove least recently used entries until the cache fits max_bytes (never ``keep``, the one just built)."""
        removed = []
        with self._lock(".index.lock"):
            entries = self.entries()
            total = sum(e["bytes"] for e in entries)
            for e in reversed(entries):
                if total <= self.max_bytes:
                    break
                if e["key"] == keep:
                    continue
                with self._lock(e["key"] + ".lock"):   # not while another process reads or rebuilds it
                    self._remove(self.folder / e["key"])
                total -= e["bytes"]
                removed.append(e["key"])
                log.info("engine cache: evicted %s (%.1f MB, least recently used)", e["key"], e["bytes"] / 1e6)
        return removed
