"""The TensorRT side, compiled and driven without TensorRT's libraries: the plugin library and the C++ runtime built
against NVIDIA's public headers of each supported TensorRT (10.0, the first with IPluginV3, and 11.1) with the
project's code warning-free (-Wall -Wextra -Werror); the plugin library's exports checked; and the plugin walked
through its whole IPluginV3 life by madf/csrc/plugins/harness (dlopen, setLoggerFinder, getCreators, BUILD and RUNTIME
phases, enqueue) on a variant of the library whose kernels run under the CPU emulation, checked against the float64
reference on real exported nodes. On a GPU the same harness runs the real library (marked gpu).

The headers come from ../shared/third_party/tensorrt (or $MADF_TENSORRT_HEADERS, a folder of version folders);
without them these tests skip with one reason.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from madf.model.dynamic_filter import dynamic_filter_unfold
from madf.model.fused_kernel import ALGOS, SOURCES, VARIANTS

from dynamic_filter_cases import OFFICIAL_SHAPES, STRIDE, TOLERANCE, relative_error, shape_id

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = SOURCES.parent
CSRC = PLUGINS.parent
HEADERS = Path(os.environ.get("MADF_TENSORRT_HEADERS", ROOT.parent / "shared" / "third_party" / "tensorrt"))
VERSIONS = ["10.0", "11.1"]
ENTRY_POINTS = {"getCreators", "setLoggerFinder"}
SYSTEM_LIBS = re.compile(r"^(libc|libstdc\+\+|libm|libgcc_s|libdl|libpthread|librt|ld-linux.*)\.so")
# the op's contract (tests/test_op_contract.py checks the exporter's schema and the docs against the same file)
_CONTRACT = yaml.safe_load((ROOT / "madf" / "csrc" / "plugins" / "dynamicFilter" /
                            "MADFDynamicFilter_PluginConfig.yaml").read_text())["versions"]["1"]
ATTRIBUTES = set(_CONTRACT["attributes"])
PARSER_ATTRIBUTES = set(_CONTRACT["parser_attributes"])   # TensorRT's ONNX parser reads these to find the creator
# what the plugin offers the builder for FP16 (kHWC8 features: the pipelined ones, from index 2)
FP16_TACTICS = [ALGOS[name] for name in ("simt",) + VARIANTS]


def _headers(version):
    folder = HEADERS / version
    if not (folder / "NvInferRuntime.h").is_file():
        pytest.skip(f"TensorRT {version} headers not found in {HEADERS} (set MADF_TENSORRT_HEADERS)")
    if not (shutil.which("cmake") and shutil.which("nvcc")):
        pytest.skip("needs cmake and nvcc (the CUDA toolkit)")
    return folder


def _cmake(source, build, *options):
    configure = subprocess.run(["cmake", "-S", str(source), "-B", str(build), *options], capture_output=True,
                               text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stdout[-8000:] + compiled.stderr[-4000:]
    return configure.stdout


@pytest.fixture(scope="module", params=VERSIONS, ids=[f"trt{v}" for v in VERSIONS])
def plugins(request, tmp_path_factory):
    """madf/csrc/plugins built against one TensorRT's headers: libmadf_plugins.so (for this GPU, or sm_90 without one:
    the kernel's other architectures are test_plugin_build.py's), libmadf_plugins_emulated.so and the harness."""
    headers = _headers(request.param)
    build = tmp_path_factory.mktemp(f"plugins-trt{request.param}")
    arch = "".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else "90"
    _cmake(PLUGINS, build, f"-DTENSORRT_ROOT={headers}", "-DMADF_WARNINGS_AS_ERRORS=ON", "-DMADF_EMULATED_PLUGINS=ON",
           f"-DCMAKE_CUDA_ARCHITECTURES={arch}")
    return build


def _exports(library):
    out = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip() and line.split()[-2] in "TWDBVR"}


def test_plugin_libraries_export_the_two_entry_points_and_need_no_tensorrt(plugins):
    for name in ("libmadf_plugins.so", "libmadf_plugins_emulated.so"):
        library = plugins / name
        exported = {s for s in _exports(library) if not s.startswith("_") or s.startswith("_Z")}
        assert exported == ENTRY_POINTS, f"{name} exports {sorted(exported)}"
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                            subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True).stdout)
        assert needed and all(SYSTEM_LIBS.match(lib) for lib in needed), f"{name} needs {needed}"
        undefined = subprocess.run(["nm", "-D", "-u", "-C", str(library)], capture_output=True, text=True).stdout
        assert "nvinfer1::" not in undefined and "nvinfer" not in undefined.lower(), undefined


def _harness(plugins, *args, library="libmadf_plugins_emulated.so", timeout=300):
    run = subprocess.run([str(plugins / "madf_plugin_harness"), str(plugins / library), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode in (0, 1), f"the harness crashed (exit {run.returncode}): {run.stdout[-3000:]}{run.stderr}"
    return run


def _nodes(model_path):
    """Each madf::MADFDynamicFilter node of an export: its attributes and its kernel generator's initializers."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(model_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = []
    for node in model.graph.node:
        if node.op_type == "MADFDynamicFilter":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            nodes.append((node, attrs, inits[node.input[2]], inits[node.input[3]]))
    assert nodes, "the plugin export has no MADFDynamicFilter node"
    return nodes


