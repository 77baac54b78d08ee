"""Files inside a Qt binary resource (.rcc), read without Qt: GCompris ships its activities' photographs this way.

The format is Qt's own (qtbase src/corelib/io/qresource.cpp, versions 1-3): a header, a tree of fixed-size nodes
(directories list a run of children; files point into the data block), a names block (UTF-16 names) and a data
block (each payload prefixed with its length; zlib-compressed ones with their unpacked length as well).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Dict

_DIRECTORY, _ZLIB, _ZSTD = 0x2, 0x1, 0x4


class ResourceError(ValueError):
    pass


def read_rcc(path) -> Dict[str, bytes]:
    """Every file of the resource, by its path inside it (``gcompris/src/.../photo.webp``). A truncated or damaged
    file raises ResourceError, never struct's or zlib's errors."""
    path = Path(path)
    try:
        return _read(path, path.read_bytes())
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise ResourceError(f"{path}: truncated or damaged Qt resource file ({exc.__class__.__name__})") from None


def _read(path: Path, blob: bytes) -> Dict[str, bytes]:
    if blob[:4] != b"qres":
        raise ResourceError(f"{path}: not a Qt resource file (no 'qres' header)")
    version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
    if not 1 <= version <= 3:
        raise ResourceError(f"{path}: Qt resource version {version} is not supported (1-3)")
    node_size = 14 if version == 1 else 22

    def name(index: int) -> str:
        offset = struct.unpack_from(">I", blob, tree + index * node_size)[0]
        length = struct.unpack_from(">H", blob, names + offset)[0]
        raw = blob[names + offset + 6:names + offset + 6 + 2 * length]
        if len(raw) != 2 * length:
            raise ResourceError(f"{path}: truncated Qt resource file (its name table is cut short)")
        return raw.decode("utf-16-be")

    files: Dict[str, bytes] = {}
    stack = [(0, "")]          # node 0 is the root directory
    while stack:
        index, prefix = stack.pop()
        flags = struct.unpack_from(">H", blob, tree + index * node_size + 4)[0]
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", blob, tree + index * node_size + 6)
            stack += [(first + i, f"{prefix}{name(first + i)}/") for i in range(count)]
            continue
        offset = struct.unpack_from(">I", blob, tree + index * node_size + 10)[0]
        size = struct.unpack_from(">I", blob, data + offset)[0]
        payload = blob[data + offset + 4:data + offset + 4 + size]
        if len(payload) != size:
            raise ResourceError(f"{path}: truncated Qt resource file ({prefix[:-1]} is cut short)")
        if flags & _ZSTD:
            raise ResourceError(f"{path}: {prefix[:-1]} is zstd-compressed, which is not supported")
        if flags & _ZLIB:
            payload = zlib.decompress(payload[4:])
        files[prefix[:-1]] = payload
    return files
