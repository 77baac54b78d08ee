"""Re-stamping an ONNX file that a standard tool rewrote (onnxslim, ONNX Runtime's optimizer or quantizer): after it
passed a parity check against the file it came from, its weights and graph digests are recorded again, so every madf
tool takes it and a later damage is still found. madf-parity --restamp runs the check and calls this."""
from __future__ import annotations

import datetime
from pathlib import Path

from madf.common.atomic import atomic_path
from madf.export.onnx_file import RESTAMPED_KEY, load_model, stamp


def restamp_file(path, reference, max_abs: float) -> None:
    """Record fresh digests in ``path`` (in place, atomically), with a note of the check it passed."""
    import onnx
    path = Path(path)
    model = load_model(path)
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    stamp(model, **{RESTAMPED_KEY: f"{when}: matched {Path(reference).name} to max abs {max_abs:.3e} "
                                   f"(madf-parity --restamp), as {model.producer_name} {model.producer_version} "
                                   f"wrote it".strip()})
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
