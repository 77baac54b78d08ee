"""The fused CUDA kernel (madf/csrc/plugins/dynamicFilter) through its torch binding, against the float64 reference.

Each test runs on two builds of the same binding: "cuda" (the real kernels; marked gpu, skipped without one) and
"emulated" (torchBinding.cpp with MADF_EMULATE over madf/csrc/emulation: each CUDA thread a fiber, barriers that
yield, WMMA on whole tiles), so the argument checks, the launch path and the kernels' indexing, tiling, barriers and
epilogues are tested on every CI run. What emulation cannot show (real tensor-core rounding, races between truly
parallel threads, speed) is left to the GPU run (scripts/gpu-check.sh).
"""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from madf.model import fused_kernel as kernel

from dynamic_filter_cases import (
    EMULATED_SIZES,
    OFFICIAL_SHAPES,
    SIZES,
    STRIDE,
    TOLERANCE,
    make_case,
    relative_error,
    shape_id,
    size_id,
)

EMULATION = kernel.EMULATION
DEVICE = {"cuda": "cuda", "emulated": "cpu"}
# every variant in FP16 (the round-1 tensor-core kernel, the pipelined one, split-K with S per call and S = 2, 4, 8),
# and FP32 asking for tensor cores or the pipeline, which runs SIMT
ALGOS = ([("simt", torch.float32), ("simt", torch.float16), ("pipelined", torch.float32)]
         + [(variant, torch.float16) for variant in kernel.VARIANTS + ("split_k",)])
DTYPE_NAME = {torch.float32: "fp32", torch.float16: "fp16"}


def assert_ran(algo, dtype, ran):
    """What a request runs on an official level (Cm 16, Cout % 16 == 0): FP32 SIMT; FP16 what was asked, split-K in
    at most the asked S (fewer when the window has fewer than 2 stages per split)."""
    if dtype == torch.float32 or algo == "simt":
        assert ran == "simt", (algo, ran)
    elif algo.startswith("split_k"):
        splits = re.fullmatch(r"split_k(\d+)", ran)
        assert splits and 1 <= int(splits.group(1)) <= int(algo[7:] or kernel.MAX_SPLITS), (algo, ran)
    else:
        assert ran == algo, (algo, ran)


def _backends(cuda_cases, emulated_cases):
    """(backend, case) parameters: the GPU ones marked gpu so they skip cleanly without a GPU."""
    return ([pytest.param("emulated", c, id=f"emulated-{i}") for i, c in emulated_cases]
            + [pytest.param("cuda", c, id=f"cuda-{i}", marks=pytest.mark.gpu) for i, c in cuda_cases])


BACKENDS = _backends([("", None)], [("", None)])


def load_module(backend):
    """The extension module of one build (built once per machine; torch caches it)."""
    if backend == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA GPU")
        return kernel.load_extension()
    if kernel.cuda_home() is None:
        pytest.skip("needs the CUDA toolkit's headers (nvcc on PATH)")
    return kernel.load_emulated_extension(EMULATION)


def fused_kernel(backend):
    return kernel.FusedKernel(load_module(backend), DEVICE[backend])


def _on(backend, tensors):
    return [t.to(DEVICE[backend]) for t in tensors]


def _reference_cases(sizes):
    return [(f"{a}-{DTYPE_NAME[d]}-{shape_id(s)}-{size_id(z)}", (a, d, s, z)) for a, d in ALGOS
            for s in OFFICIAL_SHAPES for z in sizes]


@pytest.mark.parametrize("backend,case", _backends(_reference_cases(SIZES), _reference_cases(EMULATED_SIZES)))
def test_fused_matches_reference(backend, case):
    algo, dtype, (cin, cout, k, pad), size = case
    fused = fused_kernel(backend)
    inputs, ref = make_case(cin, cout, k, pad, *size, dtype)
    inputs = _on(backend, inputs)
    out = fused(*inputs, k, STRIDE, pad, algo=algo)
    ran = fused.selected(*inputs, k, STRIDE, pad, algo=algo)
    rel, mean = relative_error(out, ref)
    print(f"{backend} {DTYPE_NAME[dtype]} {algo}->{ran} cin={cin} cout={cout} k={k} size={size}: "
          f"max rel {rel:.2e}, mean abs {mean:.2e}")
    assert out.dtype == dtype and out.shape == ref.shape and out.device.type == DEVICE[backend]
    assert_ran(algo, dtype, ran)
    assert rel < TOLERANCE[dtype]


