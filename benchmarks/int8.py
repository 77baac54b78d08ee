"""FP32 against INT8 (madf-export --int8) on ONNX Runtime on this CPU: latency at 256x256 and 512x512, batch 1 and 4,
for the official-size network (seeded official-format weights) and the bundled model, with PSNR against FP32 on
held-out photos (the composite and the hole only), and where the INT8 graph's time goes (ONNX Runtime's profile).

    .venv/bin/python benchmarks/int8.py [--runs 5] [--threads 2] [--method minmax] [--nets official,bundled]

Both forms of madf-export --int8-for: tensorrt (symmetric INT8 around Conv, what TensorRT takes) and onnxruntime
(UINT8 activations between layers too, ONNX Runtime's fast CPU path).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def session(path: Path, threads: int, profile: bool = False):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.enable_profiling = profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latency(sess, feed, runs: int) -> float:
    sess.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def profile(path: Path, feed, threads: int):
    """(share of time per op type, nodes per op type) of one INT8 run."""
    sess = session(path, threads, profile=True)
    sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    spent, count = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kind = event["args"]["op_name"]
            spent[kind] += event["dur"]
            count[kind] += 1
    total = sum(spent.values()) or 1
    return {k: v / total for k, v in spent.most_common()}, count


def main() -> None:
    from madf.cli._common import format_table
    from madf.export.onnx import export_onnx
    from madf.model.checkpoint import load_checkpoint
    from madf.model.config import OFFICIAL
    from madf.model.network import build_model
    from madf.quantize.int8 import QuantizationError, QuantOptions, feeds, gate, quantize_file
    from madf.weights import BUNDLED

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--method", default="minmax")
    parser.add_argument("--nets", default="official,bundled")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="madf-int8-bench-"))
    nets = {"official": lambda: build_model(OFFICIAL, seed=0), "bundled": lambda: load_checkpoint(BUNDLED)}
    rows, gates, profiles = [], [], {}
    forms = ("tensorrt", "onnxruntime")
    for name in args.nets.split(","):
        net = nets[name]()
        fp32 = work / f"{name}.onnx"
        export_onnx(net, fp32)
        files = {}
        for form in forms:
            files[form] = work / f"{name}-{form}.onnx"
            start = time.perf_counter()
            try:
                meta = quantize_file(fp32, files[form], QuantOptions(method=args.method, form=form))
            except QuantizationError as exc:
                print(f"{name} {form}: {exc}")
                files.pop(form)
                continue
            took = time.perf_counter() - start
            kept = meta["madf.quant_float_layers"]
            for size in (256, 512):
                _, held, _ = feeds(QuantOptions(size=size), net.config.multiple)   # the photos after the calibration
                result = gate(fp32, files[form], held)
                composite, hole = result.composite_db, result.hole_db
                gates.append([name, form, f"{size}x{size}", f"{min(composite):.2f} / {np.mean(composite):.2f}",
                              f"{min(hole):.2f} / {np.mean(hole):.2f}", len(kept.split(",")) if kept else 0,
                              f"{took:.0f} s" if size == 256 else ""])
        for size in (256, 512):
            _, held, _ = feeds(QuantOptions(size=size), net.config.multiple)
            for batch in (1, 4):
                feed = {k: np.concatenate([h[k] for h in (held * 4)[:batch]]) for k in held[0]}
                t32 = latency(session(fp32, args.threads), feed, args.runs)
                row = [name, f"{size}x{size}", batch, f"{t32 * 1e3:.0f}"]
                for form in forms:
                    t8 = latency(session(files[form], args.threads), feed, args.runs) if form in files else None
                    row += [f"{t8 * 1e3:.0f} ({t32 / t8:.2f}x)" if t8 else "-"]
                rows.append(row)
                print(rows[-1], flush=True)
        for form in files:
            profiles[f"{name}, --int8-for {form}"] = profile(files[form], feed, args.threads)
    print(f"\nONNX Runtime CPU, {args.threads} threads, median of {args.runs} runs; INT8: --calib-method "
          f"{args.method}, gate 40 dB")
    print(format_table(["network", "size", "batch", "FP32 ms", "INT8 tensorrt form ms", "INT8 onnxruntime form ms"],
                       rows))
    print()
    print(format_table(["network", "form", "size", "PSNR vs FP32, composite (worst / mean)",
                        "in the hole (worst / mean)", "layers kept in float", "quantize + gate"], gates))
    for name, (share, count) in profiles.items():
        print(f"\n{name} at 512x512 batch 4, where the time goes (op type: share of node time, nodes):")
        print(format_table(["op", "share", "nodes"], [[k, f"{v:.1%}", count[k]] for k, v in list(share.items())[:8]]))


if __name__ == "__main__":
    main()
