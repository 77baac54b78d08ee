"""ONNX files rewritten by standard tools (ONNX Runtime's optimizer, its quantizer, onnxslim) are told from damaged
ones, and madf-parity --restamp lets a checked rewrite in: the weights digest catches rot, not optimization."""
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

ort = pytest.importorskip("onnxruntime")

from madf.cli.parity import main as parity_main  # noqa: E402
from madf.common.errors import ModelError  # noqa: E402
from madf.export.onnx_file import GRAPH_KEY, RESTAMPED_KEY  # noqa: E402
from madf.runtime.onnxruntime import OnnxRuntimeBackend  # noqa: E402


def _ort_optimized(src, dst):
    """ONNX Runtime's own graph optimizer, saving the rewritten graph (constant folding, fusions)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return dst


def _meta(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_rot_and_rewrites_are_told_apart(exported, tmp_path):
    original = exported[1]["native"]
    assert GRAPH_KEY in _meta(original)
    rotted = tmp_path / "rotted.onnx"
    model = onnx.load(str(original))
    big = max(model.graph.initializer, key=lambda i: len(i.raw_data))
    data = bytearray(big.raw_data)
    data[len(data) // 2] ^= 0x01
    big.raw_data = bytes(data)
    onnx.save(model, str(rotted))
    with pytest.raises(ModelError, match="in an unchanged graph: damaged in storage or transfer"):
        OnnxRuntimeBackend(rotted)
    optimized = _ort_optimized(original, tmp_path / "optimized.onnx")
    with pytest.raises(ModelError, match=r"its graph was rewritten after madf-export .* madf-parity --model "
                                         r"ORIGINAL.onnx --restamp optimized.onnx"):
        OnnxRuntimeBackend(optimized)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantized = tmp_path / "quantized.onnx"
    quantize_dynamic(str(original), str(quantized), weight_type=QuantType.QInt8)
    with pytest.raises(ModelError, match="rewritten by onnx.quantize"):
        OnnxRuntimeBackend(quantized)
    # a file from before the graph digest, rewritten by a tool keeping torch's producer name: both causes named
    legacy = onnx.load(str(optimized))
    kept = [(p.key, p.value) for p in legacy.metadata_props if p.key != GRAPH_KEY]
    del legacy.metadata_props[:]
    for key, value in kept:
        legacy.metadata_props.add(key=key, value=value)
    onnx.save(legacy, str(tmp_path / "legacy.onnx"))
    with pytest.raises(ModelError, match=r"damaged in storage or transfer \(copy or export it again\), or "
                                         r"rewritten by a graph tool"):
        OnnxRuntimeBackend(tmp_path / "legacy.onnx")


def test_restamp_after_a_parity_check(exported, tmp_path):
    original = exported[1]["native"]
    optimized = _ort_optimized(original, tmp_path / "optimized.onnx")
    result = CliRunner().invoke(parity_main, ["--model", str(original), "--restamp", str(optimized), "--size", "32",
                                              "--photos", "2"])
    print(result.output)
    assert result.exit_code == 0 and f"stamped {optimized}" in result.output, result.output
    assert "verified" not in _meta(optimized)[RESTAMPED_KEY] and "matched native.onnx" in _meta(optimized)[
        RESTAMPED_KEY]
    backend = OnnxRuntimeBackend(optimized)   # now taken, and its outputs are the original's
    image = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    mask = (np.random.default_rng(1).random((1, 1, 32, 32)) > 0.7).astype(np.float32)
    assert np.abs(backend(image, mask) - OnnxRuntimeBackend(original)(image, mask)).max() < 1e-4
    # the stamp still finds damage done after it
    model = onnx.load(str(optimized))
    big = max(model.graph.initializer, key=lambda i: len(i.raw_data))
    big.raw_data = bytes(b ^ 0xFF if i == 10 else b for i, b in enumerate(big.raw_data))
    onnx.save(model, str(tmp_path / "later.onnx"))
    with pytest.raises(ModelError, match="unchanged graph: damaged"):
        OnnxRuntimeBackend(tmp_path / "later.onnx")


def test_a_rewrite_that_differs_is_not_stamped(exported, tmp_path):
    """A rewrite whose outputs moved past the tolerance keeps its old digests: nothing is stamped on a failure."""
    original, other = exported[1]["native"], exported[1]["fp16"]
    changed = tmp_path / "changed.onnx"
    shutil.copyfile(_ort_optimized(other, tmp_path / "opt16.onnx"), changed)
    before = changed.read_bytes()
    result = CliRunner().invoke(parity_main, ["--model", str(original), "--restamp", str(changed), "--size", "32",
                                              "--photos", "1", "--atol", "1e-7"])
    print(result.output)
    assert result.exit_code == 1 and "was not stamped" in result.output
    assert changed.read_bytes() == before
