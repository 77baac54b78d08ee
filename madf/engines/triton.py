"""A Triton Inference Server model repository for an engine built by madf-build:

    REPO/
      README.md                      how to start tritonserver on it (plugin and version-compatibility flags)
      NAME/config.pbtxt              platform tensorrt_plan, the input contract, dynamic batching, instance groups
      NAME/1/model.plan              the engine (and its sidecar model.plan.json beside it)
      NAME/1/libmadf_plugins.so      only for plugin-lowered engines (inside the model: Triton takes every
                                     top-level folder of a repository for a model)

The batch dimension is Triton's (max_batch_size = the profile's max N) when the profile starts at N = 1; an engine
of one fixed N keeps it in its dims and Triton does not batch; a profile from N > 1 to a larger N cannot be served
(Triton sends any batch from 1 up) and is refused. H and W stay dynamic (-1): Triton batches requests of one size.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Sequence

from madf.common.atomic import atomic_path, umask
from madf.common.errors import ModelError
from madf.engines.sidecar import read_sidecar, sidecar_path
from madf.export.onnx_file import uses_plugin

log = logging.getLogger("madf")
TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "uint8": "TYPE_UINT8"}


def _dims(shape, batched: bool) -> str:
    dims = list(shape[1:]) if batched else list(shape)
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def _text(value) -> str:
    """A protobuf text-format string literal."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# A repository's top-level folders are models; "plugins" is refused too, as earlier madf repositories kept the
# plugin library in a folder of that name.
RESERVED_NAMES = {"plugins"}


