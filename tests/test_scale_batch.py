"""Batch inpainting on Ray Data, on a real local cluster (2 CPUs, a 128 MB object store): byte-identical to the
plain folder run, per-image failures reported, --resume, s3:// against a local S3 server (moto), an actor killed
mid-run, and a run interrupted with SIGINT then resumed. The cluster is shut down after the module and no Ray
process is left."""
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import random_pair, raylets

ray = pytest.importorskip("ray")
pytest.importorskip("onnxruntime")

from madf.backends.spec import BackendSpec, open_inpainter  # noqa: E402
from madf.cli.inpaint import plan_jobs, run_jobs  # noqa: E402
from madf.inpaint.inpainter import Inpainter  # noqa: E402
from madf.runtime.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from madf.scale.batch import TEMP_GLOB, inpaint_collection, plan_collection  # noqa: E402

S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def cluster():
    before = raylets()
    # the local S3 server's credentials, as every worker would find them on a real cluster (the environment)
    ray.init(num_cpus=2, object_store_memory=128 << 20, include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": S3_ENV})
    yield ray
    ray.shutdown()
    for _ in range(50):   # the raylet exits within a moment of shutdown
        if raylets() <= before:
            break
        time.sleep(0.2)
    assert raylets() <= before, "a Ray process outlived the test cluster"


def _collection(folder: Path, count: int, seed: int = 0):
    (folder / "photos").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(count):
        image, hole = random_pair(30 + i % 3, 41, seed=seed + i)
        Image.fromarray(image).save(folder / "photos" / f"p{i:02d}.png")
        Image.fromarray((hole * 255).astype(np.uint8)).save(folder / "masks" / f"p{i:02d}.png")
    return folder / "photos", folder / "masks"


@pytest.fixture(scope="module")
def model(exported):
    return exported[1]["native"]


def _factory(model):
    return functools.partial(open_inpainter, BackendSpec(model))


def _plain(model, photos, masks, out):
    jobs = plan_jobs(photos, masks, out)
    assert run_jobs(Inpainter(OnnxRuntimeBackend(model)), jobs, show_progress=False) == []
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_byte_identical_to_the_plain_run_and_failures_reported(cluster, model, tmp_path):
    photos, masks = _collection(tmp_path, 6)
    expected = _plain(model, photos, masks, tmp_path / "plain")
    (photos / "broken.png").write_bytes(b"not a png")          # unreadable
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(photos / "small.png")
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(masks / "small.png")   # the wrong size
    (masks / "broken.png").write_bytes((masks / "p00.png").read_bytes())
    jobs = plan_collection(photos, masks, tmp_path / "ray")
    seen = []
    report = inpaint_collection(_factory(model), jobs, actors=2, rows_per_task=2, on_row=seen.append,
                                report_path=tmp_path / "report.json")
    print(report.summary)
    assert report.summary["written"] == 6 and report.summary["failed"] == 2 and len(seen) == 8
    got = {p.name: p.read_bytes() for p in sorted((tmp_path / "ray").iterdir())}
    assert got == expected                                       # byte for byte
    failed = {Path(r["image"]).name: r["error"] for r in report.rows if r["status"] == "failed"}
    assert set(failed) == {"broken.png", "small.png"}
    assert "mask" in failed["small.png"] and "10x10" in failed["small.png"]
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["summary"]["failed"] == 2 and len(data["rows"]) == 8
    assert len({r["worker"] for r in report.rows if r["status"] == "written"}) >= 1


def test_resume_skips_what_is_there_and_redoes_nothing_else(cluster, model, tmp_path):
    photos, masks = _collection(tmp_path, 6, seed=10)
    expected = _plain(model, photos, masks, tmp_path / "plain")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("p00.png", "p03.png"):   # an earlier, interrupted run wrote these
        (out / name).write_bytes(expected[name])
    before = {n: (out / n).stat().st_ino for n in ("p00.png", "p03.png")}
    jobs = plan_jobs(photos, masks, out, overwrite=True)
    report = inpaint_collection(_factory(model), jobs, actors=1, resume=True)
    assert report.summary["skipped"] == 2 and report.summary["written"] == 4
    assert {n: (out / n).stat().st_ino for n in before} == before   # not rewritten
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == expected


def test_s3_through_a_local_s3_server(cluster, model, tmp_path):
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                              region_name="us-east-1")
        client.create_bucket(Bucket="photos")
        photos, masks = _collection(tmp_path, 4, seed=20)
        for folder in (photos, masks):
            for path in folder.iterdir():
                client.upload_file(str(path), "photos", f"in/{folder.name}/{path.name}")
        query = f"?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        os.environ.update(S3_ENV)   # the driver lists and writes the report too
        uri = lambda key: f"s3://photos/{key}{query}"   # noqa: E731
        jobs = plan_collection(uri("in/photos"), uri("in/masks"), uri("out"))
        assert len(jobs) == 4 and all(j.output.startswith("s3://photos/out/p0") for j in jobs)
        report = inpaint_collection(_factory(model), jobs, actors=2, report_path=uri("out/madf-report.json"))
        assert report.summary["written"] == 4, report.rows
        expected = _plain(model, photos, masks, tmp_path / "plain")
        for name, data in expected.items():
            assert client.get_object(Bucket="photos", Key=f"out/{name}")["Body"].read() == data
        report_json = json.loads(client.get_object(Bucket="photos", Key="out/madf-report.json")["Body"].read())
        assert report_json["summary"]["written"] == 4
        again = inpaint_collection(_factory(model), plan_collection(uri("in/photos"), uri("in/masks"), uri("out")),
                                   resume=True)
        assert again.summary["skipped"] == 4 and again.summary["written"] == 0
    finally:
        server.stop()


