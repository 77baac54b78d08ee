"""Where the fused dynamic-filter kernel wins: the measured table (fused_wins.json) and the decisions made from it.

One table serves the PyTorch ``auto`` implementation (madf.model.dynamic_filter.resolve) and ``madf-export --dynconv
auto`` (which levels get the TensorRT plugin). A shape in the table is decided by its own speed-up at the table's
batch; a shape not in it (a narrower network) by its window Cin*k*k against the architecture's largest winning
window: the largest window every measured shape up to which wins. An architecture not in the table gets the standard
ops everywhere: the fused kernel is only used where it was measured to win.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict, List, Optional

TABLE = Path(__file__).with_name("fused_wins.json")
REFERENCE_ARCH = "sm_90"   # the architecture the PyTorch ``auto`` assumes when it cannot ask (CPU tensors)


@functools.lru_cache(maxsize=None)
def table() -> Dict:
    return json.loads(TABLE.read_text())


def architectures() -> List[str]:
    return sorted(table()["architectures"])


def _rows(arch: str) -> List[Dict]:
    return table()["architectures"].get(arch, {}).get("shapes", [])


def _speedup(row: Dict) -> float:
    return row[f"speedup_batch{table()['decide_at_batch']}"]


def max_window(arch: str) -> int:
    """The largest Cin*k*k such that every measured shape with a window up to it wins on ``arch`` (0: none)."""
    best = 0
    for row in sorted(_rows(arch), key=lambda r: (r["cin"] * r["kernel"] ** 2, -_speedup(r))):
        if _speedup(row) <= 1.0:
            break
        best = row["cin"] * row["kernel"] ** 2
    return best


def fused_wins(arch: Optional[str], cin: int, kernel: int, level: Optional[int] = None) -> bool:
    """Whether the fused kernel beats the standard ops for a (cin, kernel) dynamic filter at ``level`` on ``arch``
    (a row measured at that level with that shape decides; otherwise the window rule)."""
    arch = arch or REFERENCE_ARCH
    for row in _rows(arch):
        if row["cin"] == cin and row["kernel"] == kernel and level in (None, row["level"]):
            return _speedup(row) > 1.0
    return cin * kernel * kernel <= max_window(arch)


def fused_levels(config, arch: Optional[str]) -> List[int]:
    """The levels of a ModelConfig whose dynamic filter the fused kernel (the plugin) should run on ``arch``."""
    return [s["level"] for s in config.level_shapes() if fused_wins(arch, s["cin"], s["kernel"], s["level"])]


def arch_of(capability) -> str:
    """'sm_90' for a (9, 0) compute capability."""
    return f"sm_{capability[0]}{capability[1]}"