@pytest.fixture(scope="module")
def plugin_nodes(exported):
    return _nodes(exported[1]["plugin"])


def _declared_fields(run):
    return {m.group(1): (m.group(2), int(m.group(3))) for m in re.finditer(r"^field (\S+) (\S+) (-?\d+)$", run.stdout,
                                                                            re.MULTILINE)}


@pytest.mark.parametrize("width", ["int32", "int64"])
def test_plugin_life_on_every_exported_node(plugins, plugin_nodes, width):
    # the ONNX parser may hand integer attributes over as INT32 or INT64: both must build the same plugin
    for node, attrs, _, _ in plugin_nodes:
        run = _harness(plugins, "life", width, f"k={attrs['kernel_size']}", f"s={attrs['stride']}",
                       f"p={attrs['padding']}", f"cout={attrs['out_channels']}")
        assert run.returncode == 0 and "0 failure(s)" in run.stdout, run.stdout[-4000:]
        assert len(re.findall(r"^ok ", run.stdout, re.MULTILINE)) >= 30, run.stdout
        serialized = re.search(r"^serialized (.+)$", run.stdout, re.MULTILINE).group(1)
        wanted = (f"kernel_size:INT32:{attrs['kernel_size']};stride:INT32:{attrs['stride']};"
                  f"padding:INT32:{attrs['padding']};out_channels:INT32:{attrs['out_channels']};")
        assert serialized == wanted, node.name


def test_exporter_attributes_are_the_creators_fields(plugins, plugin_nodes):
    """The ONNX side of the contract: every MADFDynamicFilter node carries exactly the fields the creator declares
    (names, integer types, one value each), plus the two attributes the parser uses to find the creator."""
    import onnx
    run = _harness(plugins, "life", "int32", "k=3", "s=2", "p=1", "cout=8")
    fields = _declared_fields(run)
    assert set(fields) == ATTRIBUTES, fields
    assert fields == {a: (_CONTRACT["attribute_types"][a].upper(), _CONTRACT["attribute_length"][a])
                      for a in ATTRIBUTES}, fields
    for node, attrs, _, _ in plugin_nodes:
        assert node.domain == "madf"
        assert set(attrs) - PARSER_ATTRIBUTES == set(fields), (node.name, sorted(attrs))
        assert attrs["plugin_namespace"] == b"madf" and attrs["plugin_version"] == b"1"
        for a in node.attribute:
            if a.name in fields:
                assert a.type == onnx.AttributeProto.INT and fields[a.name] in {("INT32", 1), ("INT64", 1)}, a.name


