"""The engine cache on real TensorRT-RTX builds (no GPU needed): hit, a miss on each key field, concurrent
builders, a corrupt cached plan rebuilt, least-recently-used eviction, and madf-build --cache / --list."""
import multiprocessing
import os
import re
import time

import pytest
from click.testing import CliRunner

from madf.cli.build import main as build_main
from madf.engines.build import BuildOptions
from madf.engines.cache import EngineCache
from madf.engines.sidecar import read_sidecar, sha256

SMALL = dict(min_shape=(1, 16, 16), opt_shape=(1, 32, 32), max_shape=(1, 64, 64))


@pytest.fixture(scope="module")
def u8_onnx(exported, tmp_path_factory):
    from madf.export.uint8_io import convert_file
    _, files = exported
    path = tmp_path_factory.mktemp("u8c") / "u8.onnx"
    convert_file(files["native"], path)
    return path


def test_hit_after_miss(exported, rtx, tmp_path):
    _, files = exported
    cache = EngineCache(tmp_path / "cache")
    first = cache.get_or_build(files["native"], BuildOptions(**SMALL))
    second = cache.get_or_build(files["native"], BuildOptions(**SMALL))
    print(f"miss (build) {first.seconds:.2f} s, hit {second.seconds * 1e3:.1f} ms")
    assert not first.hit and second.hit and first.plan == second.plan
    sidecar = read_sidecar(second.plan)
    assert sidecar["cache"]["key"] == first.key and sidecar["engine"]["sha256"] == sha256(second.plan)
    assert sidecar["cache"]["onnx_sha256"] == sha256(files["native"])
    assert [e["key"] for e in cache.entries()] == [first.key]
    # the default profile resolves to the same key as the same shapes given explicitly
    assert cache.key(files["native"], BuildOptions())[0] == cache.key(
        files["native"], BuildOptions(min_shape=(1, 16, 16), opt_shape=(1, 512, 512), max_shape=(4, 1024, 1024)))[0]


def test_a_miss_on_each_key_field(exported, rtx, tmp_path, monkeypatch):
    _, files = exported
    cache = EngineCache(tmp_path / "cache")
    base_key, base = cache.key(files["native"], BuildOptions(**SMALL))
    lib = tmp_path / "libfake_plugins.so"
    lib.write_bytes(b"\x7fELF not really")
    import onnx
    other = onnx.load(str(files["native"]))   # the same model, one more metadata property: another file
    other.metadata_props.add(key="note", value="re-saved")
    onnx.save(other, str(tmp_path / "other.onnx"))
    changed = {
        "onnx_sha256": cache.key(tmp_path / "other.onnx", BuildOptions(**SMALL)),
        "compute_capability": cache.key(files["native"], BuildOptions(**SMALL, compute_capability="8.6")),
        "profile": cache.key(files["native"], BuildOptions(**{**SMALL, "max_shape": (2, 64, 64)})),
        "precision": cache.key(files["native"], BuildOptions(**SMALL, fp16=True)),
        "plugins": cache.key(files["native"], BuildOptions(**SMALL, plugin_libs=(lib,))),
        "version_compatible": cache.key(files["native"], BuildOptions(**SMALL, version_compatible=True)),
        "workspace_mb": cache.key(files["native"], BuildOptions(**SMALL, workspace_mb=64)),
    }
    monkeypatch.setattr(rtx, "__version__", rtx.__version__ + ".post1")   # another TensorRT release
    changed["tensorrt"] = cache.key(files["native"], BuildOptions(**SMALL))
    monkeypatch.undo()
    for field, (key, fields) in changed.items():
        assert key != base_key, field
        assert fields[field] != base[field], field
        assert {k: v for k, v in fields.items() if k != field} == {k: v for k, v in base.items() if k != field}, field
    # a real build for another target is a miss, and both entries stay
    a = cache.get_or_build(files["native"], BuildOptions(**SMALL))
    b = cache.get_or_build(files["native"], BuildOptions(**SMALL, compute_capability="8.6"))
    assert not a.hit and not b.hit and a.plan != b.plan
    assert read_sidecar(b.plan)["target"]["compute_capability"] == "8.6"
    assert len(cache.entries()) == 2


def _build_in_process(args):
    onnx, folder, barrier = args
    barrier.wait()   # every process asks at the same moment
    result = EngineCache(folder).get_or_build(onnx, BuildOptions(**SMALL, progress=False))
    return result.hit, str(result.plan), sha256(result.plan)


