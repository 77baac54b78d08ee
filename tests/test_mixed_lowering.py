"""madf-export --dynconv auto: the TensorRT plugin only at the levels where the fused kernel was measured to win
(madf/model/fused_wins.json), standard ops elsewhere; one table for the export and for PyTorch's ``auto``; the file
records its lowering and levels, and its standard-op levels run on ONNX Runtime and equal the native file."""
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from madf.export.onnx import ExportError, ExportOptions, export_onnx, read_metadata
from madf.export.onnx_file import plugin_levels_of
from madf.model import fused_table
from madf.model.checkpoint import save_checkpoint
from madf.model.config import OFFICIAL, ModelConfig
from madf.model.dynamic_filter import FUSED_MAX_WINDOW, resolve
from madf.model.network import build_model

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
# The official shapes of levels 1-4 at full width: three the fused kernel wins on an H100, one it loses.
FOUR = ModelConfig(levels=4, width=1.0)


def test_the_table_is_the_measured_one():
    """Every speed-up in the table is the one benchmarks/RESULTS.md measured (section 1), at both batches."""
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    measured = {}
    for batch, section in zip((1, 32), text.split("### batch ")[1:3]):
        for level, cin, cout, k, speedup in re.findall(
                r"^\| (\d) \| (\d+)->(\d+), k(\d) \|.*\| ([\d.]+)x \|[^|]*\|$", section, flags=re.M):
            measured[(int(level), int(cin), int(cout), int(k), batch)] = float(speedup)
    rows = fused_table.table()["architectures"]["sm_90"]["shapes"]
    assert rows
    for row in rows:
        for batch in (1, 32):
            assert row[f"speedup_batch{batch}"] == measured[(row["level"], row["cin"], row["cout"], row["kernel"],
                                                             batch)], row


def test_decisions_from_the_table():
    assert fused_table.max_window("sm_90") == FUSED_MAX_WINDOW == 400
    assert fused_table.fused_levels(OFFICIAL, "sm_90") == [1, 2, 3]
    assert fused_table.fused_levels(OFFICIAL, "sm_75") == []          # never measured: standard ops
    assert fused_table.fused_levels(TINY, "sm_90") == list(range(1, TINY.levels + 1))   # narrow: small windows
    assert resolve("auto", 64, 3, "sm_90") == "rewrite" and resolve("auto", 6, 7, "sm_75") == "rewrite"
    assert resolve("rewrite", 6, 7, "sm_90") == "rewrite"


def test_auto_needs_a_target_and_a_real_one():
    with pytest.raises(ExportError, match="--target sm_XY"):
        ExportOptions(lowering="auto").validate(16)
    with pytest.raises(ExportError, match="sm_XY"):
        ExportOptions(lowering="auto", target="hopper").validate(16)


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    net = build_model(FOUR, seed=0)
    export_onnx(net, folder / "native.onnx")
    export_onnx(net, folder / "mixed.onnx", ExportOptions(lowering="auto", target="sm_90"))
    return net, folder


def test_the_custom_op_sits_exactly_at_the_tables_levels(four):
    _, folder = four
    model = onnx.load(str(folder / "mixed.onnx"))
    onnx.checker.check_model(model, full_check=True)
    nodes = [n for n in model.graph.node if n.op_type == "MADFDynamicFilter"]
    meta = read_metadata(model)
    print("mixed file:", meta["madf.lowering"], "plugin levels", meta["madf.plugin_levels"],
          [(n.name, n.input[2]) for n in nodes])
    assert meta["madf.lowering"] == "mixed" and meta["madf.plugin_levels"] == "1,2,3"
    assert plugin_levels_of(meta) == [1, 2, 3]
    levels = sorted(int(re.search(r"filter_gen_(\d+)", n.input[2]).group(1)) for n in nodes)
    assert levels == [1, 2, 3]
    assert any(n.op_type == "ReduceSum" for n in model.graph.node)    # level 4: standard ops
    native = read_metadata(onnx.load(str(folder / "native.onnx"), load_external_data=False))
    assert native["madf.lowering"] == "native" and native["madf.plugin_levels"] == ""


