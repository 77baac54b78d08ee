"""What the uint8 graph (madf-export --io uint8) saves per call on ONNX Runtime CPU: the host work a client of the
float file does (pad, convert, crop, round, composite) and the bytes it sends and receives, against the same model
with that work inside the graph. Real photos at a size that is not a multiple of 2^levels, batch 1.

    .venv/bin/python benchmarks/uint8_io.py [--size 500x375] [--runs 20] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_ms(fn, runs: int) -> float:
    fn()   # warm
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    import onnxruntime as ort
    from PIL import Image

    from madf.cli._common import format_table
    from madf.data.masks import free_form_mask
    from madf.data.photos import sample_photos
    from madf.export.onnx import ExportOptions, export_onnx
    from madf.inpaint import imaging
    from madf.model.checkpoint import load_checkpoint
    from madf.runtime.uint8 import encode_masks
    from madf.weights import BUNDLED

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="500x375", help="WxH of the photos")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    net = load_checkpoint(BUNDLED)
    multiple = net.config.multiple
    folder = Path(tempfile.mkdtemp(prefix="madf-u8-bench-"))
    files = {"float": folder / "float.onnx", "uint8": folder / "uint8.onnx"}
    for io, path in files.items():
        export_onnx(net, path, ExportOptions(io=io))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {io: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for io, p in files.items()}
    photo = np.asarray(Image.open(sample_photos()[0]).convert("RGB").resize((w, h), Image.BICUBIC))
    hole = free_form_mask(h, w, seed=0)

    state = {}

    def float_pre():
        state["feed"] = dict(zip(("image", "mask"), imaging.to_contract(photo, hole, multiple)))

    def float_run():
        state["out"] = sessions["float"].run(["inpainted"], state["feed"])[0]

    def float_post():
        filled = imaging.to_uint8(state["out"][0, :, :h, :w].transpose(1, 2, 0))
        state["float_result"] = imaging.composite(photo, filled, hole)

    def uint8_pre():
        state["feed8"] = {"image": photo[None], "mask": encode_masks(hole[None], inverted=False)}

    def uint8_run():
        state["uint8_result"] = sessions["uint8"].run(["inpainted"], state["feed8"])[0][0]

    rows = []
    stages = (("float", (float_pre, float_run, float_post)), ("uint8", (uint8_pre, uint8_run, None)))
    for io, (pre, run, post) in stages:
        pre_ms = _median_ms(pre, args.runs)
        run_ms = _median_ms(run, args.runs)
        post_ms = _median_ms(post, args.runs) if post else 0.0
        feed = state["feed"] if io == "float" else state["feed8"]
        out = state["out"] if io == "float" else state["uint8_result"]
        sent = sum(a.nbytes for a in feed.values())
        rows.append([io, f"{pre_ms:.2f}", f"{run_ms:.1f}", f"{post_ms:.2f}", f"{pre_ms + post_ms:.2f}",
                     f"{pre_ms + run_ms + post_ms:.1f}", f"{sent / 1e6:.2f}", f"{out.nbytes / 1e6:.2f}"])
    diff = int(np.abs(state["float_result"].astype(int) - state["uint8_result"].astype(int)).max())
    print(f"{net.config.describe()}, {w}x{h} photo (network pads to {imaging.padded_size(h, w, multiple)[::-1]}), "
          f"ONNX Runtime CPU, {args.threads} thread(s), median of {args.runs}")
    print(format_table(["I/O", "host pre ms", "session ms", "host post ms", "host total ms", "call ms", "sent MB",
                        "received MB"], rows))
    print(f"results agree within {diff} level(s) of 255")


if __name__ == "__main__":
    main()
