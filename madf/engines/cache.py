"""An engine cache: one plan per (ONNX file, TensorRT flavour and version, target GPU, profile, precision, plugins),
built once and reused, as Torch-TensorRT's and ONNX Runtime's TensorRT provider caches are.

    DIR/
      .madf-engine-cache                  the mark of a folder madf made (or adopted: empty, or holding only entries)
      <key>/model.plan, model.plan.json   one entry: the plan and its sidecar (with the key's fields under "cache")
      <key>.lock                          held while that entry is looked up or built (filelock)
      .index.lock                         held while entries are listed or evicted
      timing-<flavour>-<version>-sm<X.Y>.cache   TensorRT's timing cache, shared by every build for that GPU

An entry appears by renaming a finished folder into place, so a reader never sees a half-written plan; several
processes asking for one key at once (Triton instances, Ray actors) build it once, the others wait on its lock and
then read it. A hit is checked against its sidecar (size and SHA-256) before it is returned; a corrupt entry is
rebuilt, and so is one whose sidecar records another key (an entry swapped by hand). The folder's size is bounded:
after each build the least recently used entries go until it fits.

The cache deletes only what it made: a folder given as the cache must be new, empty, marked by madf, or hold nothing
but cache entries (a key-named folder whose sidecar records that key); an entry is that and nothing else, so a
user's folder inside the cache is never taken for one. A killed builder's staging folder is swept by the next
process that holds its key's lock. A cache that cannot be written (baked into a container image) serves its hits and
lists its entries; a miss there says so.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from madf.common import paths
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
MARK = ".madf-engine-cache"
ENTRY_FILES = {PLAN, PLAN + ".json"}
KEY_NAME = re.compile(r"^[0-9a-f]{32}$")
# what else a cache holds: locks, TensorRT's timing caches, staging and trash folders of builds and removals
_OWN_FILES = re.compile(r"^(\.index\.lock|[0-9a-f]{32}\.lock|timing-.+\.cache|\.[0-9a-f]{32}\..+)$")
DEFAULT_MAX_BYTES = 8 << 30
LOCK_TIMEOUT_S = 3600.0   # a real build of the official network takes minutes; a dead holder's lock is released


@dataclasses.dataclass
class CacheResult:
    plan: Path
    hit: bool
    seconds: float          # lookup (hit) or build (miss) time
    key: str
    fields: Dict
    data: Optional[bytes] = None   # a hit's plan bytes, already checked against its sidecar (read once)


# Every BuildOptions field is either keyed (under the key field named here) or named as not changing the plan:
# tests/test_engine_cache.py fails when a new field is neither.
KEYED_BY = {"min_shape": "profile", "opt_shape": "profile", "max_shape": "profile",
            "compute_capability": "compute_capability", "workspace_mb": "workspace_mb", "fp16": "precision",
            "plugin_libs": "plugins", "version_compatible": "version_compatible",
            "exclude_lean_runtime": "exclude_lean_runtime"}
NOT_KEYED = {"timing_cache": "tactic timings speed the build up, the plan is the builder's choice either way",
             "progress": "the builder's progress bars"}


def _gpu_name(name: str) -> Optional[str]:
    """The GPU a full TensorRT build tunes for (TensorRT-RTX builds for a compute capability, not a GPU)."""
    if name == "tensorrt-rtx":
        return None
    from madf.engines.sidecar import current_gpu
    return (current_gpu() or {}).get("name")


def _target(name: str, options: BuildOptions) -> Optional[str]:
    """The compute capability the plan is for: TensorRT-RTX's chosen target, else this machine's GPU."""
    if name == "tensorrt-rtx":
        return options.compute_capability
    from madf.engines.sidecar import current_gpu
    return (current_gpu() or {}).get("compute_capability")


class EngineCache:
    def __init__(self, folder, max_bytes: int = DEFAULT_MAX_BYTES):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        # one rule with every tool's folders: never prune a folder of someone else's files; an existing folder
        # may be read-only (a cache baked into an image): its hits are still served
        self.folder = paths.claim_folder(Path(folder), MARK[1:], "--cache", own=self._own, read_only=True)
        self.writable = os.access(self.folder, os.W_OK | os.X_OK)

    def _own(self, path: Path) -> bool:
        return bool(_OWN_FILES.match(path.name)) or self._entry_key(path) is not None

    @staticmethod
    def _entry_files(entry: Path) -> Optional[set]:
        """The file names of a key-named real folder holding nothing but a plan and its sidecar (either may be
        missing: a damaged entry), else None: what the cache may delete."""
        if not KEY_NAME.match(entry.name) or entry.is_symlink() or not entry.is_dir():
            return None
        try:
            names = {p.name for p in entry.iterdir()}
        except OSError:
            return None
        return names if names <= ENTRY_FILES else None

    @classmethod
    def _entry_key(cls, entry: Path) -> Optional[str]:
        """The key of a cache entry (a key-named folder of a plan and its sidecar recording that key), else None."""
        if cls._entry_files(entry) != ENTRY_FILES:
            return None
        try:
            recorded = read_sidecar(entry / PLAN).get("cache", {}).get("key")
        except (OSError, ModelError, AttributeError):
            return None
        return entry.name if recorded == entry.name else None

    def _lock(self, name: str):
        from filelock import FileLock
        return FileLock(str(self.folder / name), timeout=LOCK_TIMEOUT_S)

    def key(self, onnx_path, options: BuildOptions, backend: str = "auto"):
        """(key, fields): every input the plan depends on, and the SHA-256 of their canonical JSON."""
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise ModelError(f"{onnx_path}: no such ONNX file; write one with madf-export")
        # one read, no weights check: the file's SHA-256 is in the key, and a miss builds (which checks them)
        data = onnx_path.read_bytes()
        meta, dims = read_input_dims(onnx_path, data)
        trt, name = load_tensorrt(backend)
        profile = profile_shapes(dims, options, int(meta["madf.multiple"]), meta.get("madf.io", "float"))
        fields = {
            "onnx_sha256": hashlib.sha256(data).hexdigest(),
            "tensorrt": {"backend": name, "version": trt.__version__},
            "compute_capability": _target(name, options),
            "gpu": _gpu_name(name),
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

    def _valid(self, entry: Path, key: str, fields: Dict) -> Optional[bytes]:
        """The entry's plan bytes when they match its sidecar (size, SHA-256) and the sidecar records the key and
        fields it was looked up by; None for a missing, damaged or swapped entry."""
        if not entry.exists():
            return None
        plan = entry / PLAN
        try:
            sidecar = read_sidecar(plan)
            recorded = sidecar.get("cache")
            if recorded != json.loads(json.dumps({"key": key, **fields})):
                log.warning("engine cache entry %s records another model, GPU or profile than its key; rebuilding "
                            "it", entry)
                return None
            return read_plan(plan, sidecar)
        except (OSError, ModelError) as exc:
            log.warning("engine cache entry %s is damaged (%s); rebuilding it", entry, exc)
            return None

    def get_or_build(self, onnx_path, options: Optional[BuildOptions] = None, backend: str = "auto") -> CacheResult:
        """The cached plan for these inputs, building it (once, whatever the number of callers) on a miss."""
        options = options or BuildOptions()
        started = time.perf_counter()
        key, fields = self.key(onnx_path, options, backend)
        entry = self.folder / key
        if not self.writable:   # no lock can be taken: entries appear by rename, so a read sees a whole one
            data = self._valid(entry, key, fields)
            if data is not None:
                return CacheResult(entry / PLAN, True, time.perf_counter() - started, key, fields, data)
            raise OutputError(f"the engine cache {self.folder} is read-only and holds no valid engine for "
                              f"{Path(onnx_path).name} with these settings (key {key}); build it where the cache is "
                              f"writable, or give a writable --cache")
        with self._lock(key + ".lock"):
            self._sweep(key)   # a killed builder's staging folder: nobody else builds this key now
            data = self._valid(entry, key, fields)
            if data is not None:
                os.utime(entry)   # most recently used
                return CacheResult(entry / PLAN, True, time.perf_counter() - started, key, fields, data)
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

    def _sweep(self, key: str) -> int:
        """Remove staging and trash folders of ``key`` (call with its lock held: they are a dead process's)."""
        stale = [p for p in self.folder.glob(f".{key}.*") if p.is_dir() and not p.is_symlink()]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        if stale:
            log.info("engine cache: removed %d folder(s) left by an interrupted build of %s", len(stale), key)
        return len(stale)

    def _remove(self, entry: Path) -> None:
        if self._entry_files(entry) is not None:   # damaged or swapped entries too, never a folder of other files
            # renamed away first: a reader never sees a half-deleted entry
            trash = entry.with_name(f".{entry.name}.trash-{os.getpid()}")
            os.replace(entry, trash)
            shutil.rmtree(trash, ignore_errors=True)
        elif entry.exists():
            raise OutputError(f"engine cache: {entry} is not an entry madf made; move it out of the cache folder")

    def entries(self) -> List[Dict]:
        """Every complete entry, most recently used first: key, bytes, last use, and its sidecar."""
        found = []
        for entry in self.folder.iterdir():
            key = self._entry_key(entry)
            if key is None:
                continue
            try:
                sidecar = read_sidecar(entry / PLAN)
                size = sum(f.stat().st_size for f in entry.iterdir())
                used = entry.stat().st_mtime
            except (OSError, ModelError):
                continue
            found.append({"key": key, "path": entry / PLAN, "bytes": size, "last_used": used, "sidecar": sidecar})
        return sorted(found, key=lambda e: -e["last_used"])

    def _sweep_all(self) -> None:
        """Staging folders of keys nobody is building now (their lock is free)."""
        from filelock import Timeout
        for key in sorted({p.name.split(".")[1] for p in self.folder.glob(".*.*")
                           if p.is_dir() and KEY_NAME.match(p.name.split(".")[1])}):
            try:
                with self._lock(key + ".lock").acquire(timeout=0):
                    self._sweep(key)
            except Timeout:
                continue   # being built now

    def evict(self, keep: Optional[str] = None) -> List[str]:
        """Remove least recently used entries until the cache fits max_bytes (never ``keep``, the one just built);
        only entries, never anything else in the folder."""
        removed = []
        with self._lock(".index.lock"):
            self._sweep_all()
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
