"""What every example shares: where it writes, atomic writes, and saying what it wrote.

Each example writes into its own folder, ``results/<example>/`` for the full run and
``results/<example>/quick/`` for ``--quick`` (a smoke run), so a quick run never overwrites the
full run's results. ``--out DIR`` picks another folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def parser(doc: str, quick_help: str) -> argparse.ArgumentParser:
    """An argument parser with the options every example takes: ``--quick`` and ``--out``."""
    ap = argparse.ArgumentParser(
        description=doc.strip().splitlines()[0],
        epilog="Writes into results/<example>/ (results/<example>/quick/ with --quick) "
        "unless --out is given.",
    )
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--out", default=None, help="output folder (default: see below)")
    return ap


def output_dir(example: str, quick: bool, out: str | None = None) -> Path:
    """``out`` when given, else ``results/<example>/`` (``.../quick/`` for quick runs)."""
    path = Path(out) if out else Path("results") / example / ("quick" if quick else "")
    path.mkdir(parents=True, exist_ok=True)
    return path


def legacy_file(out: str | None, suffix: str) -> Path | None:
    """``--out`` naming a ``suffix`` file (what the example took before it wrote a folder):
    that path, whose folder then receives the other files; else None."""
    if out and Path(out).suffix == suffix:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        return Path(out)
    return None


def _replace(path: Path, write) -> Path:
    """Write through a temporary file in the same folder, then ``os.replace`` it in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` to ``path``."""
    return _replace(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data) -> Path:
    """Atomically write ``data`` as JSON (non-finite floats are refused: they are not JSON)."""
    return write_text(path, json.dumps(data, indent=1, default=float, allow_nan=False) + "\n")


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Atomically save a matplotlib figure and close it."""
    import matplotlib.pyplot as plt

    try:
        return _replace(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def announce(out: Path, paths: Iterable[Path]) -> None:
    """Print the folder and the files an example wrote."""
    names = ", ".join(Path(p).name for p in paths)
    print(f"\nwrote into {out}/: {names}")
