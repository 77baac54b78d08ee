"""The one place that decides whether a tool may write where it was told to, checked before any expensive work.

Rules (every CLI): an output is never one of the tool's own inputs, nor the folder that holds them in folder mode;
an existing output is replaced only with ``--overwrite`` (or a resume); the folder must be writable and the name
short enough for the file system (the atomic write's temp name included). Torch-free.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from madf.common.errors import InputError

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
        shown = ", ".join(p.name for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise InputError(f"{option}: {len(existing)} result(s) exist already ({shown}); add --overwrite to replace "
                         f"them")
    return [check_output_file(p, option, inputs, overwrite=True) for p in paths]


def claim_folder(folder: Path, tool: str, option: str = "--output", overwrite: bool = False) -> Path:
    """A folder a tool fills with files of fixed names (the demo, the dataset): a rerun may replace what the tool
    wrote there before (it leaves a marker), but a folder of other files is refused unless ``overwrite``."""
    folder = check_output_folder(folder, option)
    marker = folder / f".{tool}"
    if folder.is_dir() and any(folder.iterdir()) and not marker.exists() and not overwrite:
        raise InputError(f"{option} {folder} holds files {tool} did not write; choose a new folder or add "
                         f"--overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return folder
