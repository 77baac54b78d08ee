"""The one place that decides whether a tool may write where it was told to, checked before any expensive work.

Rules (every CLI, every destination: local paths, file:// and object-store URIs, reports, the engine cache): an
output is never one of the tool's own inputs (the model file included), nor the folder that holds them in folder
mode; an existing output is replaced only with ``--overwrite`` (or a resume); the folder must be writable and the
name short enough for the file system (the atomic write's temp name included); a folder a tool fills and prunes
holds only what it made. Torch-free.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Union

from madf.common.errors import InputError

Ref = Union[str, Path]   # a local path, or a URI (file://, s3://, ...)

NAME_MAX = 255   # bytes per file name on Linux file systems; os.pathconf says otherwise where it can


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies anywhere below it (symlinks resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _can_write(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_name(path: Path, option: str) -> Path:
    """A name the file system takes (asked first: a too-long name makes even exists() fail)."""
    path = Path(path)
    limit = _name_max(_existing_ancestor(path.parent))
    if len(path.name.encode()) > limit:
        raise InputError(f"{option} {path.name[:40]}...: the name is {len(path.name.encode())} bytes, more than "
                         f"the {limit} the file system allows; shorten it")
    return path


def check_writable_folder(folder: Path, option: str) -> None:
    """``folder`` (existing or to be made) can take new files."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise InputError(f"{option} {folder}: {base} is a file, not a folder")
    if not _can_write(base):
        raise InputError(f"{option} {folder}: no permission to write in {base}; choose another folder")


def check_output_file(path: Path, option: str, inputs: Sequence[Path] = (), overwrite: bool = False,
                      made_here: Iterable[Path] = ()) -> Path:
    """One output file: not an input, not an existing file (unless ``overwrite`` or written by this run:
    ``made_here``), not a folder, in a writable folder, with a name the file system takes."""
    path = Path(path)
    if str(path) in ("", "."):
        raise InputError(f"{option} is empty (an unset shell variable?); give a file name")
    check_name(path, option)
    for source in inputs:
        if source is not None and _same(path, Path(source)):
            raise InputError(f"{option} {path} is one of the inputs ({source}); write the result somewhere else")
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not path.is_file():   # a FIFO or a device (/dev/null) would be replaced by a file
        raise InputError(f"{option} {path} is not a regular file (a FIFO, a device or a socket); give a new file "
                         f"name")
    if path.exists() and not overwrite and not any(_same(path, Path(m)) for m in made_here):
        raise InputError(f"{option} {path} exists; add --overwrite to replace it")
    check_writable_folder(path.parent, option)
    return path


def check_output_folder(folder: Path, option: str, input_folders: Sequence[Optional[Path]] = ()) -> Path:
    """A folder a tool writes several files into: not one of its input folders (a rerun would read its own
    results as inputs, and same-named outputs would replace the sources), and writable."""
    folder = check_name(Path(folder), option)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} {folder} is a file; give a folder")
    for source in input_folders:
        if source is not None and _same(folder, Path(source)):
            raise InputError(f"{option} {folder} is the input folder {source}; write the results to another folder")
    check_writable_folder(folder, option)
    return folder


def check_output_files(paths: Sequence[Path], option: str, inputs: Sequence[Path] = (),
                       overwrite: bool = False) -> List[Path]:
    """Many outputs at once (a folder run): the first few problems in one message."""
    existing = [p for p in paths if Path(p).exists()] if not overwrite else []
    if existing:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        shown = ", ".join(p.name for p in existing[:3]) + more
        raise InputError(f"{option}: {len(existing)} result(s) exist already ({shown}); add --overwrite to replace "
                         f"them")
    return [check_output_file(p, option, inputs, overwrite=True) for p in paths]


