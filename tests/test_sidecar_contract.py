"""One sidecar contract: the Python runtime (madf.engines.sidecar) and the C++ runtime (madf::sidecar, built here
without TensorRT or a GPU) accept and refuse the same cases of tests/fixtures/sidecars.json, with the same lines."""
import copy
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from madf.common.errors import ModelError
from madf.engines import sidecar as contract

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = json.loads((ROOT / "tests" / "fixtures" / "sidecars.json").read_text())
CASES = FIXTURES["cases"]


def _merge(into: dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def materialize(case: dict, folder: Path) -> Path:
    """PLAN and PLAN.json for a case; returns the plan's path."""
    good = FIXTURES["plan"].encode()
    plan = {"truncated": good[:-7], "modified": good[:-1] + b"!"}.get(case.get("plan"), good)
    path = folder / "model.plan"
    path.write_bytes(plan)
    if "text" in case:
        if case["text"] is not None:
            (folder / "model.plan.json").write_text(case["text"])
        return path
    data = copy.deepcopy(FIXTURES["base"])
    data["engine"].update(bytes=len(good), sha256=hashlib.sha256(good).hexdigest())
    _merge(data, case.get("set", {}))
    if "drop" in case:
        *parents, leaf = case["drop"].split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[leaf]
    (folder / "model.plan.json").write_text(json.dumps(data, indent=2))
    return path


def python_verdict(plan: Path, case: dict) -> str:
    runtime, gpu = case.get("runtime", FIXTURES["runtime"]), case.get("gpu", FIXTURES["gpu"])
    try:
        side = contract.read_sidecar(plan)
        contract.read_plan(plan, side)
        contract.check_version(plan, side, runtime["version"], runtime["flavour"])
        contract.check_gpu(plan, side, gpu)
    except ModelError as exc:
        return f"refused: {exc}"
    return "ok"


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    if not (shutil.which("cmake") and shutil.which("c++")):
        pytest.skip("needs cmake and a C++ compiler")
    out = tmp_path_factory.mktemp("sidecar-cpp")
    configure = subprocess.run(["cmake", "-S", str(ROOT / "madf" / "csrc" / "runtime"), "-B", str(out),
                                "-DMADF_WARNINGS_AS_ERRORS=ON"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    if "OpenSSL (libcrypto) not found" in configure.stdout:
        pytest.skip("OpenSSL's libcrypto headers are not installed (apt install libssl-dev)")
    built = subprocess.run(["cmake", "--build", str(out), "--target", "madf_sidecar_check", "-j2"],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return out / "madf_sidecar_check"


def cpp_verdict(checker: Path, plan: Path, case: dict) -> str:
    runtime, gpu = case.get("runtime", FIXTURES["runtime"]), case.get("gpu", FIXTURES["gpu"])
    run = subprocess.run([str(checker), str(plan), runtime["version"], runtime["flavour"], gpu["compute_capability"],
                          gpu["name"]], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_both_runtimes_judge_each_case_alike(case, checker, tmp_path):
    plan = materialize(case, tmp_path)
    python, cpp = python_verdict(plan, case), cpp_verdict(checker, plan, case)
    print(f"{case['name']}:\n  python: {python}\n  c++:    {cpp}")
    assert python == cpp
    if case["refused"] is None:
        assert python == "ok"
    else:
        assert python.startswith("refused: ") and case["refused"] in python
        assert "\n" not in python and "madf-build" in python   # one line, naming the fix


def test_the_required_fields_are_one_list():
    source = (ROOT / "madf" / "csrc" / "runtime" / "src" / "sidecar.cpp").read_text()
    listed = re.search(r"kRequired = \{([^}]*)\}", source).group(1)
    assert tuple(re.findall(r'"([^"]+)"', listed)) == contract.REQUIRED
    assert f'kFormat = "{contract.FORMAT}"' in source
    dropped = {c["drop"] for c in CASES if "drop" in c} | {next(iter(c["set"])) for c in CASES
                                                            if c.get("set") and None in c["set"].values()}
    assert dropped & set(contract.REQUIRED)   # the fixtures exercise the list