def test_the_mixed_file_runs_on_onnx_runtime_and_equals_the_native_one(four):
    """ONNX Runtime runs the standard-op levels; onnxruntime-extensions runs the custom op from Python with the
    op's contract (the exact rewrite), so any difference would come from the levels the export lowered."""
    ortx = pytest.importorskip("onnxruntime_extensions")
    import onnxruntime as ort

    from madf.model.dynamic_filter import dynamic_filter_rewrite
    net, folder = four
    model = onnx.load(str(folder / "mixed.onnx"))
    for node in model.graph.node:   # onnxruntime-extensions serves Python ops in its own domain
        if node.domain == "madf":
            node.domain = "ai.onnx.contrib"
            for attr in [a for a in node.attribute if a.type == onnx.AttributeProto.STRING]:
                node.attribute.remove(attr)
    model.opset_import.append(onnx.helper.make_opsetid("ai.onnx.contrib", 1))

    @ortx.onnx_op(op_type="MADFDynamicFilter", inputs=[ortx.PyCustomOpDef.dt_float] * 4,
                  attrs={"kernel_size": ortx.PyCustomOpDef.dt_int64, "stride": ortx.PyCustomOpDef.dt_int64,
                         "padding": ortx.PyCustomOpDef.dt_int64, "out_channels": ortx.PyCustomOpDef.dt_int64})
    def _op(x, m, weight, bias, **attrs):
        return dynamic_filter_rewrite(torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(weight),
                                      torch.from_numpy(bias), int(attrs["kernel_size"]), int(attrs["stride"]),
                                      int(attrs["padding"])).numpy()

    options = ort.SessionOptions()
    options.register_custom_ops_library(ortx.get_library_path())
    mixed = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    native = ort.InferenceSession(str(folder / "native.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, 32, 48), dtype=np.float32)
    mask = (rng.random((2, 1, 32, 48)) > 0.6).astype(np.float32)
    a = mixed.run(None, {"image": image, "mask": mask})[0]
    b = native.run(None, {"image": image, "mask": mask})[0]
    diff = np.abs(a - b)
    psnr = 10 * np.log10(1 / max(float((diff ** 2).mean()), 1e-30))
    print(f"mixed vs native on ONNX Runtime: max abs {diff.max():.2e}, mean abs {diff.mean():.2e}, "
          f"PSNR {psnr:.1f} dB")
    assert diff.max() < 1e-4


def test_madf_export_dynconv_auto_from_the_command_line(tmp_path):
    from madf.cli.export import main
    save_checkpoint(build_model(TINY, seed=0), tmp_path / "m.safetensors")
    no_target = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "m.safetensors"), "--dynconv", "auto"])
    if not torch.cuda.is_available():
        assert no_target.exit_code == 1 and "--target sm_XY" in no_target.output
    result = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "m.safetensors"), "--dynconv", "auto",
                                       "--target", "sm_75"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(onnx.load(str(tmp_path / "m-mixed.onnx")))
    assert meta["madf.lowering"] == "native"    # an architecture never measured: standard ops everywhere
    checked = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "m.safetensors"), "--dynconv", "auto",
                                        "--target", "sm_90", "--check", "--output", str(tmp_path / "c.onnx")])
    assert checked.exit_code == 2 and "no MADFDynamicFilter op" in checked.output


def test_the_command_lines_choices_are_the_exporters():
    from madf.cli.export import main
    from madf.export.onnx import DYNCONV_CHOICES
    option = next(p for p in main.params if p.name == "dynconv")
    assert tuple(option.type.choices) == DYNCONV_CHOICES


def test_tensorrt_rtx_refuses_a_mixed_file_and_names_the_fix(four, rtx, tmp_path):
    from madf.common.errors import ModelError
    from madf.engines.build import BuildOptions, build_engine
    _, folder = four
    with pytest.raises(ModelError, match=r"mixed lowering \(MADFDynamicFilter nodes at levels 1,2,3\).*"
                                         r"--dynconv native") as caught:
        build_engine(folder / "mixed.onnx", tmp_path / "m.plan", BuildOptions(max_shape=(1, 64, 64)))
    print(caught.value)
    assert not (tmp_path / "m.plan").exists()