def test_concurrent_builders_build_once(exported, rtx, tmp_path):
    _, files = exported
    folder = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(3)
        with context.Pool(3) as pool:
            results = pool.map(_build_in_process, [(files["native"], folder, barrier)] * 3)
    hits = sorted(hit for hit, _, _ in results)
    print("concurrent builders:", results)
    assert hits == [False, True, True]               # one build, two readers of the finished plan
    assert len({plan for _, plan, _ in results}) == 1 and len({d for _, _, d in results}) == 1
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and p.is_dir()]   # no staging left


def test_a_corrupt_cached_plan_is_rebuilt(exported, rtx, tmp_path):
    _, files = exported
    cache = EngineCache(tmp_path / "cache")
    first = cache.get_or_build(files["native"], BuildOptions(**SMALL))
    good = sha256(first.plan)
    data = bytearray(first.plan.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.plan.write_bytes(bytes(data))
    again = cache.get_or_build(files["native"], BuildOptions(**SMALL))
    assert not again.hit and sha256(again.plan) == read_sidecar(again.plan)["engine"]["sha256"]
    assert again.plan.read_bytes() != bytes(data)   # the damaged bytes are gone
    print(f"rebuilt plan identical to the first build: {sha256(again.plan) == good}")
    third = cache.get_or_build(files["native"], BuildOptions(**SMALL))
    assert third.hit
    # a missing sidecar is a miss too
    os.unlink(str(third.plan) + ".json")
    assert not cache.get_or_build(files["native"], BuildOptions(**SMALL)).hit


def test_least_recently_used_is_evicted(exported, u8_onnx, rtx, tmp_path):
    _, files = exported
    folder = tmp_path / "cache"
    a = EngineCache(folder).get_or_build(files["native"], BuildOptions(**SMALL))
    size = sum(f.stat().st_size for f in a.plan.parent.iterdir())
    cache = EngineCache(folder, max_bytes=int(size * 2.5))   # room for two
    b = cache.get_or_build(files["native"], BuildOptions(**SMALL, compute_capability="8.6"))
    time.sleep(0.05)
    assert cache.get_or_build(files["native"], BuildOptions(**SMALL)).hit   # a is now the most recent
    c = cache.get_or_build(u8_onnx, BuildOptions(**SMALL))
    keys = {e["key"] for e in cache.entries()}
    assert keys == {a.key, c.key}, "b, the least recently used, goes"
    assert not b.plan.parent.exists()


def test_uint8_engine_profile_and_triton(u8_onnx, rtx, tmp_path):
    """A uint8 file builds (NHWC uint8 tensors, any size in the profile) and its Triton model declares uint8."""
    tritonclient = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    from madf.engines.triton import write_triton_repo
    result = EngineCache(tmp_path / "cache").get_or_build(
        u8_onnx, BuildOptions(min_shape=(1, 1, 1), opt_shape=(1, 37, 53), max_shape=(2, 100, 100)))
    sidecar = read_sidecar(result.plan)
    assert sidecar["io"] == "uint8" and sidecar["mask"] == "hole"
    assert sidecar["profile"]["image"] == {"min": [1, 1, 1, 3], "opt": [1, 37, 53, 3], "max": [2, 100, 100, 3]}
    assert [(t["name"], t["dtype"]) for t in sidecar["contract"]["inputs"]] == [("image", "uint8"), ("mask", "uint8")]
    folder = write_triton_repo(tmp_path / "repo", result.plan)
    config = text_format.Parse((folder / "config.pbtxt").read_text(), tritonclient.ModelConfig())
    types = {t.name: (t.data_type, list(t.dims)) for t in list(config.input) + list(config.output)}
    assert types == {"image": (tritonclient.TYPE_UINT8, [-1, -1, 3]), "mask": (tritonclient.TYPE_UINT8, [-1, -1, 1]),
                     "inpainted": (tritonclient.TYPE_UINT8, [-1, -1, 3])}
    assert config.max_batch_size == 2
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert "InferInput('image', image.shape, 'UINT8')" in readme and "pad on the client" not in readme


def test_madf_build_cache_cli(exported, rtx, tmp_path):
    _, files = exported
    folder = tmp_path / "cache"
    args = ["--onnx", str(files["native"]), "--cache", str(folder), "--min", "1x16x16", "--opt", "1x32x32",
            "--max", "1x64x64"]
    first = CliRunner().invoke(build_main, args)
    second = CliRunner().invoke(build_main, args + ["--output", str(tmp_path / "copy.plan")])
    print(first.output, second.output)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert re.search(r"engine cache miss: built .* in [0-9.]+ s", first.output)
    assert re.search(r"engine cache hit: found .*copy.plan in [0-9.]+ s", second.output)
    assert sha256(tmp_path / "copy.plan") == read_sidecar(tmp_path / "copy.plan")["engine"]["sha256"]
    listed = CliRunner().invoke(build_main, ["--cache", str(folder), "--list"])
    assert listed.exit_code == 0 and "1 engines" in listed.output and files["native"].name in listed.output
    missing = CliRunner().invoke(build_main, ["--cache", str(tmp_path / "nowhere"), "--list"])
    assert missing.exit_code != 0 and "no engine cache there" in missing.output
    assert CliRunner().invoke(build_main, ["--list"]).exit_code == 2
    (tmp_path / "afile").write_text("x")
    bad = CliRunner().invoke(build_main, ["--onnx", str(files["native"]), "--cache", str(tmp_path / "afile")])
    assert bad.exit_code != 0 and "is a file" in bad.output


def test_backend_given_an_onnx_file_without_a_cache(exported):
    from madf.common.errors import ModelError
    from madf.runtime.tensorrt import TensorRTBackend
    _, files = exported
    with pytest.raises(ModelError, match="is an ONNX file, not a TensorRT engine"):
        TensorRTBackend(files["native"])   # without a cache: the file-kind message, as for --engine x.onnx


def test_timing_cache_is_kept_in_the_folder_for_tensorrt(tmp_path):
    cache = EngineCache(tmp_path)
    fields = {"tensorrt": {"backend": "tensorrt", "version": "10.9"}, "compute_capability": "9.0"}
    assert cache._timing_cache(fields) == tmp_path / "timing-tensorrt-10.9-sm9.0.cache"
    assert cache._timing_cache({**fields, "tensorrt": {"backend": "tensorrt-rtx", "version": "1.7"}}) is None


def _one_entry(files, folder, **options):
    cache = EngineCache(folder)
    return cache, cache.get_or_build(files["native"], BuildOptions(**{**SMALL, **options}))


def test_eviction_never_touches_what_the_cache_did_not_make(exported, rtx, tmp_path):
    """A user's folder holding a model.plan and its sidecar (notes beside them), or a Triton model's version
    folder, inside a cache folder, is never taken for an entry (was: evicted with everything in it)."""
    _, files = exported
    folder = tmp_path / "cache"
    cache, a = _one_entry(files, folder)
    mine = folder / "my-engine"
    mine.mkdir()
    for name in ("model.plan", "model.plan.json", "notes.txt"):
        (mine / name).write_bytes((a.plan.parent / name).read_bytes() if name != "notes.txt" else b"keep me")
    lookalike = folder / ("0" * 32)   # key-named, but its sidecar records another key and it holds notes
    lookalike.mkdir()
    (lookalike / "model.plan").write_bytes(a.plan.read_bytes())
    (lookalike / "model.plan.json").write_bytes((a.plan.parent / "model.plan.json").read_bytes())
    (lookalike / "notes.txt").write_text("mine")
    tiny = EngineCache(folder, max_bytes=1)
    b = tiny.get_or_build(files["native"], BuildOptions(**SMALL, compute_capability="8.6"))
    assert [e["key"] for e in tiny.entries()] == [b.key]      # a evicted: the cache's own
    assert (mine / "notes.txt").read_bytes() == b"keep me" and (mine / "model.plan").exists()
    assert (lookalike / "notes.txt").exists()


def test_a_folder_of_foreign_files_is_refused_as_a_cache(exported, tmp_path):
    from madf.common.errors import InputError
    repo = tmp_path / "triton-repo"
    (repo / "madf" / "1").mkdir(parents=True)
    (repo / "madf" / "config.pbtxt").write_text("name: 'madf'")
    with pytest.raises(InputError, match=r"holds files madf-engine-cache did not write \(madf\)"):
        EngineCache(repo)
    assert not (repo / ".madf-engine-cache").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    EngineCache(empty)
    assert (empty / ".madf-engine-cache").is_file()
    (empty / "mine.txt").write_text("x")   # a marked cache keeps a user's stray file, untouched
    EngineCache(empty, max_bytes=1).evict()
    assert (empty / "mine.txt").exists()


def test_a_swapped_entry_is_not_served_for_another_key(exported, rtx, tmp_path):
    _, files = exported
    folder = tmp_path / "cache"
    cache, a = _one_entry(files, folder)
    b = cache.get_or_build(files["native"], BuildOptions(**SMALL, compute_capability="8.6"))
    for name in ("model.plan", "model.plan.json"):   # entry a now holds b's plan and (consistent) sidecar
        (a.plan.parent / name).write_bytes((b.plan.parent / name).read_bytes())
    again = cache.get_or_build(files["native"], BuildOptions(**SMALL))
    assert not again.hit and read_sidecar(again.plan)["cache"]["key"] == a.key
    assert read_sidecar(again.plan)["cache"]["compute_capability"] == a.fields["compute_capability"]


def test_a_killed_builders_staging_folder_is_swept(exported, rtx, tmp_path):
    _, files = exported
    folder = tmp_path / "cache"
    cache, a = _one_entry(files, folder)
    key_b, _ = cache.key(files["native"], BuildOptions(**SMALL, compute_capability="8.6"))
    stale_a, stale_b = folder / f".{a.key}.k1ll3d", folder / f".{key_b}.dead"
    for stale in (stale_a, stale_b):
        stale.mkdir()
        (stale / "model.plan").write_bytes(b"\0" * 4096)
    assert cache.get_or_build(files["native"], BuildOptions(**SMALL)).hit
    assert not stale_a.exists(), "the key's own lock holder sweeps it"
    cache.evict()
    assert not stale_b.exists(), "eviction sweeps staging of keys nobody builds"


def test_a_read_only_cache_serves_hits_and_lists(exported, rtx, tmp_path, monkeypatch):
    """A cache baked into a container image: hits and --list work, a miss says the cache is read-only, and nothing
    is written (root writes through permissions, so the folder's listing and times are compared too)."""
    from madf.common.errors import OutputError
    _, files = exported
    folder = tmp_path / "cache"
    _, a = _one_entry(files, folder)
    for path in (a.plan.parent, folder):
        os.chmod(path, 0o555)
    if os.geteuid() == 0:   # root passes os.access; the cache must still take the folder as read-only
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK and
                            str(p).startswith(str(folder)) else real(p, mode, **kw))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*"))
    try:
        cache = EngineCache(folder)
        assert not cache.writable
        assert cache.get_or_build(files["native"], BuildOptions(**SMALL)).hit
        assert [e["key"] for e in cache.entries()] == [a.key]
        listed = CliRunner().invoke(build_main, ["--cache", str(folder), "--list"])
        assert listed.exit_code == 0 and "1 engines" in listed.output, listed.output
        with pytest.raises(OutputError, match="read-only and holds no valid engine"):
            cache.get_or_build(files["native"], BuildOptions(**SMALL, compute_capability="8.6"))
        assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.rglob("*")) == before
    finally:
        for path in (folder, a.plan.parent):
            os.chmod(path, 0o755)


