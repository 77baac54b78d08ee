"""What every console script shares: one-line errors, progress bars, log lines that do not break the bar."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click
from tqdm import tqdm

from madf.common.errors import MADFError, first_line
from madf.common.errors import is_out_of_memory as _out_of_memory

# Images read ahead per batch slot in folder mode: enough to fill batches, bounded memory.
CHUNK = 8


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        tqdm.write(prefix + record.getMessage(), file=sys.stderr)


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    log = logging.getLogger("madf")
    log.handlers[:] = [_TqdmHandler()]
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def progress(**kwargs) -> tqdm:
    return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)


class PathParam(click.Path):
    """click.Path that refuses an empty value: "" (an unset shell variable) would otherwise mean the current
    folder, and an output written there can land on the inputs."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            name = param.opts[0] if param is not None and param.opts else "path"
            self.fail(f"{name} is empty (an unset shell variable?); give a path", param, ctx)
        return super().convert(value, param, ctx)


PATH = PathParam(path_type=Path)


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan (every comparison with nan is false, so click's bounds let it in:
    --batch-wait-ms nan started a server that never batched)."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if value != value:
            self.fail("nan is not a number", param, ctx)
        return value


class PathOrURI(PathParam):
    """A path, or an object-store URI (s3://, gs://, file://) kept as it is (a Path would fold its '//')."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "://" in value:
            return value
        return super().convert(value, param, ctx)


PATH_OR_URI = PathOrURI(path_type=Path)
OVERWRITE = click.option("--overwrite", is_flag=True, help="Replace results that exist already.")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)   # unwinds like Ctrl-C: atomic writes remove their temp files


# What helps against running out of memory, for the tools that have the option.
MEMORY_TIPS = (("--batch-size", "a smaller --batch-size"), ("--batch", "a smaller --batch"),
               ("--max-side", "a smaller --max-side"), ("--size", "a smaller --size"), ("--device", "another --device"))


def out_of_memory() -> str:
    """The out-of-memory line, naming only options the running command has."""
    ctx = click.get_current_context(silent=True)
    have = {opt for param in (ctx.command.params if ctx else []) for opt in param.opts}
    tips = [tip for option, tip in MEMORY_TIPS if option in have]
    return "out of memory; try " + ", ".join(tips + ["a smaller image" if tips else "a smaller model or image"])


def reason(exc: BaseException) -> str:
    """One line for a failure a run reports and goes on past: what to do when it ran out of memory, else the
    error's first line."""
    return out_of_memory() if _out_of_memory(exc) else first_line(exc)


@contextlib.contextmanager
def cli_errors():
    """Every failure as click's one-line 'Error: ...' and exit status 1, never a traceback: the library's
    user-facing errors as they are, running out of memory with what to do, and anything unforeseen with its type
    (MADF_DEBUG=1 shows the traceback). SIGTERM unwinds like Ctrl-C so no temp file is left behind."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except click.ClickException:
        raise
    except (MADFError, OSError) as exc:
        raise click.ClickException(first_line(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; nothing half-written was left behind") from None
    except Exception as exc:   # noqa: BLE001 - the last line of defence of a command-line tool
        if os.environ.get("MADF_DEBUG"):
            raise
        if _out_of_memory(exc):
            raise click.ClickException(out_of_memory()) from None
        raise click.ClickException(f"unexpected {exc.__class__.__name__}: {first_line(exc)} (MADF_DEBUG=1 shows "
                                   f"where)") from None


def format_table(headers, rows, align_right: bool = True) -> str:
    """A plain text table, columns right-aligned except the first (all left-aligned with align_right=False)."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    fmt = lambda row: "  ".join(c.rjust(w) if i > 0 and align_right else c.ljust(w)
                                for i, (c, w) in enumerate(zip(row, widths)))
    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    return "\n".join(line.rstrip() for line in lines)