def _enqueue(plugins, tmp_path, attrs, weight, bias, dtype, n=2, h=13, w=9, library="libmadf_plugins_emulated.so",
             memory="host", hwc8=False):
    """Runs the harness's enqueue on random features and mask features with the node's real kernel generator, every
    tactic the plugin offers for that format (features as kHWC8 with `hwc8`); returns {tactic: (max rel error, mean
    abs error)} against the float64 reference."""
    k, s, p, cout = (int(attrs[a]) for a in ("kernel_size", "stride", "padding", "out_channels"))
    cm = weight.shape[1]
    cin = weight.shape[0] // (k * k * cout)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    g = torch.Generator().manual_seed(k * 100 + cout)
    x = torch.randn(n, cin, h, w, generator=g)
    m = torch.relu(torch.randn(n, cm, ho, wo, generator=g))
    inputs = [t.to(dtype) for t in (x, m, torch.from_numpy(weight.copy()), torch.from_numpy(bias.copy()))]
    for name, t in zip(("x", "m", "weight", "bias"), inputs):
        t.float().numpy().tofile(tmp_path / f"{name}.bin")   # FP16 values are exact in float32
    ref = dynamic_filter_unfold(*[t.double() for t in inputs], k, s, p)
    run = _harness(plugins, "life", "int64", f"k={k}", f"s={s}", f"p={p}", f"cout={cout}", "enqueue", tmp_path,
                   "fp16" if dtype == torch.float16 else "fp32", f"{n},{cin},{h},{w},{cm}", memory,
                   *(["hwc8"] if hwc8 else []), library=library)
    assert run.returncode == 0 and "0 failure(s)" in run.stdout, run.stdout[-4000:]
    tactics = sorted(int(f.stem.split("_")[1]) for f in tmp_path.glob("out_*.bin"))
    expected = (FP16_TACTICS[2:] if hwc8 else FP16_TACTICS) if dtype == torch.float16 else [1]
    assert tactics == sorted(expected), (tactics, run.stdout[-2000:])
    errors = {}
    for tactic in tactics:
        out = torch.from_numpy(np.fromfile(tmp_path / f"out_{tactic}.bin", dtype=np.float32)).reshape(ref.shape)
        errors[tactic] = relative_error(out, ref)
    return errors


def _official_nodes():
    """Each official level's filter as a node (Cm 16, Cout % 16 == 0): the shapes the pipelined kernel runs."""
    g = torch.Generator().manual_seed(1)
    nodes = []
    for cin, cout, k, pad in OFFICIAL_SHAPES:
        rows = cin * k * k * cout
        attrs = {"kernel_size": k, "stride": STRIDE, "padding": pad, "out_channels": cout}
        nodes.append((shape_id((cin, cout, k, pad)), attrs, (torch.randn(rows, 16, 1, 1, generator=g) * 0.1).numpy(),
                      (torch.randn(rows, generator=g) * 0.1).numpy()))
    return nodes


def _check_every_tactic(plugins, tmp_path, nodes, dtype, hwc8=False):
    for name, attrs, weight, bias in nodes:
        for tactic, (rel, mean) in _enqueue(plugins, tmp_path, attrs, weight, bias, dtype, hwc8=hwc8).items():
            print(f"emulated plugin enqueue {name}{' kHWC8' if hwc8 else ''} k={attrs['kernel_size']} {dtype} "
                  f"tactic {tactic}: max rel {rel:.2e}, mean abs {mean:.2e}")
            assert rel < TOLERANCE[dtype], (name, tactic, rel)
        for f in tmp_path.glob("out_*.bin"):
            f.unlink()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_enqueue_matches_the_reference(plugins, plugin_nodes, tmp_path, dtype):
    """Every tactic on the exported model's nodes (TINY: Cm 2, so round 1 and SIMT) and on each official level."""
    _check_every_tactic(plugins, tmp_path, [(n.name, a, w, b) for n, a, w, b in plugin_nodes] + _official_nodes(),
                        dtype)


def test_enqueue_reads_hwc8_features(plugins, tmp_path):
    """kHWC8 (NHWC) features, read by the pipelined tactics with 16-byte copies, on every level with Cin % 32 == 0."""
    wide = [node for node, shape in zip(_official_nodes(), OFFICIAL_SHAPES) if shape[0] % 32 == 0]
    assert len(wide) == 3
    _check_every_tactic(plugins, tmp_path, wide, torch.float16, hwc8=True)


