"""madf-build: an ONNX file from madf-export to a TensorRT engine plus its sidecar JSON.

    madf-build --onnx places2-fp16.onnx --output places2-fp16.plan --fp16 --opt 1x512x512 --max 4x1024x1024
    madf-build --onnx places2-plugin.onnx --plugin-lib build/plugins/libmadf_plugins.so --version-compatible
    madf-build --onnx demo.onnx --backend tensorrt-rtx --compute-capability 8.9      # no GPU needed
    madf-build --onnx places2-fp16.onnx --fp16 --max 8x512x512 --triton-repo models/   # + a Triton repository
    madf-build --onnx places2.onnx --cache ~/.cache/madf/engines       # built once per GPU/TensorRT, then reused
    madf-build --cache ~/.cache/madf/engines --list
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import click

from madf.cli._common import OVERWRITE, PATH, cli_errors, format_table, setup_logging
from madf.common import paths
from madf.common.errors import InputError
from madf.export.onnx_file import QUANTIZED


def _shape(ctx, param, value):
    if value is None:
        return None
    from madf.engines.build import parse_shape
    try:
        return parse_shape(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def engine_options(command):
    """The build settings madf-build and madf-export --engine share."""
    options = [
        click.option("--min", "min_shape", callback=_shape, metavar="NxHxW",
                     help="Smallest batch/size of the profile (default 1 x 2^levels x 2^levels)."),
        click.option("--opt", "opt_shape", callback=_shape, metavar="NxHxW",
                     help="Shape TensorRT tunes for (default 1x512x512, clipped into min..max)."),
        click.option("--max", "max_shape", callback=_shape, metavar="NxHxW",
                     help="Largest batch/size of the profile (default 4x1024x1024)."),
        click.option("--plugin-lib", "plugin_libs", multiple=True, type=PATH,
                     help="Plugin library with the MADFDynamicFilter creator (libmadf_plugins.so); repeatable."),
        click.option("--version-compatible", is_flag=True,
                     help="Plan runs on later TensorRT versions' lean runtime; serializes --plugin-lib into it."),
        click.option("--exclude-lean-runtime", is_flag=True,
                     help="With --version-compatible: leave the lean runtime out of the plan (the app loads it)."),
        click.option("--timing-cache", type=PATH, default=None,
                     help="Timing cache file: read when present, written after the build (faster rebuilds)."),
        click.option("--workspace", "workspace_mb", type=click.IntRange(min=1), default=None, metavar="MB",
                     help="Builder workspace limit."),
        click.option("--backend", type=click.Choice(["auto", "tensorrt", "tensorrt-rtx"]), default="auto",
                     show_default=True, help="auto: TensorRT if installed, else TensorRT-RTX."),
        click.option("--compute-capability", default="8.9", show_default=True, metavar="X.Y",
                     help="TensorRT-RTX only: the GPU to build for (it needs none present)."),
        click.option("--triton-repo", type=PATH, default=None,
                     help="Also write a Triton Inference Server model repository for the engine here."),
        click.option("--triton-name", default="madf", show_default=True, help="The model's name in that repository."),
        click.option("--triton-instances", default=1, show_default=True, type=click.IntRange(min=1),
                     help="Engine instances per GPU in Triton's instance group."),
    ]
    return functools.reduce(lambda f, option: option(f), reversed(options), command)


def build_and_describe(onnx: Path, output: Path, fp16: bool, backend: str, **settings) -> dict:
    """Build, write the sidecar, print a summary table; returns the sidecar."""
    from madf.engines.build import BuildOptions, build_engine
    from madf.engines.sidecar import build_sidecar, sidecar_path, write_sidecar
    triton = {k: settings.pop(k, None) for k in ("triton_repo", "triton_name", "triton_instances")}
    options = BuildOptions(fp16=fp16, plugin_libs=tuple(settings.pop("plugin_libs", None) or ()), **settings)
    report = build_engine(onnx, output, options, backend=backend)
    sidecar = build_sidecar(output, onnx, report)
    write_sidecar(output, sidecar)
    target = sidecar["target"]
    rows = [["engine", f"{output} ({report.engine_bytes / 1e6:.1f} MB, {report.seconds:.1f} s)"],
            ["sidecar", str(sidecar_path(output))],
            ["TensorRT", f"{report.backend} {report.version}"],
            ["target", " ".join(filter(None, [target["gpu"], f"SM {target['compute_capability']}"
                                              if target["compute_capability"] else None])) or "this GPU"],
            ["lowering / precision", f"{report.lowering} / {report.precision}"],
            *([[f"{report.precision.upper()} convolutions", quantized_summary(report.convolutions, report.precision)]]
              if report.precision in QUANTIZED else []),
            ["version compatible", "yes" + (f" (carries {', '.join(p['file'] for p in sidecar['plugins'])})"
                                           if sidecar["plugins"] else "") if report.version_compatible else "no"]]
    if report.version_compatible:
        rows.append(["lean runtime", "excluded (load it in the app)" if report.exclude_lean_runtime
                     else "embedded"])
    rows += [[f"profile {name}", " .. ".join("x".join(map(str, s)) for s in shapes)]
             for name, shapes in report.profile.items()]
    if triton["triton_repo"]:
        from madf.engines.triton import write_triton_repo
        folder = write_triton_repo(triton["triton_repo"], output, name=triton["triton_name"] or "madf",
                                   instances=triton["triton_instances"] or 1, plugin_libs=options.plugin_libs)
        rows.append(["Triton model", f"{folder} (start: see {Path(triton['triton_repo']) / 'README.md'})"])
    click.echo(format_table(["engine build", ""], rows, align_right=False))
    return sidecar


def quantized_summary(convolutions, precision: str) -> str:
    """'36 of 46; float: ...' (the others by name) from the build's layer table."""
    if convolutions is None:
        return "not in the build log (TensorRT's engine inspector tells, on a GPU)"
    total = sum(map(len, convolutions.values()))
    name = QUANTIZED[precision]
    others = [f"{t.lower()}: {', '.join(names)}" for t, names in convolutions.items() if t != name]
    return f"{len(convolutions.get(name, []))} of {total}" + "".join(f"; {o}" for o in others)