def test_a_sidecar_without_a_field_is_refused_by_name(exported, rtx, tmp_path):
    import json

    from madf.common.errors import ModelError
    _, files = exported
    cache, a = _one_entry(files, tmp_path / "cache")
    sidecar = json.loads((a.plan.parent / "model.plan.json").read_text())
    del sidecar["engine"]["sha256"]
    (a.plan.parent / "model.plan.json").write_text(json.dumps(sidecar))
    with pytest.raises(ModelError, match="lacks the field 'engine.sha256'"):
        read_sidecar(a.plan)
    assert not cache.get_or_build(files["native"], BuildOptions(**SMALL)).hit   # was: unexpected KeyError


def test_every_build_option_is_keyed_or_named_as_not_changing_the_plan(exported, rtx, tmp_path):
    """A new BuildOptions field must be keyed or excluded by name: a field that changes the plan and is not in the
    key would serve one build's plan for another's options."""
    import dataclasses

    from madf.engines.cache import KEYED_BY, NOT_KEYED
    names = {f.name for f in dataclasses.fields(BuildOptions)}
    assert names == set(KEYED_BY) | set(NOT_KEYED), names ^ (set(KEYED_BY) | set(NOT_KEYED))
    assert not set(KEYED_BY) & set(NOT_KEYED)
    _, files = exported
    _, fields = EngineCache(tmp_path / "cache").key(files["native"], BuildOptions(**SMALL))
    assert set(KEYED_BY.values()) <= set(fields)
    assert "gpu" in fields    # the GPU a full TensorRT build tuned for (None for TensorRT-RTX's targets)
