"""Drift nothing else catches: every madf module named in the project's text (``madf.x.y`` in code, docstrings,
comments, docs) and every ``madf/x/y.py`` path (in .py, .cpp, .h, .cu, .md, .txt, .yaml, .cfg, .sh files) exists,
and a name after a module is defined in it. Metadata keys (``madf.multiple``, ...) are not modules: they are the
quoted ``"madf.*"`` strings the exporter and the digest write."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".cpp", ".h", ".cu", ".cuh", ".md", ".txt", ".yaml", ".cfg", ".toml", ".sh"}
SKIP = {"third_party", "build", ".venv", ".git", "__pycache__"}
# names the house-rule tests make up to test the walk itself
INVENTED = {"tests/test_layers.py", "tests/test_drift.py"}
PATH = re.compile(r"(?<![\w/.-])(madf/[\w/]+\.(?:py|cpp|h|cu|cuh|json|yaml|txt|in))\b")
MODULE = re.compile(r"(?<![\w./-])(madf(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def project_files():
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if path.suffix in SUFFIXES and path.is_file() and not (SKIP & set(rel.parts)) \
                and not any(p.endswith(".egg-info") for p in rel.parts) and str(rel) not in INVENTED:
            yield rel, path.read_text(errors="ignore")


def metadata_keys():
    """The madf.* keys files and checkpoints record: quoted strings in the code that writes them."""
    keys = set()
    for module in (*(ROOT / "madf" / "export").glob("*.py"), *(ROOT / "madf" / "quantize").glob("*.py"),
                   ROOT / "madf" / "common" / "digest.py"):
        keys |= set(re.findall(r'"(madf\.[a-z_0-9]+)"', module.read_text()))
    return keys


def defines(module: Path, name: str) -> bool:
    text = module.read_text()
    pattern = (rf"^\s*(?:def|class|async def) {name}\b|^\s*{name}\s*[:=]|^\s*(?:from .* )?import .*\b{name}\b"
               rf"|[\"']{name}[\"']\s*:")   # the last: madf/__init__.py's lazy exports
    return bool(re.search(pattern, text, re.M)) or name.startswith("__")


def resolves(name: str) -> bool:
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:k])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            return k == len(parts) or defines(module, parts[k])
    return False


def path_exists(path: str) -> bool:
    # C++ includes name headers under their include root (madf/runtime.h is madf/csrc/runtime/include/madf/...)
    return (ROOT / path).exists() or any((ROOT / "madf" / "csrc").rglob(Path(path).name)) and path.endswith(".h")


def stale():
    keys = metadata_keys()
    for rel, text in project_files():
        for match in PATH.finditer(text):
            if not path_exists(match.group(1)) and not re.search(r"/[A-Z]/", match.group(1)):
                yield f"{rel}: {match.group(1)} does not exist"
        for match in MODULE.finditer(text):
            name = match.group(1).rstrip(".")
            placeholder = any(re.fullmatch(r"[A-Z]", part) for part in name.split("."))   # madf.X.Y in prose
            if name not in keys and not placeholder and not resolves(name):
                yield f"{rel}: {name} is not a madf module or one of its names"


def test_every_module_and_path_named_exists():
    found = sorted(set(stale()))
    assert not found, "\n".join(found)


def test_the_check_sees_a_moved_module(tmp_path, monkeypatch):
    assert not resolves("madf.strategy") and not resolves("madf.acceleration.prepare")
    assert resolves("madf.inpaint.strategy.Strategy") and resolves("madf.model.acceleration.prepare")
    assert not path_exists("madf/imaging.py") and path_exists("madf/inpaint/imaging.py")
    assert "madf.multiple" in metadata_keys() and "madf.weights_sha256" in metadata_keys()


def test_the_readme_status_names_what_is_built():
    """The README's status table has no row saying a built part (Ray batch, Ray serving) is not built."""
    readme = (ROOT / "README.md").read_text()
    status = readme.split("## Status", 1)[1]
    assert not re.search(r"(Ray|serving|batch)[^.]*not built", status, re.I), status
    assert "madf-inpaint --ray" in readme and "madf-serve --replicas" in readme and (ROOT / "madf" / "scale").is_dir()


def test_the_dev_extra_repeats_every_floor_exactly():
    """setup.cfg's dev extra copies the other extras' requirements (a fresh clone installs dev): each copy must
    carry the same floor (starlette>=0.44, ray>=2.50, ... are stated once in their extra, and checked here)."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = {name: [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]
              for name, text in cfg.items("options.extras_require")}

    def parse(line):
        name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower()
        return name, line
    dev = dict(map(parse, extras["dev"]))
    mismatched = [f"{extra}: {line} vs dev: {dev[name]}" for extra, lines in extras.items() if extra != "dev"
                  for name, line in map(parse, lines) if name in dev and dev[name] != line]
    assert not mismatched, "\n".join(mismatched)
    assert "starlette>=0.44" in extras["serve"] and any(line.startswith("ray[") and ">=2.50" in line
                                                         for line in extras["ray"])