def check_profile(dims, settings: dict, multiple: int, io: str = "float") -> None:
    """The --min/--opt/--max profile checked for an image input of ``dims`` (N, H, W; -1 dynamic) before anything
    is exported or built, and against Triton's batch rule when a repository is asked for."""
    from madf.engines.build import BuildOptions, profile_shapes
    shapes = BuildOptions(**{k: settings.get(k) for k in ("min_shape", "opt_shape", "max_shape")})
    image = profile_shapes(dims, shapes, multiple, io)["image"]
    if settings.get("triton_repo"):
        from madf.engines.triton import check_batch_profile
        check_batch_profile(image[0][0], image[2][0])


def check_engine_outputs(engine: Path, inputs, overwrite: bool, settings: dict, option: str = "--output",
                         onnx: Optional[Path] = None) -> None:
    """The plan, its sidecar and a Triton repository: checked before the (minutes-long) build; with ``onnx`` the
    Triton batch rule is judged on the profile that file will get."""
    from madf.engines.sidecar import sidecar_path
    inputs = [*inputs, *(settings.get("plugin_libs") or ())]
    paths.check_output_file(engine, option, inputs=inputs, overwrite=overwrite)
    paths.check_output_file(sidecar_path(engine), f"{option} (its sidecar)", inputs=inputs, overwrite=overwrite)
    check_build_outputs(settings, overwrite, onnx)


def check_build_outputs(settings: dict, overwrite: bool, onnx: Optional[Path] = None) -> None:
    """What a build writes besides the plan: a Triton repository (name, folder, batch rule) and the timing cache."""
    if settings.get("triton_repo"):
        repo = paths.check_output_folder(settings["triton_repo"], "--triton-repo")
        from madf.engines.triton import check_batch_profile, check_model_name
        name = settings.get("triton_name") or "madf"
        check_model_name(name)
        model = repo / name
        if onnx is not None and onnx.is_file():
            from madf.engines.build import read_input_dims
            meta, dims = read_input_dims(onnx)
            check_profile(dims, settings, int(meta["madf.multiple"]), meta.get("madf.io", "float"))
        elif settings.get("min_shape") and settings.get("max_shape"):
            check_batch_profile(settings["min_shape"][0], settings["max_shape"][0])
        if model.exists() and not overwrite:
            raise InputError(f"--triton-repo {repo} already has a model {model.name}; add --overwrite to replace it "
                             f"or choose --triton-name")
    if settings.get("timing_cache"):
        paths.check_writable_folder(Path(settings["timing_cache"]).parent, "--timing-cache")


