"""Where a batch run's files live: local paths, or any file system pyarrow knows by URI (s3://, gs://, hdfs://,
file://). Object-store writes are atomic by nature (an S3 object appears whole when its upload completes); local ones
go through a temp file and a rename, as in the plain run. An object-store URI may carry pyarrow's options as a query
(``s3://bucket/photos?endpoint_override=127.0.0.1:9000&scheme=http``); the names joined onto it keep it.
"""
from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from madf.common.errors import InputError, first_line
from madf.common.paths import local_path
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
    """LocalFiles for local refs (paths, file:// URIs), pyarrow file systems for the others (one file system
    object per store and options)."""

    def __init__(self):
        self._systems: Dict[str, object] = {}

    def _resolve(self, ref: Ref):
        """(file system, its path) of a remote URI; one file system per scheme, bucket and options."""
        import pyarrow.fs as pafs
        base, query = _split(ref)
        scheme, rest = base.split("://", 1)
        key = f"{scheme}://{rest.split('/', 1)[0]}?{query}"
        if key not in self._systems:
            try:
                self._systems[key] = pafs.FileSystem.from_uri(str(ref))[0]
            except (ValueError, OSError) as exc:
                raise InputError(f"{ref}: pyarrow cannot open this URI ({first_line(exc)})") from None
        return self._systems[key], rest

    @staticmethod
    def name(ref: Ref) -> str:
        return name_of(ref)

    def read_bytes(self, ref: Ref) -> bytes:
        fs, path = self._resolve(ref)
        try:
            with fs.open_input_stream(path) as stream:
                return stream.read()
        except (OSError, FileNotFoundError) as exc:
            raise InputError(f"{ref}: cannot read it ({first_line(exc)})") from None

    def read_photo(self, ref: Ref):
        local = local_path(ref)
        if local is not None:
            return super().read_photo(local)
        return imaging.decode_photo(self.read_bytes(ref), name_of(ref))

    def read_mask(self, ref: Ref, invert: bool):
        local = local_path(ref)
        if local is not None:
            return super().read_mask(local, invert)
        return imaging.decode_mask(self.read_bytes(ref), name_of(ref), invert=invert)

    def write(self, ref: Ref, data: bytes) -> None:
        local = local_path(ref)
        if local is not None:
            return super().write(local, data)
        fs, path = self._resolve(ref)
        with fs.open_output_stream(path) as stream:   # the object appears once the upload completes
            stream.write(data)

    def modified(self, ref: Ref) -> Optional[float]:
        local = local_path(ref)
        if local is not None:
            return super().modified(local)
        import pyarrow.fs as pafs
        fs, path = self._resolve(ref)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return None
        return info.mtime.timestamp() if info.mtime is not None else 0.0

    def list_images(self, folder: Ref) -> List[str]:
        """Image files directly in ``folder``, sorted by name, as refs of the same kind."""
        local = local_path(folder)
        if local is not None:
            return [child(folder, p.name) for p in imaging.list_images(local)]
        import pyarrow.fs as pafs
        fs, path = self._resolve(folder)
        try:
            infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=False))
        except (OSError, FileNotFoundError) as exc:
            raise InputError(f"{folder}: cannot list it ({first_line(exc)})") from None
        names = sorted(posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.File)
        return [child(folder, n) for n in names if posixpath.splitext(n)[1].lower() in imaging.IMAGE_EXTENSIONS]

    def is_folder(self, ref: Ref) -> bool:
        local = local_path(ref)
        if local is not None:
            return local.is_dir()
        import pyarrow.fs as pafs
        fs, path = self._resolve(ref)
        kind = fs.get_file_info(path.rstrip("/")).type
        return kind == pafs.FileType.Directory or (kind == pafs.FileType.NotFound and str(ref).endswith("/"))