def check_model_name(name: str) -> None:
    """A model name Triton and config.pbtxt take: one folder name, not hidden, not reserved."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or "") or name in RESERVED_NAMES:
        raise ModelError(f"--triton-name {name!r} must be a plain folder name: letters, digits, '_', '-' and '.', "
                         f"not starting with '.' and not {' or '.join(sorted(RESERVED_NAMES))}")


def check_batch_profile(min_n: int, max_n: int) -> None:
    if 1 < min_n < max_n:
        raise ModelError(f"the engine's profile starts at N = {min_n}, but Triton sends any batch from 1 to "
                         f"max_batch_size: build it with --min 1xHxW (or one fixed N) for a Triton repository")


def triton_config(sidecar: Dict, name: str, instances: int = 1, max_queue_delay_us: int = 100) -> str:
    """config.pbtxt text for an engine with this sidecar."""
    profile = sidecar["profile"]["image"]
    check_batch_profile(profile["min"][0], profile["max"][0])
    batched = profile["min"][0] == 1
    max_batch = profile["max"][0] if batched else 0

    def tensors(items):
        return ",\n".join(f'  {{\n    name: {_text(t["name"])}\n    data_type: {TYPES[t["dtype"]]}\n'
                          f'    dims: {_dims(t["shape"], batched)}\n  }}' for t in items)

    contract = sidecar["contract"]
    lines = [f"name: {_text(name)}", 'platform: "tensorrt_plan"', f"max_batch_size: {max_batch}",
             f"input [\n{tensors(contract['inputs'])}\n]", f"output [\n{tensors(contract['outputs'])}\n]"]
    if batched:
        lines.append(f"dynamic_batching {{\n  preferred_batch_size: [ {max_batch} ]\n"
                     f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU\n  }}\n]")
    params = {"madf.multiple": sidecar["multiple"], "madf.precision": sidecar["precision"],
              "madf.lowering": sidecar["lowering"], "madf.io": sidecar.get("io", "float"),
              "madf.mask": sidecar.get("mask", "hole"), "madf.contract": contract.get("text") or ""}
    lines += [f"parameters {{\n  key: {_text(k)}\n  value: {{ string_value: {_text(v)} }}\n}}"
              for k, v in params.items()]
    return "\n".join(lines) + "\n"


def _readme(repo: Path, name: str, sidecar: Dict, plugin_files: Sequence[str]) -> str:
    backend_config = []
    if plugin_files:
        backend_config.append("--backend-config=tensorrt,plugins=" + ";".join(
            f"/models/{name}/1/{f}" for f in plugin_files))
    if sidecar.get("version_compatible"):
        backend_config.append("--backend-config=tensorrt,version-compatible=true")
    command = " ".join(["tritonserver --model-repository=/models"] + backend_config)
    rtx_note = ("\n**This plan was built with TensorRT-RTX, which Triton's TensorRT backend does not load: rebuild it "
                "with TensorRT (madf-build --backend tensorrt) on the serving GPU before deploying.**\n"
                if sidecar["tensorrt"]["backend"] == "tensorrt-rtx" else "")
    return (f"# Triton model repository for `{name}` (written by madf-trt)\n\n"
            f"Engine: {sidecar['tensorrt']['backend']} {sidecar['tensorrt']['version']}, "
            f"{sidecar['precision']}, {sidecar['lowering']} lowering, built for SM "
            f"{sidecar['target'].get('compute_capability') or '?'}. Triton's TensorRT backend must be the same "
            f"TensorRT version" + (" line (the plan is version-compatible)" if sidecar.get("version_compatible")
                                   else "") + ".\n\n"
            f"```bash\ndocker run --gpus all --rm -p 8000:8000 -p 8001:8001 -v {repo.resolve()}:/models "
            f"nvcr.io/nvidia/tritonserver:<release>-py3 \\\n    {command}\n```\n\n"
            + _io_text(name, sidecar) + rtx_note)


def _io_text(name: str, sidecar: Dict) -> str:
    lo, hi = sidecar["profile"]["image"]["min"], sidecar["profile"]["image"]["max"]
    # the output names config.pbtxt has (one composite, or the raw outputs of madf-export --raw-outputs)
    outputs = [t["name"] for t in sidecar["contract"]["outputs"]] or ["inpainted"]
    named = ", ".join(f"`{o}`" for o in outputs)
    if sidecar.get("io") == "uint8":
        hole = "black (< 128)" if sidecar.get("mask") == "inverted" else "white (>= 128)"
        return (f"Inputs: `image` (N, H, W, 3) uint8 RGB and `mask` (N, H, W, 1) uint8, {hole} = hole; output "
                f"{named} (N, H, W, 3) uint8, the finished photo (known pixels are the input's bytes). Any H x W "
                f"from {lo[1]}x{lo[2]} to {hi[1]}x{hi[2]}: the engine pads, crops and composites itself, so a client "
                f"sends the photo's bytes and nothing else.\n\n"
                f"```python\nimport numpy as np, tritonclient.http as http\nfrom PIL import Image\n"
                f"image = np.asarray(Image.open('photo.png').convert('RGB'))[None]\n"
                f"mask = np.asarray(Image.open('hole.png').convert('L'))[None, ..., None]\n"
                f"client = http.InferenceServerClient('localhost:8000')\n"
                f"inputs = [http.InferInput('image', image.shape, 'UINT8'), http.InferInput('mask', mask.shape, "
                f"'UINT8')]\n"
                f"inputs[0].set_data_from_numpy(image); inputs[1].set_data_from_numpy(mask)\n"
                f"result = client.infer('{name}', inputs).as_numpy('{outputs[0]}')[0]\n"
                f"Image.fromarray(result).save('result.png')\n```\n")
    what = (f"outputs {named}, the network's raw outputs (N, 3, H, W) float32 (madf-export --raw-outputs: composite "
            f"them with the photo on the client)" if len(outputs) > 1 else f"output {named} (N, 3, H, W) float32")
    return (f"Inputs: `image` (N, 3, H, W) float32 RGB in [0, 1] and `mask` (N, 1, H, W) float32, 1 = hole; "
            f"{what}. H and W must be multiples of {sidecar['multiple']} within the engine's profile "
            f"({'x'.join(map(str, lo[2:]))} to {'x'.join(map(str, hi[2:]))}); pad on the client (or export with "
            f"madf-export --io uint8, which needs none of this).\n")


def write_triton_repo(repo, engine, name: str = "madf", instances: int = 1, max_queue_delay_us: int = 100,
                      plugin_libs: Sequence = ()) -> Path:
    """Write (or replace) REPO/NAME with the engine and its config; returns the model folder."""
    repo, engine = Path(repo), Path(engine)
    sidecar = read_sidecar(engine)
    check_model_name(name)
    if uses_plugin(sidecar["lowering"]) and not plugin_libs:
        raise ModelError(f"{engine} uses the MADFDynamicFilter plugin: pass --plugin-lib so the repository carries "
                         f"the library Triton must load")
    if sidecar["tensorrt"]["backend"] == "tensorrt-rtx":
        log.warning("%s was built with TensorRT-RTX; Triton's TensorRT backend needs a TensorRT plan (see %s)",
                    engine, repo / "README.md")
    repo.mkdir(parents=True, exist_ok=True)
    config = triton_config(sidecar, name, instances, max_queue_delay_us)   # refuses what Triton cannot serve
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    plugin_files = []
    try:
        os.chmod(staging, 0o777 & ~umask())   # mkdtemp makes 0700: the server often runs as another user
        (staging / "1").mkdir()
        shutil.copyfile(engine, staging / "1" / "model.plan")
        shutil.copyfile(sidecar_path(engine), staging / "1" / "model.plan.json")
        for lib in map(Path, plugin_libs):
            shutil.copyfile(lib, staging / "1" / lib.name)
            plugin_files.append(lib.name)
        (staging / "config.pbtxt").write_text(config)
        target = repo / name
        if target.exists():   # swap in whole: a half-written model folder is never visible
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=repo))
            os.replace(target, old / name)
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    with atomic_path(repo / "README.md") as tmp:
        tmp.write_text(_readme(repo, name, sidecar, plugin_files))
    return repo / name