def _cached(onnx: Path, output: Optional[Path], cache: Path, cache_size_mb: int, fp16: bool, backend: str,
            overwrite: bool, settings: dict) -> None:
    """Look the plan up in the cache, building it on a miss; copy it to --output when given."""
    import shutil

    from madf.common.atomic import atomic_path
    from madf.engines.build import BuildOptions
    from madf.engines.cache import EngineCache
    from madf.engines.sidecar import read_sidecar, sidecar_path
    triton = {k: settings.pop(k, None) for k in ("triton_repo", "triton_name", "triton_instances")}
    if output is not None:
        check_engine_outputs(output, [onnx], overwrite, {**settings, **triton}, onnx=onnx)
    else:
        check_build_outputs({**settings, **triton}, overwrite, onnx)
    options = BuildOptions(fp16=fp16, plugin_libs=tuple(settings.pop("plugin_libs", None) or ()), **settings)
    result = EngineCache(cache, max_bytes=cache_size_mb << 20).get_or_build(onnx, options, backend=backend)
    plan = result.plan
    if output is not None:   # the plan and its sidecar, each written whole
        for src, dst in ((plan, output), (sidecar_path(plan), sidecar_path(output))):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        plan = output
    sidecar = read_sidecar(plan)
    click.echo(f"engine cache {'hit' if result.hit else 'miss'}: {'found' if result.hit else 'built'} {plan} in "
               f"{result.seconds:.2f} s (key {result.key[:12]}, {sidecar['tensorrt']['backend']} "
               f"{sidecar['tensorrt']['version']}, SM {sidecar['target'].get('compute_capability') or '?'})")
    if triton["triton_repo"]:
        from madf.engines.triton import write_triton_repo
        folder = write_triton_repo(triton["triton_repo"], plan, name=triton["triton_name"] or "madf",
                                   instances=triton["triton_instances"] or 1, plugin_libs=options.plugin_libs)
        click.echo(f"Triton model: {folder}")


def _list_cache(cache: Path) -> None:
    import datetime

    from madf.engines.cache import EngineCache
    if not cache.is_dir():
        raise InputError(f"--cache {cache}: no engine cache there (madf-build --onnx FILE --cache {cache} makes one)")
    entries = EngineCache(cache).entries()
    rows = []
    for e in entries:
        sc = e["sidecar"]
        key = sc.get("cache", {})
        profile = sc["profile"]["image"]
        rows.append([e["key"][:12], sc["onnx"]["file"], f"{sc['tensorrt']['backend']} {sc['tensorrt']['version']}",
                     sc["target"].get("compute_capability") or "?", sc.get("io", "float"), sc["precision"],
                     " .. ".join("x".join(map(str, profile[k])) for k in ("min", "max")),
                     len(key.get("plugins", [])), f"{e['bytes'] / 1e6:.1f}",
                     datetime.datetime.fromtimestamp(e["last_used"]).isoformat(sep=" ", timespec="seconds")])
    click.echo(format_table(["key", "onnx", "TensorRT", "SM", "io", "precision", "profile (image)", "plugins", "MB",
                             "last used"], rows))
    click.echo(f"{len(entries)} engines, {sum(e['bytes'] for e in entries) / 1e6:.1f} MB in {cache}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--onnx", type=PATH, default=None, help="ONNX file written by madf-export.")
@click.option("--output", type=PATH, default=None,
              help="Engine to write (default: the ONNX path with .plan; with --cache: only in the cache); the "
                   "sidecar goes to OUTPUT.json.")
@click.option("--fp16", is_flag=True, help="Require an FP16 engine: the ONNX must come from madf-export --fp16 "
                                           "(TensorRT 10 may instead cast an FP32 ONNX, with a warning).")
@click.option("--cache", type=PATH, default=None,
              help="Engine cache folder: the plan for this file, TensorRT version, GPU, profile, precision and "
                   "plugins is built once and reused (concurrent builders wait for one build).")
@click.option("--cache-size", "cache_size_mb", type=click.IntRange(min=1), default=8192, show_default=True,
              metavar="MB", help="Largest size of --cache; least recently used engines go first.")
@click.option("--list", "list_cache", is_flag=True, help="With --cache: show the cached engines and exit.")
@engine_options
@OVERWRITE
def main(onnx: Optional[Path], output: Optional[Path], fp16: bool, cache: Optional[Path], cache_size_mb: int,
         list_cache: bool, backend: str, overwrite: bool, **settings) -> None:
    """Build a TensorRT engine (one optimization profile over N, H, W) from ONNX, written atomically."""
    setup_logging()
    if list_cache:
        if cache is None:
            raise click.UsageError("--list shows an engine cache: add --cache DIR")
        with cli_errors():
            _list_cache(cache)
        return
    if onnx is None:
        raise click.UsageError("Missing option '--onnx' (the ONNX file from madf-export to build)")
    with cli_errors():
        if cache is not None:
            _cached(onnx, output, cache, cache_size_mb, fp16, backend, overwrite, settings)
            return
        output = output or onnx.with_suffix(".plan")
        check_engine_outputs(output, [onnx], overwrite, settings, onnx=onnx)
        build_and_describe(onnx, output, fp16, backend, **settings)


if __name__ == "__main__":
    main()
