"""madf-serve on Ray Serve: N replicas of the same app on a real local cluster (2 CPUs, a small object store), the
same answers and errors as one process, /health and a header naming the replica that answered, a replica killed
in the middle of a run of requests, and the CLI started and stopped. No Ray process outlives the tests."""
import functools
import io
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import random_pair, raylets

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from madf.backends.spec import BackendSpec, open_inpainter  # noqa: E402
from madf.scale import serving  # noqa: E402

OPTIONS = {"queue_size": 16, "max_batch": 4, "max_upload_mb": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEPLOYMENT = "madf-test"   # not the default: the name is an option (madf-serve --deployment-name)


def replica_actors(name: str = DEPLOYMENT):
    """Names of the running replica actors of deployment ``name``: Ray Serve's internal naming, read here for the
    fault test only (the library reads replicas through serve.status())."""
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA") and f"::{name}#" in a["name"]]


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def service(exported):
    before = raylets()
    model = exported[1]["native"]
    ray.init(num_cpus=2, object_store_memory=128 << 20, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    port = _free_port()
    serving.start(functools.partial(open_inpainter, BackendSpec(model), batch_size=4), OPTIONS,
                  port=port, replicas=2, cpus_per_replica=0.5, name=DEPLOYMENT)
    yield f"http://127.0.0.1:{port}", model
    serve.shutdown()
    ray.shutdown()
    for _ in range(50):
        if raylets() <= before:
            break
        time.sleep(0.2)
    assert raylets() <= before, "a Ray process outlived the test cluster"


def _request(url, files, retries=5):
    """A client's retry on 5xx and dropped connections (what a client of any replicated service does)."""
    for attempt in range(retries):
        try:
            response = httpx.post(f"{url}/inpaint", files=files, timeout=60)
            if response.status_code < 500:
                return response, attempt
        except httpx.HTTPError:
            pass
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError("no answer after retries")


def test_replicas_answer_like_one_process(service):
    url, model = service
    from fastapi.testclient import TestClient

    from madf.serve.app import create_app
    image, hole = random_pair(37, 45, seed=1)
    files = {"image": ("a.png", _png(image)), "mask": ("m.png", _png((hole * 255).astype(np.uint8)))}
    with TestClient(create_app(open_inpainter(BackendSpec(model), batch_size=4), **OPTIONS)) as one:
        expected = one.post("/inpaint", files=files)
        bad = one.post("/inpaint", files={"image": ("a.png", b"xx"), "mask": files["mask"]})
    seen = {httpx.get(f"{url}/health", timeout=30).json()["replica"] for _ in range(20)}
    print("replicas seen:", seen)
    assert len(seen) == 2 and all(name.startswith(f"{DEPLOYMENT}#") for name in seen)
    response = httpx.post(f"{url}/inpaint", files=files, timeout=60)
    assert response.status_code == 200 and response.content == expected.content
    assert response.headers["X-Madf-Replica"] in seen
    refused = httpx.post(f"{url}/inpaint", files={"image": ("a.png", b"xx"), "mask": files["mask"]}, timeout=60)
    assert refused.status_code == bad.status_code == 400 and refused.json() == bad.json()
    too_big = httpx.post(f"{url}/inpaint", files={"image": ("a.png", b"\0" * (2 << 20)), "mask": files["mask"]},
                         timeout=60)
    assert too_big.status_code == 413   # the same limits
    info = httpx.get(f"{url}/info", timeout=30).json()
    assert info["replica"] in seen and info["limits"]["queue_size"] == 16


def test_a_replica_killed_in_the_middle_of_a_run(service):
    url, _ = service
    image, hole = random_pair(29, 33, seed=2)
    files = {"image": ("a.png", _png(image)), "mask": ("m.png", _png((hole * 255).astype(np.uint8)))}
    results, retried, killed = [], 0, None
    for i in range(10):
        if i == 3:
            killed = replica_actors()[0]
            ray.kill(ray.get_actor(killed, namespace="serve"), no_restart=True)
        response, attempts = _request(url, files)
        assert response.status_code == 200, response.text
        results.append(response.content)
        retried += attempts
    print(f"killed {killed}; {retried} retried request(s)")
    assert len(set(results)) == 1   # every answer the same result
    deadline = time.time() + 90
    while time.time() < deadline:   # Serve replaces the dead replica
        status = serve.status().applications[DEPLOYMENT].deployments[DEPLOYMENT]
        if status.replica_states.get("RUNNING", 0) == 2 and killed not in replica_actors():
            break
        time.sleep(1)
    assert status.replica_states.get("RUNNING", 0) == 2, status
    assert killed not in replica_actors()


def test_cli_replicas_start_and_stop(exported, tmp_path):
    model = exported[1]["native"]
    port = _free_port()
    before = raylets()
    env = dict(os.environ, MADF_RAY_OBJECT_STORE_MB="128")
    proc = subprocess.Popen([sys.executable, "-m", "madf.cli.serve", "--model", str(model), "--replicas", "2",
                             "--cpus-per-replica", "0.5", "--port", str(port), "--deployment-name", "cli-test"],
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.time() + 180
        while time.time() < deadline and "page http" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "page http" in line, proc.stdout.read() if proc.poll() is not None else line
        seen = {httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["replica"] for _ in range(12)}
        assert len(seen) == 2 and all(name.startswith("cli-test#") for name in seen), seen
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    print(out[-1500:])
    assert proc.returncode == 0 and "stopping the replicas" in out
    for _ in range(50):
        if raylets() <= before:
            break
        time.sleep(0.2)
    assert raylets() <= before, "madf-serve --replicas left its Ray cluster running"


def test_autoscale_bounds_are_checked(exported):
    from click.testing import CliRunner

    from madf.cli.serve import main
    model = str(exported[1]["native"])
    for bad, says in (("3:1", "MIN <= MAX"), ("x", "is not MIN:MAX"), ("0:0", "MAX >= 1")):
        result = CliRunner().invoke(main, ["--model", model, "--autoscale", bad])
        assert result.exit_code == 2 and says in result.output, result.output


REPLICA_FAILS = """
import functools, sys
from madf.backends.spec import BackendSpec, open_inpainter
from madf.scale import serving
from madf.scale.cluster import connect, madf_errors
with connect("local", num_cpus=2) as ray, madf_errors():
    try:
        serving.start(functools.partial(open_inpainter, BackendSpec("/nodes/b/places2.pth")), {}, port=int(sys.argv[1]),
                      replicas=1, cpus_per_replica=0.5)
    except Exception as exc:
        print("RAISED", type(exc).__name__, exc)
"""


def test_a_replica_that_cannot_open_its_model_says_why(tmp_path):
    """A model that opens on the driver but not where a replica runs: madf's own line, within the retries of one
    replica (was: "Deploying application madf failed" after about three minutes)."""
    env = dict(os.environ, MADF_RAY_OBJECT_STORE_MB="128")
    before = raylets()
    started = time.time()
    done = subprocess.run([sys.executable, "-c", REPLICA_FAILS, str(_free_port())], env=env, capture_output=True,
                          text=True, timeout=240)
    seconds = time.time() - started
    raised = [line for line in done.stdout.splitlines() if line.startswith("RAISED")]
    print(f"{seconds:.0f} s:", raised, done.stderr[-1500:] if not raised else "")
    assert raised == ["RAISED CheckpointError /nodes/b/places2.pth: no such checkpoint file"]
    for _ in range(50):
        if raylets() <= before:
            break
        time.sleep(0.2)
    assert raylets() <= before


def test_cli_checks_before_ray_starts(exported, tmp_path):
    """A damaged or missing model, a busy port, and more replicas than the cluster's CPUs: one line each, before
    any replica is started (were: minutes, then Ray's words, or silence)."""
    from click.testing import CliRunner

    from madf.cli.serve import main
    model = exported[1]["native"]
    damaged = tmp_path / "damaged.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    before = raylets()
    for args, says in ((["--model", str(tmp_path / "missing.onnx")], "no such ONNX file"),
                       (["--model", str(damaged)], str(damaged))):
        result = CliRunner().invoke(main, args + ["--replicas", "2"])
        print(result.output)
        assert result.exit_code == 1 and says in result.output and "Traceback" not in result.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        result = CliRunner().invoke(main, ["--model", str(model), "--replicas", "2", "--port",
                                           str(busy.getsockname()[1])])
    print(result.output)
    assert result.exit_code == 1 and "choose another --port" in result.output
    assert raylets() <= before
    env = dict(os.environ, MADF_RAY_OBJECT_STORE_MB="128")
    done = subprocess.run([sys.executable, "-m", "madf.cli.serve", "--model", str(model), "--replicas",
                           str(os.cpu_count() + 1), "--port", str(_free_port())], env=env, capture_output=True,
                          text=True, timeout=180)
    print(done.stdout[-500:], done.stderr[-1000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and len(errors) == 1 and "the Ray cluster has" in errors[0] \
        and "use --replicas" in errors[0], done.stderr