@pytest.mark.parametrize("backend,case", _backends([("", None)], [("", None)]))
def test_channels_last_features_are_read_in_place(backend, case):
    """NHWC features: the pipelined and split-K variants read them with 16-byte copies where Cin % 32 == 0; round 1
    (and auto, which keeps round 1) gets an NCHW copy. Same answer either way."""
    fused = fused_kernel(backend)
    for cin, cout, k, pad in OFFICIAL_SHAPES:
        inputs, ref = make_case(cin, cout, k, pad, 2, 13, 9, torch.float16)
        x, rest = inputs[0].contiguous(memory_format=torch.channels_last), _on(backend, inputs[1:])
        x = x.to(DEVICE[backend])
        assert not x.is_contiguous()
        for algo in ("pipelined", "split_k4", "tensor_core", "auto"):
            out = fused(x, *rest, k, STRIDE, pad, algo=algo)
            ran = fused.selected(x, *rest, k, STRIDE, pad, algo=algo)
            rel, mean = relative_error(out, ref)
            print(f"{backend} channels-last {algo}->{ran} cin={cin}: max rel {rel:.2e}, mean abs {mean:.2e}")
            assert rel < TOLERANCE[torch.float16], (algo, cin, rel)
            assert_ran("tensor_core" if algo == "auto" else algo, torch.float16, ran)


def test_algorithm_names_are_the_headers():
    # madfAlgo (dynamicFilterKernel.cuh) is the one statement; fused_kernel.KINDS and MAX_SPLITS copy it
    header = (kernel.SOURCES / "dynamicFilterKernel.cuh").read_text()
    enum = {name.lower(): int(value) for name, value in re.findall(r"MADF_ALGO_(\w+) = (\d+)", header)}
    assert {name: value for name, value in kernel.KINDS.items()} == enum
    assert int(re.search(r"#define MADF_MAX_SPLITS (\d+)", header).group(1)) == kernel.MAX_SPLITS
    assert kernel.tactic_name(kernel.ALGOS["split_k4"]) == "split_k4" and kernel.tactic_name(3) == "pipelined"


@pytest.mark.parametrize("backend,case", _backends([(str(c), c) for c in (1, 2, 16, 24)],
                                                   [(str(c), c) for c in (1, 3, 16, 24)]))
def test_fused_any_mask_channels_and_partial_tiles(backend, case):
    # Cout 5 and 20 leave partial channel tiles; Cm > 16 has no tensor-core path (one accumulator per c), so auto
    # must fall back to SIMT and stay right
    fused, cm = fused_kernel(backend), case
    for cout, dtype in [(5, torch.float32), (20, torch.float16)]:
        inputs, ref = make_case(3, cout, 3, 1, 2, 11, 17, dtype, cm=cm)
        inputs = _on(backend, inputs)
        rel, _ = relative_error(fused(*inputs, 3, STRIDE, 1), ref)
        expect = "tensor_core" if dtype == torch.float16 and cm <= 16 else "simt"
        assert fused.selected(*inputs, 3, STRIDE, 1) == expect, (cm, cout)
        assert rel < TOLERANCE[dtype], (cm, cout, rel)
        # the pipelined kernel needs Cm 16 and whole 16-channel output tiles: elsewhere it is round 1 (or SIMT)
        for algo in ("pipelined", "split_k4"):
            rel, _ = relative_error(fused(*inputs, 3, STRIDE, 1, algo=algo), ref)
            assert fused.selected(*inputs, 3, STRIDE, 1, algo=algo) == expect and rel < TOLERANCE[dtype], (algo, cm)