def test_an_actor_killed_mid_run(cluster, model, tmp_path):
    """An actor SIGKILLed in the middle of a batch (its second, so results were being written): Ray restarts it
    and retries its task; every result is there once, none half-written, and what was written before the kill is
    not written again. (The actor kills itself: the driver sees a row only after its writing task, when on 12
    small images the actors may be done.)"""
    photos, masks = _collection(tmp_path, 12, seed=30)
    out, marker = tmp_path / "out", tmp_path / "killed.json"
    spec = BackendSpec(model)

    def dies_once():
        """The Inpainter of an actor that, the first time any actor starts its second batch, waits a moment for a
        first result to be written (it may be in this actor's own task, so not forever), records the results
        written so far and SIGKILLs itself (pickled by value)."""
        import json
        import os
        import signal
        import time

        from madf.backends.spec import open_inpainter
        inpainter, calls = open_inpainter(spec), []
        run = inpainter.inpaint_many

        def inpaint_many(pairs, names=None):
            calls.append(1)
            if len(calls) == 2:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)   # one actor, once
                except FileExistsError:
                    return run(pairs, names=names)
                for _ in range(100):   # the writing tasks run beside the actors
                    if list(out.glob("*.png")):
                        break
                    time.sleep(0.05)
                os.write(fd, json.dumps({"pid": os.getpid(),
                                         "written": {p.name: p.stat().st_ino for p in out.glob("*.png")}}).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
            return run(pairs, names=names)
        inpainter.inpaint_many = inpaint_many
        return inpainter

    report = inpaint_collection(dies_once, plan_collection(photos, masks, out), actors=2, rows_per_task=1)
    killed = json.loads(marker.read_text())
    written_at_kill = killed["written"]
    print(report.summary, "written before the kill:", len(written_at_kill),
          "workers:", sorted({r["worker"] for r in report.rows}), "killed:", killed["pid"])
    with pytest.raises(ProcessLookupError):   # it did die, mid-task: its rows were redone by the restarted actor
        os.kill(killed["pid"], 0)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"p{i:02d}.png" for i in range(12))
    assert not list(out.glob(TEMP_GLOB))
    assert report.summary["failed"] == 0 and report.summary["written"] == 12
    for name, inode in written_at_kill.items():
        assert (out / name).stat().st_ino == inode, f"{name} was written again"
    expected = _plain(model, photos, masks, tmp_path / "plain")
    assert {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))} == expected


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_no_temp_files_and_resumes(model, tmp_path, signum):
    """The CLI on its own local cluster: interrupted, then --resume finishes without redoing what was written."""
    photos, masks = _collection(tmp_path, 40, seed=40)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "madf.cli.inpaint", "--model", str(model), "--image", str(photos), "--mask",
               str(masks), "--output", str(out), "--ray", "local", "--actors", "1", "--quiet"]
    # RAY_ADDRESS names no cluster: --ray local must start its own all the same (it failed, not naming it)
    env = dict(os.environ, MADF_RAY_OBJECT_STORE_MB="128", RAY_ADDRESS="127.0.0.1:9")
    before = raylets()
    # Ctrl-C's default action for the child, whatever this test runner inherited: a shell's background job starts
    # with SIGINT ignored, and Python then keeps ignoring it (the run would finish instead of stopping)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("p*.png"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signum)
    output = proc.communicate(timeout=120)[0]
    print(output[-2000:])
    done = {p.name: p.stat().st_ino for p in out.glob("p*.png")}
    assert proc.returncode != 0 and 3 <= len(done) < 40, (proc.returncode, len(done))
    assert not list(out.glob(TEMP_GLOB))
    assert raylets() <= before, "the interrupted run left its Ray cluster running"
    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(list(out.glob("p*.png"))) == 40
    assert {n: (out / n).stat().st_ino for n in done} == done   # nothing written before was redone
    report = json.loads((out / "madf-report.json").read_text())
    assert report["summary"]["skipped"] == len(done) and report["summary"]["written"] == 40 - len(done)


