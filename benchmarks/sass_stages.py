"""Instructions per pipeline stage of the fused kernel's main loop, read from its SASS (no GPU needed).

Compiles madf/csrc/plugins/dynamicFilter/dynamicFilterKernel.cu (or the file at a git revision, --rev) for one
architecture with nvcc -O3 -cubin, disassembles it with cuobjdump (pip: nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm, which cuobjdump runs) and, for every tensor-core kernel, finds the main loop: the innermost
loop (a backward branch) holding all of the kernel's HMMA. It prints, per kernel, the loop body's static instruction
count (one pass = one stage of 32 window rows), its HMMA, its memory and barrier instructions, and the inner loops
inside it (a loop inside the stage loop runs more than once per stage, so such a body's static count is below its
dynamic one).

    python benchmarks/sass_stages.py                      # the working tree, sm_90
    python benchmarks/sass_stages.py --rev HEAD~3 --arch sm_80
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
KERNEL = Path("madf/csrc/plugins/dynamicFilter")
LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?);")
SOURCES = ("window order", "tap-major NCHW", "tap-major NHWC")   # ASource in dynamicFilterKernel.cu
CLASSES = ("HMMA", "LDGSTS", "LDG", "LDS", "LDSM", "STS", "BAR", "DEPBAR", "BRA")


def tool(name: str) -> str:
    """A CUDA binary tool on PATH, else the one the nvidia-cuda-* wheels put next to this Python."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in Path(sys.prefix).glob(f"lib/python*/site-packages/nvidia/cu*/bin/{name}"):
        return str(candidate)
    raise click.ClickException(f"{name} not found: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm (or put "
                               "CUDA's bin on PATH)")


def sources(rev: str | None, folder: Path) -> Path:
    """The kernel's .cu and .cuh in `folder`, from the working tree or a git revision."""
    for name in ("dynamicFilterKernel.cu", "dynamicFilterKernel.cuh"):
        path = KERNEL / name
        text = (ROOT / path).read_text() if rev is None else subprocess.run(
            ["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        (folder / name).write_text(text)
    return folder / "dynamicFilterKernel.cu"


def functions(sass: str) -> dict[str, list[tuple[int, str]]]:
    """{demangled-ish kernel name: [(address, instruction)]} from cuobjdump -sass."""
    out, name = {}, None
    for line in sass.splitlines():
        if "Function :" in line:
            name = line.split("Function :")[1].strip()
            out[name] = []
        elif name is not None and (m := LINE.search(line)):
            out[name].append((int(m.group(1), 16), m.group(2).strip()))
    return out


def opcode(instruction: str) -> str:
    words = instruction.split()
    op = words[1] if words[0].startswith("@") else words[0]
    return op.split(".")[0]


def main_loop(code: list[tuple[int, str]]):
    """(first, last) index of the innermost backward-branch loop holding every HMMA, and the loops inside it."""
    hmma = [i for i, (_, ins) in enumerate(code) if opcode(ins) == "HMMA"]
    index = {addr: i for i, (addr, _) in enumerate(code)}
    loops = []
    for i, (addr, ins) in enumerate(code):
        target = re.search(r"BRA (?:`\(\.L_x_\d+\)|)\s*0x([0-9a-f]+)", ins)
        if opcode(ins) == "BRA" and target and int(target.group(1), 16) < addr and int(target.group(1), 16) in index:
            loops.append((index[int(target.group(1), 16)], i))
    holding = [(a, b) for a, b in loops if hmma and a <= hmma[0] and hmma[-1] <= b]
    if not holding:
        return None, []
    first, last = min(holding, key=lambda loop: loop[1] - loop[0])
    inner = [(a, b) for a, b in loops if first <= a and b <= last and (a, b) != (first, last)]
    return (first, last), inner


@click.command()
@click.option("--rev", default=None, help="Git revision of the kernel to read (default: the working tree).")
@click.option("--arch", default="sm_90", show_default=True)
@click.option("--match", default="tensorCoreKernel|pipelinedKernel", show_default=True,
              help="Regular expression for the kernels to report.")
def main(rev, arch, match):
    with tempfile.TemporaryDirectory() as tmp:
        cu = sources(rev, Path(tmp))
        cubin = Path(tmp) / "kernel.cubin"
        subprocess.run(["nvcc", "-O3", f"-arch={arch}", "-cubin", "-o", str(cubin), str(cu)], check=True,
                       capture_output=True)
        cuobjdump = tool("cuobjdump")
        tool("nvdisasm")   # cuobjdump -sass runs it from PATH: the wheels put both in one folder
        env = dict(os.environ, PATH=f"{Path(cuobjdump).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        sass = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, check=True,
                              env=env).stdout
    print(f"| kernel ({rev or 'working tree'}, {arch}) | loop instructions | HMMA | "
          + " | ".join(CLASSES[1:]) + " | inner loops |")
    print("|---|---:|---:|" + "---:|" * (len(CLASSES) - 1) + "---|")
    for name, code in functions(sass).items():
        if not re.search(match, name):
            continue
        loop, inner = main_loop(code)
        if loop is None:
            continue
        body = [opcode(ins) for _, ins in code[loop[0]:loop[1] + 1]]
        counts = Counter(body)
        short = re.search(r"(tensorCoreKernel|pipelinedKernel)ILi(\d+)E(?:LNS_\d+ASourceE(\d)E)?", name)
        label = name[:60] if short is None else f"{short.group(1)}<{short.group(2)} warps" + (
            f", {SOURCES[int(short.group(3))]}>" if short.group(3) else ">")
        inner_text = ", ".join(f"{b - a + 1}" for a, b in inner) or "none"
        print(f"| {label} | {len(body)} | {counts['HMMA']} | " + " | ".join(str(counts[c]) for c in CLASSES[1:])
              + f" | {inner_text} |")


if __name__ == "__main__":
    main()
