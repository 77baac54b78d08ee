"""Where a batch run's files live: local paths, or any file system pyarrow knows by URI (s3://, gs://, hdfs://,
file://). Object-store writes are atomic by nature (an S3 object appears whole when its upload completes); local ones
go through a temp file and a rename, as in the plain run. An object-store URI may carry pyarrow's options as a query
(``s3://bucket/photos?endpoint_override=127.0.0.1:9000&scheme=http``); the names joined onto it keep it.
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from madf.common.errors import InputError
from madf.inpaint import imaging
from madf.inpaint.jobs import LocalFiles, Ref


def is_uri(ref: Ref) -> bool:
    return "://" in str(ref)


def _split(uri: str) -> Tuple[str, str]:
    base, _, query = str(uri).partition("?")
    return base.rstrip("/"), query


def child(folder: Ref, name: str) -> str:
    """``name`` inside ``folder`` (a path or a URI, its query kept)."""
    if not is_uri(folder):
        return str(Path(folder) / name)
    base, query = _split(folder)
    return f"{base}/{name}" + (f"?{query}" if query else "")


def name_of(ref: Ref) -> str:
    return posixpath.basename(_split(ref)[0]) if is_uri(ref) else Path(ref).name


class Files(LocalFiles):
    """LocalFiles for paths, pyarrow file systems for URIs (one file system object per store and options)."""

    def __init__(self):
        self._systems: Dict[str, object] = {}

    def _resolve(self, ref: Ref):
        """(file system, its path) of a URI; one file system per scheme, bucket and options."""
        import pyarrow.fs as pafs
        base, query = _split(ref)
        scheme, rest = base.split("://", 1)
        key = f"{scheme}://{rest.split('/', 1)[0]}?{query}"
        if key not in self._systems:
            try:
                self._systems[key] = pafs.FileSystem.from_uri(str(ref))[0]
            except (ValueError, OSError) as exc:
                raise InputError(f"{ref}: pyarrow cannot open this URI ({str(exc).splitlines()[0]})") from None
        return self._systems[key], ("/" + rest.lstrip("/") if scheme == "file" else rest)

    @staticmethod
    def name(ref: Ref) -> str:
        return name_of(ref)

    def read_bytes(self, ref: Ref) -> bytes:
        fs, path = self._resolve(ref)
        try:
            with fs.open_input_stream(path) as stream:
                return stream.read()
        except (OSError, FileNotFoundError) as exc:
            raise InputError(f"{ref}: cannot read it ({str(exc).splitlines()[0]})") from None

    def read_photo(self, ref: Ref):
        if not is_uri(ref):
            return super().read_photo(ref)
        return imaging.decode_photo(self.read_bytes(ref), name_of(ref))

    def read_mask(self, ref: Ref, invert: bool):
        if not is_uri(ref):
            return super().read_mask(ref, invert)
        return imaging.decode_mask(self.read_bytes(ref), name_of(ref), invert=invert)

    def write(self, ref: Ref, data: bytes) -> None:
        if not is_uri(ref) or str(ref).startswith("file://"):
            return super().write(self._local(ref), data)
        fs, path = self._resolve(ref)
        with fs.open_output_stream(path) as stream:   # the object appears once the upload completes
            stream.write(data)

    @staticmethod
    def _local(ref: Ref) -> Path:
        return Path(str(ref)[len("file://"):]) if str(ref).startswith("file://") else Path(ref)

    def modified(self, ref: Ref) -> Optional[float]:
        if not is_uri(ref) or str(ref).startswith("file://"):
            return super().modified(self._local(ref))
        import pyarrow.fs as pafs
        fs, path = self._resolve(ref)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return None
        return info.mtime.timestamp() if info.mtime is not None else 0.0

    def list_images(self, folder: Ref) -> List[str]:
        """Image files directly in ``folder``, sorted by name, as refs of the same kind."""
        if not is_uri(folder):
            return [str(p) for p in imaging.list_images(folder)]
        import pyarrow.fs as pafs
        fs, path = self._resolve(folder)
        try:
            infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=False))
        except (OSError, FileNotFoundError) as exc:
            raise InputError(f"{folder}: cannot list it ({str(exc).splitlines()[0]})") from None
        names = sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.File)
        return [child(folder, n) for n in names if posixpath.splitext(n)[1].lower() in imaging.IMAGE_EXTENSIONS]

    def is_folder(self, ref: Ref) -> bool:
        if not is_uri(ref):
            return Path(ref).is_dir()
        import pyarrow.fs as pafs
        fs, path = self._resolve(ref)
        kind = fs.get_file_info(path.rstrip("/")).type
        return kind == pafs.FileType.Directory or (kind == pafs.FileType.NotFound and str(ref).endswith("/"))
