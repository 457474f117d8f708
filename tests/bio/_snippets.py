"""Collect the Python snippets of the Bio Transformations seed and analyse their free names."""

from __future__ import annotations

import ast
import builtins
import os
import textwrap
from pathlib import Path

SEED_NAME = "003_bbdd8534624d3ca7.txt"


def seed_path() -> Path | None:
    """The seed document: $BRAINGATE_SEEDS_DIR, else ../shared/seeds next to the repository."""
    repo = Path(__file__).resolve().parents[2]
    for folder in (os.environ.get("BRAINGATE_SEEDS_DIR"), repo.parent / "shared" / "seeds"):
        if folder and (Path(folder) / SEED_NAME).is_file():
            return Path(folder) / SEED_NAME
    return None


def extract(text: str) -> list[str]:
    """Bodies of the ``.. code-block:: python`` directives, dedented, imports renamed."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        head = lines[i]
        if head.strip() != ".. code-block:: python":
            i += 1
            continue
        indent = len(head) - len(head.lstrip())
        i += 1
        body: list[str] = []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
            i += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        blocks.append(code.replace("bio_transformations", "braingate.bio"))
    return blocks


def _bound_and_loaded(tree: ast.AST) -> tuple[set[str], set[str]]:
    bound, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, loaded


def page_imports(blocks: list[str]) -> tuple[str, set[str]]:
    """All import statements of the page (a reader's imports) and the names they bind."""
    stmts, names = [], set()
    for code in blocks:
        for node in ast.parse(code).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                stmts.append(ast.unparse(node))
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return "\n".join(dict.fromkeys(stmts)), names


def free_names(code: str) -> set[str]:
    """Names a snippet uses without binding them (builtins excluded)."""
    bound, loaded = _bound_and_loaded(ast.parse(code))
    return loaded - bound - set(dir(builtins))