def test_bad_fields_and_calls_are_refused_with_a_logged_error(plugins):
    run = _harness(plugins, "refuse")
    print(run.stdout)
    assert run.returncode == 0 and "0 failure(s)" in run.stdout, run.stdout[-4000:]
    refused = run.stdout.count("ok refused with a logged error")
    assert refused >= 24, refused
    for what in ("missing kernel_size", "kernel_size of type FLOAT32", "negative kernel_size",
                 "plugin_version 2 passed as a field", "onShapeChange, weight rows off by one",
                 "enqueue before any onShapeChange", "enqueue after a refused onShapeChange"):
        assert f"ok refused with a logged error: {what}\n" in run.stdout, what
    assert "log ERROR MADFDynamicFilter: missing integer attribute kernel_size" in run.stdout
    assert "ok getTimingCacheID names the attributes and the tactic table: k3s2p1o8t2\n" in run.stdout
    for what in ("setTactic split-K in 3", "onShapeChange, kHWC8 features no kernel reads (FP32, Cin 4)"):
        assert f"ok refused with a logged error: {what}\n" in run.stdout, what


@pytest.mark.gpu
def test_real_plugin_library_on_the_gpu(plugins, plugin_nodes, tmp_path):
    """The same harness on libmadf_plugins.so with device memory: the real kernels, every tactic, through the
    plugin's enqueue (kHWC8 features too on the levels with Cin % 32 == 0)."""
    nodes = [(n.name, a, w, b) for n, a, w, b in plugin_nodes] + _official_nodes()
    runs = [(dtype, False) for dtype in (torch.float32, torch.float16)] + [(torch.float16, True)]
    for dtype, hwc8 in runs:
        for name, attrs, weight, bias in nodes:
            cin = weight.shape[0] // (int(attrs["kernel_size"]) ** 2 * int(attrs["out_channels"]))
            if hwc8 and (cin % 32 or weight.shape[1] != 16):
                continue
            errors = _enqueue(plugins, tmp_path, attrs, weight, bias, dtype, n=4, h=37, w=29,
                              library="libmadf_plugins.so", memory="cuda", hwc8=hwc8)
            for tactic, (rel, mean) in errors.items():
                print(f"GPU plugin enqueue {name} {dtype} hwc8={hwc8} tactic {tactic}: max rel {rel:.2e}, "
                      f"mean abs {mean:.2e}")
                assert rel < TOLERANCE[dtype], (name, tactic, rel)
            for f in tmp_path.glob("out_*.bin"):
                f.unlink()


@pytest.mark.parametrize("version", VERSIONS, ids=[f"trt{v}" for v in VERSIONS])
def test_cpp_runtime_compiles_against_tensorrt_headers(version, tmp_path):
    headers = _headers(version)
    configure = _cmake(CSRC / "runtime", tmp_path, f"-DTENSORRT_ROOT={headers}", "-DMADF_WARNINGS_AS_ERRORS=ON")
    engine = next(tmp_path.rglob("engine.cpp.o"))
    undefined = subprocess.run(["nm", "-u", "-C", str(engine)], capture_output=True, text=True).stdout
    assert "createInferRuntime_INTERNAL" in undefined   # the one TensorRT entry point the runtime calls
    if "but no library" in configure:   # here: compiled, not linked
        assert not list(tmp_path.glob("libmadf_runtime.so*"))
        if "libpng not found" not in configure:
            assert next(tmp_path.rglob("madf_inpaint.cpp.o")).is_file()
    else:
        assert list(tmp_path.glob("libmadf_runtime.so*"))


def test_gpu_session_harness_inputs_run_every_tactic(plugins, tmp_path):
    """benchmarks/gpu_session.sh hands compute-sanitizer the harness with benchmarks/kernel_cases.py's inputs; the
    same arguments on the emulated library (host memory) run every FP16 tactic, NCHW and kHWC8, at a tap-major level."""
    import sys
    made = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernel_cases.py"), "harness-inputs",
                           str(tmp_path), "--level", "5", "--batch", "2", "--size", "64"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    args = made.stdout.split()
    assert args[-1] == "cuda"
    for extra in ([], ["hwc8"]):
        run = _harness(plugins, *args[:-1], "host", *extra)
        assert run.returncode == 0 and "0 failure(s)" in run.stdout, run.stdout[-3000:]
        ran = sorted(int(f.stem.split("_")[1]) for f in tmp_path.glob("out_*.bin"))
        assert ran == sorted(FP16_TACTICS[2:] if extra else FP16_TACTICS), ran
        for f in tmp_path.glob("out_*.bin"):
            f.unlink()
