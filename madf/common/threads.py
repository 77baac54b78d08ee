"""One thread setting for a process: the variables OpenMP, MKL and OpenBLAS read at start (torch's intra-op pool
among them), which madf's own backends read too where their library does not (ONNX Runtime), so a Ray actor started
with them computes with that many threads whatever its backend."""
from __future__ import annotations

import os
from typing import Dict, Optional

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(threads: int) -> Dict[str, str]:
    """The environment that limits a process started with it to ``threads`` compute threads."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def threads_from_env() -> Optional[int]:
    """OMP_NUM_THREADS as a positive int; None when unset or not one (the library's own default then)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None
