"""Import directions of DESIGN §3 and a lean `import braingate`."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Layers from low to high (DESIGN §3); a module may import its own layer or lower ones only.
# nn.dynamic and nn.loraven compose EventLinear with schedulers and estimators, so they sit above
# scheduling/energy although DESIGN files them under nn/ (nn/__init__ does not import them).
LAYERS = [
    # nn._optim_watch is a leaf (no braingate imports) that runtime ops read
    {
        "state",
        "functional",
        "_registry",
        "_files",
        "_numba_cache",
        "runtime",
        "datasets",
        "nn._optim_watch",
    },
    {"nn"},
    {
        "sim",
        "scheduling",
        "energy",
        "convert",
        "convert_conv",
        "convert_rnn",
        "conv_dense",
        "calibration",
    },
    {"nn.dynamic", "nn.dynamic_conv", "nn.loraven"},
    {"train", "lora", "bio"},
    {"integrations", "experiments"},
]


def layer_of(parts: list[str]) -> int | None:
    """Layer of a module given its path below braingate (longest dotted prefix wins)."""
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        for i, names in enumerate(LAYERS):
            if key in names:
                return i
    return None


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def test_braingate_imports_go_one_way():
    bad = []
    for path in (ROOT / "braingate").rglob("*.py"):
        rel = [p.removesuffix(".py") for p in path.relative_to(ROOT / "braingate").parts]
        own = layer_of(rel)
        if own is None:
            if rel not in (["__init__"], ["py"]) and rel[0] != "__init__":
                bad.append(f"{path}: not in any layer of LAYERS (add it there)")
            continue
        for mod in imports_of(path):
            parts = mod.split(".")
            if parts[0] == "hwmaps":
                bad.append(f"{path}: braingate must not import hwmaps")
            if parts[0] == "braingate" and len(parts) > 1:
                other = layer_of(parts[1:])
                if other is not None and other > own:
                    bad.append(f"{path}: {mod} (layer {other} > {own})")
    assert not bad, "\n".join(bad)


def test_hwmaps_ir_and_chips_do_not_import_torch():
    bad = []
    for path in (ROOT / "hwmaps").rglob("*.py"):
        if path.name == "extract.py":
            continue
        for mod in imports_of(path):
            if mod.split(".")[0] in {"torch", "braingate", "snntorch"}:
                bad.append(f"{path}: {mod}")
    assert not bad, "\n".join(bad)


def test_import_braingate_is_lean():
    code = (
        "import sys, braingate, hwmaps; "
        "heavy = [m for m in ('snntorch', 'matplotlib', 'ray', 'nir', 'neurobench', 'peft', "
        "'lightning', 'aeon', 'sklearn') if m in sys.modules]; "
        "import torch; assert not torch.cuda.is_initialized(); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
