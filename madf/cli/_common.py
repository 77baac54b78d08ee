"""What every console script shares: one-line errors, progress bars, log lines that do not break the bar."""
from __future__ import annotations

import contextlib
import logging
import sys

import click
from tqdm import tqdm

from ..errors import MADFError

# Images read ahead per batch slot in folder mode: enough to fill batches, bounded memory.
CHUNK = 8


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        tqdm.write(prefix + record.getMessage(), file=sys.stderr)


def setup_logging(quiet: bool = False) -> None:
    log = logging.getLogger("madf")
    log.handlers[:] = [_TqdmHandler()]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def progress(**kwargs) -> tqdm:
    return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)


@contextlib.contextmanager
def cli_errors():
    """Turn the library's user-facing errors into click's one-line 'Error: ...' and exit status 1."""
    try:
        yield
    except (MADFError, OSError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise click.ClickException(message) from None


def format_table(headers, rows, align_right: bool = True) -> str:
    """A plain text table, columns right-aligned except the first (all left-aligned with align_right=False)."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    fmt = lambda row: "  ".join(c.rjust(w) if i > 0 and align_right else c.ljust(w)
                                for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    return "\n".join(line.rstrip() for line in lines)