def test_a_ray_dataset_of_rows(cluster, model, tmp_path):
    """The Python API over a Ray Dataset (columns image, mask, output), with resume left to the actors."""
    photos, masks = _collection(tmp_path, 4, seed=50)
    expected = _plain(model, photos, masks, tmp_path / "plain")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p01.png").write_bytes(expected["p01.png"])   # there already
    inode = (out / "p01.png").stat().st_ino
    rows = [{"image": str(p), "mask": str(masks / p.name), "output": str(out / p.name)}
            for p in sorted(photos.iterdir())]
    report = inpaint_collection(_factory(model), ray.data.from_items(rows), actors=1, resume=True)
    assert report.summary["written"] == 3 and report.summary["skipped"] == 1
    assert (out / "p01.png").stat().st_ino == inode
    assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == expected


def test_an_int8_file_on_the_actors(cluster, exported, tmp_path):
    """madf-export --int8's file runs on the Ray actors as in one process: the same bytes."""
    from madf.quantize.int8 import QuantOptions, quantize_file
    int8 = tmp_path / "int8.onnx"
    quantize_file(exported[1]["native"], int8, QuantOptions(count=2, held_out=1, size=64))
    photos, masks = _collection(tmp_path, 4, seed=60)
    expected = _plain(int8, photos, masks, tmp_path / "plain")
    report = inpaint_collection(_factory(int8), plan_collection(photos, masks, tmp_path / "ray"), actors=1)
    assert report.summary["written"] == 4
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "ray").iterdir())} == expected
    assert expected != _plain(exported[1]["native"], photos, masks, tmp_path / "fp32")   # INT8 did run