@pytest.mark.parametrize("backend,case", BACKENDS)
def test_fused_errors_are_clear(backend, case):
    fused = fused_kernel(backend)
    x, m, w, b = _on(backend, make_case(4, 16, 7, 3, 1, 16, 16, torch.float32)[0])
    other_device = torch.device("cpu") if backend == "cuda" else torch.device("meta")
    bad = {
        "do not match the output grid": (ValueError, (x, m[:, :, :4], w, b, 7, STRIDE, 3)),
        f"runs on {DEVICE[backend]} tensors": (ValueError, (x.to(other_device), m, w, b, 7, STRIDE, 3)),
        "one dtype for all inputs": (TypeError, (x, m.half(), w, b, 7, STRIDE, 3)),
        "takes float32 or float16": (TypeError, tuple(t.double() for t in (x, m, w, b)) + (7, STRIDE, 3)),
        "bias (Cin*k*k*Cout,)": (ValueError, (x, m, w, b[:-1], 7, STRIDE, 3)),
        "(Cin*k*k*Cout, Cm, 1, 1)": (ValueError, (x, m, w.reshape(w.shape[0] // 2, 16, 2, 1), b, 7, STRIDE, 3)),
        "stride >= 1": (ValueError, (x, m, w, b, 7, 0, 3)),
        "must be a tensor": (TypeError, (x.tolist(), m, w, b, 7, STRIDE, 3)),
    }
    for message, (kind, args) in bad.items():
        with pytest.raises(kind, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
            fused(*args)
    with pytest.raises(ValueError, match="unknown fused-kernel algorithm"):
        fused(x, m, w, b, 7, STRIDE, 3, algo="fast")
    # non-contiguous views are served (copied), not misread
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)
    assert not xt.is_contiguous()
    assert torch.equal(fused(xt, m, w, b, 7, STRIDE, 3), fused(x, m, w, b, 7, STRIDE, 3))
    empty = fused(x[:0], m[:0], w, b, 7, STRIDE, 3)
    assert empty.shape == (0, 16, 8, 8)


# The binding's own checks, called directly in a child process: a crash there is a failed test, not a dead run.
BINDING_CASES = """
import sys, torch
sys.path.insert(0, {tests!r})
from dynamic_filter_cases import make_case
from madf.model import fused_kernel as kernel
module = kernel.load_extension() if {backend!r} == "cuda" else kernel.load_emulated_extension({emulation!r})
dev = "cuda" if {backend!r} == "cuda" else "cpu"
x, m, w, b = [t.to(dev) for t in make_case(4, 16, 7, 3, 1, 16, 16, torch.float32)[0]]
wrong_device = x.cpu() if dev == "cuda" else x.to("meta")
cases = {{
    "grid": (x, m[:, :, :4], w, b, 7, 2, 3, 0), "device": (wrong_device, m, w, b, 7, 2, 3, 0),
    "dtype": (x, m.half(), w, b, 7, 2, 3, 0), "double": (x.double(), m.double(), w.double(), b.double(), 7, 2, 3, 0),
    "bias": (x, m, w, b[:-1], 7, 2, 3, 0), "weight": (x, m, w.reshape(-1, 16, 2, 1), b, 7, 2, 3, 0),
    "algo": (x, m, w, b, 7, 2, 3, 9), "kernel": (x, m, w, b, -7, 2, 3, 0), "stride": (x, m, w, b, 7, 0, 3, 0),
    "range": (x, m, w, b, 7, 2, 2 ** 40, 0), "rank": (x[0], m, w, b, 7, 2, 3, 0),
}}
for name, args in cases.items():
    for call in (module.forward, module.selected):
        try:
            call(*args)
            print(name, "accepted")
        except RuntimeError as exc:
            print(name, "RuntimeError", str(exc).splitlines()[0])
print("done")
"""
BINDING_EXPECT = {"grid": "do not match the output grid", "device": "runs on", "dtype": "one dtype",
                  "double": "float32 or float16", "bias": "bias must be", "weight": "weight must be",
                  "algo": "algo must be", "kernel": "kernel_size and stride must be positive",
                  "stride": "kernel_size and stride must be positive", "range": "out of range",
                  "rank": "must be 4-D"}


@pytest.mark.parametrize("backend,case", BACKENDS)
def test_binding_checks_raise_and_never_crash(backend, case):
    load_module(backend)   # build (or skip) here, so the child only loads it
    script = BINDING_CASES.format(tests=str(Path(__file__).parent), backend=backend, emulation=str(EMULATION))
    # -u: every case is printed before the next runs; faulthandler: a crash names the Python line it died on
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-u", "-c", textwrap.dedent(script)],
                         capture_output=True, text=True, timeout=300)
    print(run.stdout)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("done"), \
        f"the binding crashed (exit {run.returncode}) after:\n{run.stdout[-1000:]}\n{run.stderr[-3000:]}"
    lines = run.stdout.splitlines()
    for name, message in BINDING_EXPECT.items():
        mine = [line for line in lines if line.split()[0] == name]
        assert len(mine) == 2 and all("RuntimeError" in line and message in line for line in mine), (name, mine)


@pytest.fixture
def fused_registered():
    """Registers impl="fused" for one test and removes it after (the registry is process-wide)."""
    from madf.model.dynamic_filter import IMPLEMENTATIONS, register
    before, calls = dict(IMPLEMENTATIONS), []

    def install(backend):
        fused = fused_kernel(backend)

        def counted(*args, **kwargs):   # so the test sees the model really ran the kernel
            calls.append(args[0].shape)
            return fused(*args, **kwargs)
        register("fused")(counted)
        return calls
    yield install
    IMPLEMENTATIONS.clear()
    IMPLEMENTATIONS.update(before)


@pytest.mark.parametrize("backend,case", _backends(
    [("fp32", (torch.float32, 1e-4)), ("fp16", (torch.float16, 2e-2))],
    [("fp32", (torch.float32, 1e-4)), ("fp16", (torch.float16, 2e-2))]))
def test_whole_model_with_the_fused_kernel(backend, case, fused_registered):
    from madf.model.config import ModelConfig
    from madf.model.network import build_model
    dtype, tolerance = case
    calls = fused_registered(backend)
    # GPU: 5 levels at 64x96; emulated: a tiny 4-level model at 32x48 (every CUDA thread runs in turn)
    config, (h, w) = ((ModelConfig(levels=5, width=0.25), (64, 96)) if backend == "cuda"
                      else (ModelConfig(levels=4, width=0.125), (32, 48)))
    net = build_model(config, seed=0).to(DEVICE[backend]).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, h, w, generator=g)
    known = 1 - (torch.rand(2, 1, h, w, generator=g) > 0.7).float().expand(-1, 3, -1, -1)
    # FP32 means FP32: cuDNN's default TF32 convolutions elsewhere in the net would swamp the kernel's own error
    from madf.model.acceleration import TorchOptions, precision_context
    with torch.no_grad(), precision_context(TorchOptions("fp32"), torch.device(DEVICE[backend])):
        ref = net.double()(*(t.double().to(DEVICE[backend]) for t in (x * known, known)))[-1]
        net = net.to(dtype)
        net.dynamic_filter = "fused"
        out = net(*(t.to(dtype).to(DEVICE[backend]) for t in (x * known, known)))[-1]
    assert len(calls) == config.levels, calls
    err = (out.double() - ref).abs()
    scale = ref.abs().max().item()
    print(f"whole model, {backend} fused {DTYPE_NAME[dtype]} vs rewrite float64: max abs {err.max().item():.2e}, "
          f"mean abs {err.mean().item():.2e} (output scale {scale:.2f})")
    assert err.max().item() < tolerance * max(scale, 1.0)


@pytest.mark.parametrize("warps", [2, 4, 8])
def test_emulated_tensor_core_block_widths(warps, monkeypatch):
    # The GPU picks the block width per call (8 warps for big grids, 4 or 2 for small levels); the emulation runs
    # the one forced here, on two pixel tiles and a partial one, for every official level: round 1, and the pipelined
    # kernel and split-K over it in window order (levels 1-2) and tap-major, NCHW and NHWC features.
    monkeypatch.setenv("MADF_EMULATED_TC_WARPS", str(warps))
    fused = fused_kernel("emulated")
    for cin, cout, k, pad in OFFICIAL_SHAPES:
        inputs, ref = make_case(cin, cout, k, pad, 2, 2 * 16 * warps // 10 + 1, 22, torch.float16)
        nhwc = inputs[0].contiguous(memory_format=torch.channels_last)
        for algo, x in [("tensor_core", inputs[0])] + [(a, x) for a in ("pipelined", "split_k2")
                                                        for x in (inputs[0], nhwc)]:
            rel, _ = relative_error(fused(x, *inputs[1:], k, STRIDE, pad, algo=algo), ref)
            assert rel < TOLERANCE[torch.float16], (warps, algo, cin, cout, rel)


def test_auto_takes_the_fused_kernel_only_for_small_windows(fused_registered):
    from madf.model.dynamic_filter import FUSED_MAX_WINDOW, resolve
    assert resolve("auto", 64, 3) == "rewrite"                 # no fused kernel registered: the rewrite everywhere
    fused_registered("emulated")
    assert [resolve("auto", s[0], s[2]) for s in OFFICIAL_SHAPES] == \
        ["fused" if s[0] * s[2] ** 2 <= FUSED_MAX_WINDOW else "rewrite" for s in OFFICIAL_SHAPES]
    assert resolve("auto", 6, 7) == "fused" and resolve("auto", 64, 3) == "rewrite"
    assert resolve("unfold", 6, 7) == "unfold"


def test_whole_model_on_auto(fused_registered):
    from madf.model.config import ModelConfig
    from madf.model.network import build_model
    calls = fused_registered("emulated")
    net = build_model(ModelConfig(levels=3, width=0.125), seed=0)
    x, known = torch.rand(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    with torch.no_grad():
        ref = net(x, known)[-1]
        net.dynamic_filter = "auto"
        out = net(x, known)[-1]
    assert len(calls) == 3   # every window of this small net is under the limit
    assert (out - ref).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="choose one of"):
        net.dynamic_filter = "fastest"


STATIC_RUNTIME_PROBE = """
import sys, torch
from pathlib import Path
from torch.utils.cpp_extension import load
from madf.model import fused_kernel as kernel
spec = kernel._link_runtime_libstdcxx(kernel.extension_spec(Path({emulation!r})))
spec["name"] += "_static_runtime"
spec["extra_ldflags"] += ["-static-libstdc++"]   # what a compiler that links its C++ runtime statically adds
module = load(**spec)
x, m, w, b = torch.randn(1, 4, 16, 16), torch.randn(1, 16, 8, 4), torch.randn(784, 16, 1, 1), torch.randn(784)
try:
    module.forward(x, m, w, b, 7, 2, 3, 0)
except RuntimeError as exc:
    print(str(exc).splitlines()[0])
"""


def test_binding_messages_survive_a_statically_linked_cxx_runtime():
    # A GPU machine's GCC linked libstdc++ into the extension: a second C++ runtime whose streams crashed
    # (SIGSEGV) or cut the binding's messages short at the first number. The extension now links the process's own.
    if kernel.cuda_home() is None:
        pytest.skip("needs the CUDA toolkit's headers (nvcc on PATH)")
    probe = STATIC_RUNTIME_PROBE.format(emulation=str(EMULATION))
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", probe],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "mask_features [1, 16, 8, 4] do not match the output grid (1, 8x8)", run.stdout


# A kernel with one synchronization taken out, built on the emulation: it must give a wrong answer there, or the
# emulation could not tell a missing cp.async wait or barrier from a correct pipeline.
MUTANT = """
import shutil, sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from torch.utils.cpp_extension import load
from dynamic_filter_cases import OFFICIAL_SHAPES, STRIDE, make_case, relative_error
from madf.model import fused_kernel as kernel
csrc = Path({folder!r}) / "csrc"
shutil.copytree(kernel.CSRC, csrc)
source = csrc / "plugins" / "dynamicFilter" / "dynamicFilterKernel.cu"
text = source.read_text()
assert text.count({old!r}) == 1, "the mutated line is gone: update the test"
source.write_text(text.replace({old!r}, {new!r}))
kernel.SOURCES = source.parent
spec = kernel._link_runtime_libstdcxx(kernel.extension_spec(csrc / "emulation"))
spec["name"] = {name!r}
fused = kernel.FusedKernel(load(**spec), "cpu")
for cin, cout, k, pad in OFFICIAL_SHAPES[1:3]:
    inputs, ref = make_case(cin, cout, k, pad, 2, 13, 9, torch.float16)
    for algo in ("pipelined", "split_k2"):
        rel, _ = relative_error(fused(*inputs, k, STRIDE, pad, algo=algo), ref)
        print(cin, algo, rel)
"""
MUTATIONS = {
    "wait": ("copyAsyncWait<kPipeStages - 2>();", "copyAsyncWait<kPipeStages - 1>();"),
    "barrier": ("        __syncthreads();                    // everyone's copies",
                "        // (barrier taken out)                    // everyone's copies"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_emulation_catches_a_missing_synchronization(mutation, tmp_path):
    if kernel.cuda_home() is None:
        pytest.skip("needs the CUDA toolkit's headers (nvcc on PATH)")
    old, new = MUTATIONS[mutation]
    script = MUTANT.format(tests=str(Path(__file__).parent), folder=str(tmp_path), old=old, new=new,
                           name=f"madf_mutant_{mutation}")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    errors = [float(line.split()[-1]) for line in run.stdout.splitlines()]
    print(mutation, errors)
    assert len(errors) == 4 and all(not e < TOLERANCE[torch.float16] for e in errors), run.stdout