def claim_folder(folder: Path, tool: str, option: str = "--output", overwrite: bool = False,
                 own: Optional[Callable[[Path], bool]] = None, read_only: bool = False) -> Path:
    """A folder a tool fills with files of fixed names, or prunes (the demo, the dataset, the engine cache): a
    rerun may replace what the tool wrote there before (it leaves a marker, ``.tool``), but a folder of other files
    is refused unless ``overwrite``. ``own(path)``: what the tool made before it marked folders (an unmarked folder
    holding only that is adopted). ``read_only``: an existing folder that cannot be written is taken as it is."""
    folder = Path(folder)
    marker = folder / f".{tool}"
    mine = lambda p: p.name == marker.name or (own is not None and own(p))   # noqa: E731 - the marker races in
    if read_only and folder.is_dir() and not _can_write(folder):
        foreign = [] if marker.exists() else [p for p in folder.iterdir() if not mine(p)]
    else:
        folder = check_output_folder(folder, option)
        foreign = [] if not folder.is_dir() or marker.exists() or overwrite else \
            [p for p in folder.iterdir() if not mine(p)]
    if foreign:
        shown = ", ".join(sorted(p.name for p in foreign)[:3]) + (f" and {len(foreign) - 3} more"
                                                                   if len(foreign) > 3 else "")
        raise InputError(f"{option} {folder} holds files {tool} did not write ({shown}); choose a new or empty "
                         f"folder" + ("" if own else " or add --overwrite"))
    if _can_write(_existing_ancestor(folder)):
        folder.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return folder


def local_path(ref: Ref) -> Optional[Path]:
    """The local path a ref names (a path, or a file:// URI without its query); None for an object store's."""
    text = str(ref)
    if "://" not in text:
        return Path(ref)
    return Path(text.partition("?")[0][len("file://"):]) if text.startswith("file://") else None


def ref_key(ref: Ref) -> str:
    """What a path or URI names, to compare outputs with inputs: a local path (file:// too) resolved, an object
    store's URI without its options (``?endpoint_override=...``) and trailing slash."""
    local = local_path(ref)
    return str(local.resolve()) if local is not None else str(ref).partition("?")[0].rstrip("/")


def check_outputs(outputs: Sequence[Ref], option: str, inputs: Sequence[Optional[Ref]] = (), overwrite: bool = False,
                  exists: Optional[Callable[[Ref], bool]] = None) -> None:
    """The output rule for refs of any kind (a batch's results, a report): none is an input; none exists unless
    ``overwrite``; local ones also pass check_output_file. ``exists(ref)`` looks an object-store ref up."""
    given = [i for i in inputs if i is not None]
    keys = {ref_key(i): i for i in given}
    for ref in outputs:
        if ref_key(ref) in keys:
            raise InputError(f"{option} {ref} is one of the inputs ({keys[ref_key(ref)]}); write it somewhere else")
    remote = [ref for ref in outputs if local_path(ref) is None]
    present = [ref for ref in remote if not overwrite and exists is not None and exists(ref)]
    if present:
        shown = ", ".join(str(p).partition("?")[0].rsplit("/", 1)[-1] for p in present[:3]) + \
            (f" and {len(present) - 3} more" if len(present) > 3 else "")
        raise InputError(f"{option}: {len(present)} result(s) exist already ({shown}); add --overwrite to replace "
                         f"them")
    local = [local_path(ref) for ref in outputs if local_path(ref) is not None]
    local_inputs = [local_path(i) for i in given if local_path(i) is not None]
    if len(local) == 1:
        check_output_file(local[0], option, local_inputs, overwrite)
    elif local:
        check_output_files(local, option, local_inputs, overwrite)


def check_output_target(folder: Ref, option: str, input_folders: Sequence[Optional[Ref]] = ()) -> None:
    """check_output_folder for a folder or a URI prefix: never one of the input folders."""
    local = local_path(folder)
    if local is not None:
        check_output_folder(local, option, [local_path(f) for f in input_folders if f is not None])
        return
    for source in input_folders:
        if source is not None and ref_key(source) == ref_key(folder):
            raise InputError(f"{option} {folder} is the input folder {source}; write the results to another folder")