def test_the_model_actor_only_inpaints_and_warnings_reach_the_report(cluster, model, tmp_path):
    """Reading, decoding, encoding and writing run in CPU tasks around the actors: in the actor's process every
    file and codec call fails, and every image is still written, byte-identical. A warning logged in a stage (an
    empty mask in the actor, an alpha channel a JPEG drops in the writer) is in its row of the report."""
    photos, masks = _collection(tmp_path, 4, seed=110)
    expected = _plain(model, photos, masks, tmp_path / "plain")
    Image.fromarray(np.zeros((31, 41), np.uint8)).save(masks / "p01.png")                     # no hole
    Image.fromarray(np.zeros((32, 41, 4), np.uint8) + 200, "RGBA").save(photos / "p02.png")   # alpha
    spec = BackendSpec(model)

    def no_io_here():
        """The Inpainter, in a process where every read, decode, encode and write fails (pickled by value)."""
        from madf.backends.spec import open_inpainter
        from madf.inpaint import imaging
        from madf.scale import storage

        def refuse(*args, **kwargs):
            raise OSError("file or codec work in the model's actor")
        for owner, name in ((imaging, "decode_photo"), (imaging, "read_photo"), (imaging, "read_mask"),
                            (imaging, "encode_image"), (storage.Files, "read_bytes"), (storage.Files, "write"),
                            (storage.Files, "read_photo"), (storage.Files, "read_mask")):
            setattr(owner, name, refuse)
        return open_inpainter(spec)

    report = inpaint_collection(no_io_here, plan_collection(photos, masks, tmp_path / "out", fmt="jpg"), actors=2,
                                rows_per_task=2)
    rows = {Path(r["image"]).name: r for r in report.rows}
    print({name: (r["status"], r["error"], r["warning"]) for name, r in rows.items()})
    assert report.summary["written"] == 4, report.rows
    assert "the mask has no hole pixels" in rows["p01.png"]["warning"]
    assert "has no alpha channel; the transparency is dropped" in rows["p02.png"]["warning"]
    assert rows["p00.png"]["warning"] == "" and rows["p03.png"]["warning"] == ""
    assert all(r["worker"] for r in report.rows)   # each went through a model actor
    out = tmp_path / "png"
    again = inpaint_collection(no_io_here, plan_collection(photos, masks, out), actors=1)
    assert again.summary["written"] == 4
    assert (out / "p00.png").read_bytes() == expected["p00.png"]


def _cli(*args):
    from click.testing import CliRunner

    from madf.cli.inpaint import main
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line(result, match):
    errors = [line for line in result.output.splitlines() if "Error" in line]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(errors) == 1 and match in errors[0], result.output
    return errors[0]


def test_uri_outputs_keep_the_plain_runs_rules(model, tmp_path):
    """file:// (and any URI) outputs and --report go through the plain run's rules, before Ray starts: never an
    input, never an existing result without --overwrite (each case exited 0 and replaced the files)."""
    photos, masks = _collection(tmp_path, 2, seed=60)
    keep = {p: p.read_bytes() for p in [*photos.iterdir(), *masks.iterdir(), model]}
    uri = lambda path: f"file://{path}"   # noqa: E731
    base = ["--model", model, "--image", uri(photos), "--mask", uri(masks), "--ray", "local", "--quiet"]
    _one_line(_cli(*base, "--output", uri(photos)), "is the input folder")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p00.png").write_bytes(b"an earlier result")
    _one_line(_cli(*base, "--output", uri(out)), "1 result(s) exist already (p00.png); add --overwrite")
    (out / "p00.png").unlink()
    _one_line(_cli(*base, "--output", uri(out), "--report", uri(masks / "p00.png")), "--report")
    _one_line(_cli(*base, "--output", uri(out), "--report", model), "is one of the inputs")
    (out / "madf-report.json").write_text("{}")
    _one_line(_cli(*base, "--output", uri(out)), "--report")
    assert {p: p.read_bytes() for p in keep} == keep
    assert sorted(p.name for p in out.iterdir()) == ["madf-report.json"]


def test_a_damaged_model_is_one_line_before_ray_starts(model, tmp_path):
    photos, masks = _collection(tmp_path, 2, seed=70)
    damaged = tmp_path / "damaged.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    before = raylets()
    for given, match in ((tmp_path / "misspelt.onnx", "no such ONNX file"), (damaged, "")):
        result = _cli("--model", given, "--image", photos, "--mask", masks, "--output", tmp_path / "out",
                      "--ray", "local", "--quiet")
        print(_one_line(result, match))
    assert raylets() <= before and not (tmp_path / "out").exists()


