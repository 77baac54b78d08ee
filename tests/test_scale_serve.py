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

from madf.cli.backends import open_inpainter  # noqa: E402
from madf.scale import serving  # noqa: E402

OPTIONS = {"queue_size": 16, "max_batch": 4, "max_upload_mb": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    serving.start(functools.partial(open_inpainter, "onnxruntime", model=str(model), batch_size=4), OPTIONS,
                  port=port, replicas=2, cpus_per_replica=0.5)
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
    with TestClient(create_app(open_inpainter("onnxruntime", model=str(model), batch_size=4), **OPTIONS)) as one:
        expected = one.post("/inpaint", files=files)
        bad = one.post("/inpaint", files={"image": ("a.png", b"xx"), "mask": files["mask"]})
    seen = {httpx.get(f"{url}/health", timeout=30).json()["replica"] for _ in range(20)}
    print("replicas seen:", seen)
    assert len(seen) == 2 and all(name.startswith("madf#") for name in seen)
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
            killed = serving.replica_actors()[0]
            ray.kill(ray.get_actor(killed, namespace="serve"), no_restart=True)
        response, attempts = _request(url, files)
        assert response.status_code == 200, response.text
        results.append(response.content)
        retried += attempts
    print(f"killed {killed}; {retried} retried request(s)")
    assert len(set(results)) == 1   # every answer the same result
    deadline = time.time() + 90
    while time.time() < deadline:   # Serve replaces the dead replica
        status = serve.status().applications[serving.NAME].deployments[serving.NAME]
        if status.replica_states.get("RUNNING", 0) == 2 and killed not in serving.replica_actors():
            break
        time.sleep(1)
    assert status.replica_states.get("RUNNING", 0) == 2, status
    assert killed not in serving.replica_actors()


def test_cli_replicas_start_and_stop(exported, tmp_path):
    model = exported[1]["native"]
    port = _free_port()
    before = raylets()
    env = dict(os.environ, MADF_RAY_OBJECT_STORE_MB="128")
    proc = subprocess.Popen([sys.executable, "-m", "madf.cli.serve", "--model", str(model), "--replicas", "2",
                             "--cpus-per-replica", "0.5", "--port", str(port)], env=env, stdout=subprocess.PIPE,
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
        assert len(seen) == 2
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