def test_an_actor_that_cannot_open_its_model_ends_the_run_with_its_line(cluster, tmp_path):
    """A model that opens on the driver but not in the actors (another node's file): madf's own line, not Ray's
    210 lines ending in ActorDiedError."""
    from madf.common.errors import CheckpointError
    photos, masks = _collection(tmp_path, 2, seed=80)
    with pytest.raises(CheckpointError, match=r"^/nodes/b/places2.pth: no such checkpoint file$"):
        inpaint_collection(functools.partial(open_inpainter, BackendSpec("/nodes/b/places2.pth")),
                           plan_collection(photos, masks, tmp_path / "out"))
    assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


def test_resources_the_cluster_lacks_are_refused_not_waited_for(cluster, model, tmp_path):
    from madf.common.errors import DeviceError
    photos, masks = _collection(tmp_path, 2, seed=90)
    jobs = plan_collection(photos, masks, tmp_path / "out")
    with pytest.raises(DeviceError, match=r"1 actor x 1 GPU need 1; the Ray cluster has 0"):
        inpaint_collection(_factory(model), jobs, gpus_per_actor=1.0)
    with pytest.raises(DeviceError, match=r"3 actors x 1 CPU need 3; the Ray cluster has 2: use --actors 2"):
        inpaint_collection(_factory(model), jobs, actors=3)


def test_overwrite_rewrites_a_result_dated_in_the_future(cluster, model, tmp_path):
    """No output's date is compared with any clock, so a result whose date lies ahead (another machine's clock) is
    replaced with --overwrite (was: kept, 'skipped')."""
    photos, masks = _collection(tmp_path, 2, seed=100)
    expected = _plain(model, photos, masks, tmp_path / "plain")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p00.png").write_bytes(b"stale")
    future = time.time() + 3600
    os.utime(out / "p00.png", (future, future))
    jobs = plan_jobs(photos, masks, out, overwrite=True)
    report = inpaint_collection(_factory(model), jobs, overwrite=True)
    assert report.summary["written"] == 2 and report.summary["skipped"] == 0, report.rows
    assert (out / "p00.png").read_bytes() == expected["p00.png"]


def test_resource_messages_name_a_fix_the_backend_has():
    """A TensorRT engine runs on a GPU only: no '--gpus-per-actor 0' is offered for it; a joined cluster (which may
    autoscale) only warns."""
    from madf.common.errors import DeviceError
    from madf.scale.cluster import check_resources

    class Cluster:
        @staticmethod
        def cluster_resources():
            return {"CPU": 2.0}
    with pytest.raises(DeviceError) as engine:
        check_resources(Cluster, 1, 1.0, 1.0, "actor", "local", gpu_only=True)
    with pytest.raises(DeviceError) as torch_cuda:
        check_resources(Cluster, 1, 1.0, 1.0, "replica", "local")
    assert "--gpus-per-actor 0" not in str(engine.value) and "(--ray ADDRESS)" in str(engine.value)
    assert "--gpus-per-replica 0 for a CPU backend" in str(torch_cuda.value)
    check_resources(Cluster, 4, 1.0, 0.0, "actor", "auto")   # a warning, not an error
    check_resources(Cluster, 2, 1.0, 0.0, "actor", "local")  # fits


def test_local_paths_on_a_cluster_of_other_nodes_are_refused_unless_shared(exported, tmp_path):
    """--ray ADDRESS with local paths: each node would read and write its own disk; one line before any Ray
    connection, naming URIs and --shared-fs (--ray local stays free to use local paths)."""
    model = exported[1]["native"]
    photos, masks = _collection(tmp_path, 2, seed=90)
    before = raylets()
    result = _cli("--model", model, "--image", photos, "--mask", masks, "--output", tmp_path / "out",
                  "--ray", "10.0.0.1:6379", "--quiet")
    print(_one_line(result, "is a local path, but on the Ray cluster 10.0.0.1:6379 each node reads and writes its "
                            "own disk: give s3:// or gs:// URIs, add --shared-fs"))
    assert raylets() <= before and not (tmp_path / "out").exists()
    from madf.common.errors import InputError
    from madf.scale.batch import check_shared
    check_shared([], "s3://b/out", "s3://b/out/madf-report.json", "auto")   # URIs only: accepted
    with pytest.raises(InputError, match="file:///data/out is a local path"):
        check_shared([], "file:///data/out", None, "auto")
