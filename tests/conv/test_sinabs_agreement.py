"""hwmaps's Speck fit / no-fit verdict against sinabs's DYNAP-CNN memory model.

Facts from sinabs 3.1.3 (PyPI wheel ``sinabs-3.1.3-py3-none-any.whl``), quoted with their files:

- ``sinabs/backend/dynapcnn/dynapcnn_layer.py``, ``DynapcnnLayer.memory_summary``: a chip layer
  (conv ``c`` → ``f`` channels, kernel ``h×w``, conv output map ``f × h' × w'``, before pooling)
  needs kernel memory ``c · 2^(⌈log2(h·w)⌉ + ⌈log2 f⌉)``, neuron memory
  ``f · 2^(⌈log2 h'⌉ + ⌈log2 w'⌉)`` and bias memory ``len(bias)`` (0 without a bias).
- ``sinabs/backend/dynapcnn/chips/dynapcnn.py``, ``DynapcnnConfigBuilder.get_constraints``: per
  core ``weight_memory_size = [16, 16, 16, 32, 32, 64, 64, 16, 16] · 1024``,
  ``neurons_memory_size = [64, 64, 64, 32, 32, 16, 16, 16, 16] · 1024``,
  ``bias_memory_size = [1024] · 9``.
- ``sinabs/backend/dynapcnn/mapping.py``: ``LayerConstraints.fits`` requires all three needs ≤ the
  core's; ``get_valid_mapping`` puts one layer per core by bipartite matching (Edmonds–Karp max
  flow) and raises ``ValueError("No valid mapping found ...")`` when no matching covers every layer.
- ``sinabs/backend/dynapcnn/exceptions.py`` (``MaxDestinationsReached``): at most two destinations
  per layer.

The first tests check hwmaps's Speck table (``hwmaps/chips/chips.json``) and its formulas against
these facts without sinabs. The agreement tests run sinabs's own memory model when sinabs is
installed. Its DYNAP-CNN package cannot be imported here: ``sinabs.backend.dynapcnn/__init__``
imports ``samna``, and samna on PyPI is a stub (0.39.14, 0.41.3, 0.45.5 and 0.48.6 checked: 2–15 kB
pure-Python wheels) whose import runs ``pip install samna==<version>`` from SynSense's GitLab
index, which fails offline. So the tests load the backend's samna-free
modules (``mapping.py``, ``dynapcnn_layer.py``) directly, under a private package name, and read
the constraint lists from ``chips/dynapcnn.py``'s source (only integer literals and products
are accepted). sinabs 3.1.3 declares ``nir<=1.0.4``, so it is installed with
``pip install --no-deps sinabs==3.1.3 pbr`` (its code runs with nir 1.0.8 / nirtorch 2.6).
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import hwmaps
from hwmaps.extract_conv import SPECK_BIAS_MEMORY, SpeckLayer, speck_fit, speck_layers

KI = 1024
#: sinabs 3.1.3 chips/dynapcnn.py, DynapcnnConfigBuilder.get_constraints.
SINABS_KERNEL_MEMORY = [16 * KI] * 3 + [32 * KI] * 2 + [64 * KI] * 2 + [16 * KI] * 2
SINABS_NEURON_MEMORY = [64 * KI] * 3 + [32 * KI] * 2 + [16 * KI] * 4
SINABS_BIAS_MEMORY = [1024] * 9
SINABS_MAX_DESTINATIONS = 2  # sinabs 3.1.3 exceptions.py, MaxDestinationsReached


def _sinabs_kernel_memory(c: int, f: int, h: int, w: int) -> float:
    """sinabs 3.1.3 memory_summary, as written there (numpy log2 / ceil)."""
    return c * pow(2, np.ceil(np.log2(h * w)) + np.ceil(np.log2(f)))


def _sinabs_neuron_memory(f: int, hh: int, ww: int) -> float:
    return f * pow(2, np.ceil(np.log2(hh)) + np.ceil(np.log2(ww)))


# -- facts, without sinabs -----------------------------------------------------------------------
def test_speck_table_holds_sinabs_constants():
    table = json.loads((Path(hwmaps.__file__).parent / "chips" / "chips.json").read_text())
    row = table["chips"]["speck"] if "chips" in table else table["speck"]
    assert row["values"]["core_synapses"] == SINABS_KERNEL_MEMORY
    assert row["values"]["core_neurons"] == SINABS_NEURON_MEMORY
    assert row["values"]["max_dest_cores"] == SINABS_MAX_DESTINATIONS
    for key in ("core_synapses", "core_neurons"):
        assert "sinabs 3.1.3" in row["sources"][key] and "chips/dynapcnn.py" in row["sources"][key]
    assert "exceptions.py" in row["sources"]["max_dest_cores"]
    chip = hwmaps.chips.get("speck")
    assert list(chip.core_synapses) == SINABS_KERNEL_MEMORY
    assert list(chip.core_neurons) == SINABS_NEURON_MEMORY
    assert [SPECK_BIAS_MEMORY] * 9 == SINABS_BIAS_MEMORY


def test_speck_layer_memory_follows_sinabs_formulas():
    checked = 0
    for c in (1, 2, 3, 8, 17, 64):
        for f in (1, 2, 5, 16, 100, 1024):
            for k in ((1, 1), (2, 2), (3, 3), (5, 5), (7, 7), (4, 4)):
                for hw in ((1, 1), (2, 2), (3, 5), (16, 16), (33, 64), (128, 128)):
                    layer = SpeckLayer("l", c, f, k, hw)
                    assert layer.kernel_memory == _sinabs_kernel_memory(c, f, *k), (c, f, k)
                    assert layer.neuron_memory == _sinabs_neuron_memory(f, *hw), (f, hw)
                    checked += 1
    assert checked == 6 * 6 * 6 * 6


def test_speck_fit_admits_layers_to_cores_as_sinabs_constraints_do():
    """Without sinabs: a layer fits core ``i`` iff kernel, neuron and bias needs are within
    sinabs's lists; one layer per core."""
    kernel_64k = SpeckLayer("k", 64, 64, (3, 3), (4, 4))  # 64·2^(4+6) = 64 Ki: cores 5, 6
    neuron_64k = SpeckLayer("n", 1, 16, (3, 3), (64, 64))  # 16·2^12 = 64 Ki: cores 0, 1, 2
    assert kernel_64k.kernel_memory == 64 * KI and neuron_64k.neuron_memory == 64 * KI
    fit = speck_fit([kernel_64k._replace(name=f"k{i}") for i in range(2)])
    assert fit["fits"] and set(fit["assignment"].values()) == {5, 6}
    assert not speck_fit([kernel_64k._replace(name=f"k{i}") for i in range(3)])["fits"]
    fit = speck_fit([neuron_64k._replace(name=f"n{i}") for i in range(3)])
    assert fit["fits"] and set(fit["assignment"].values()) == {0, 1, 2}
    assert not speck_fit([neuron_64k._replace(name=f"n{i}") for i in range(4)])["fits"]
    wide = SpeckLayer("b", 16, 2048, (1, 1), (1, 1))  # bias 2048 > 1024
    assert not speck_fit([wide])["fits"] and speck_fit([wide._replace(bias=False)])["fits"]


# -- agreement with sinabs's own code --------------------------------------------------------------
def _literal(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _literal(node.left) * _literal(node.right)
    raise ValueError(f"unexpected expression in sinabs's constraint lists: {ast.dump(node)}")


@pytest.fixture(scope="module")
def sinabs_backend():
    """sinabs's DYNAP-CNN memory model: ``(mapping, dynapcnn_layer, constraints, lists)``."""
    try:
        import sinabs
        import sinabs.layers
    except ImportError:
        pytest.skip(
            "sinabs is not installed; install it without its nir<=1.0.4 pin: "
            "pip install --no-deps sinabs==3.1.3 pbr"
        )
    root = Path(sinabs.__file__).parent / "backend" / "dynapcnn"
    alias = "_braingate_sinabs_dynapcnn"  # not sinabs.backend.dynapcnn: its __init__ needs samna
    if alias not in sys.modules:
        pkg = types.ModuleType(alias)
        pkg.__path__ = [str(root)]
        sys.modules[alias] = pkg
    mapping = importlib.import_module(f"{alias}.mapping")
    layer_mod = importlib.import_module(f"{alias}.dynapcnn_layer")
    tree = ast.parse((root / "chips" / "dynapcnn.py").read_text())
    fn = next(n for n in ast.walk(tree)
              if isinstance(n, ast.FunctionDef) and n.name == "get_constraints")  # fmt: skip
    lists = {
        st.targets[0].id: _literal(st.value)
        for st in fn.body
        if isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Name)
        and st.targets[0].id.endswith("_memory_size")
    }  # fmt: skip
    constraints = [mapping.LayerConstraints(k, n, b) for k, n, b in
                   zip(lists["weight_memory_size"], lists["neurons_memory_size"],
                       lists["bias_memory_size"])]  # fmt: skip
    return mapping, layer_mod, constraints, lists, sinabs.__version__


def test_installed_sinabs_has_the_quoted_constants(sinabs_backend):
    _, _, _, lists, version = sinabs_backend
    assert lists == {"weight_memory_size": SINABS_KERNEL_MEMORY,
                     "neurons_memory_size": SINABS_NEURON_MEMORY,
                     "bias_memory_size": SINABS_BIAS_MEMORY}, version  # fmt: skip


def _sinabs_layer(layer_mod, la: SpeckLayer):
    """A sinabs DynapcnnLayer for hwmaps's chip layer: the conv on the input map that gives the
    layer's neuron map (stride 1, no padding)."""
    import sinabs.layers as sl
    import torch
    from torch import nn

    kh, kw = la.kernel
    h, w = la.neurons
    with torch.no_grad():
        conv = nn.Conv2d(la.c_in, la.c_out, (kh, kw), bias=la.bias)
    out = layer_mod.DynapcnnLayer(conv, sl.IAFSqueeze(batch_size=1),
                                  (la.c_in, h + kh - 1, w + kw - 1), [(1, 1)],
                                  discretize=False)  # fmt: skip
    assert tuple(out.get_neuron_shape()) == (la.c_out, h, w)
    return out


def _braingate_cnn_layers() -> list[SpeckLayer]:
    """The chip layers hwmaps extracts from a converted event CNN (a Report of a real run)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    import braingate as bg
    import braingate.convert_conv  # the conv converters

    torch.manual_seed(0)
    dense = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )  # fmt: skip
    net = bg.convert(dense, rank={"0": 6, "3": 8, "7": 10}, blocks=2)
    _, rep = bg.simulate(net, torch.rand(3, 2, 2, 16, 16), mode="event")
    return speck_layers(rep)


def _cases() -> dict[str, tuple[list[SpeckLayer], bool]]:
    """name -> (chip layers, the verdict both must reach)."""
    k64 = SpeckLayer("k", 64, 64, (3, 3), (4, 4))
    n64 = SpeckLayer("n", 1, 16, (3, 3), (64, 64))
    many = [SpeckLayer(f"l{i}", 4, 4, (3, 3), (8, 8)) for i in range(10)]
    return {
        "braingate event CNN (V and U per conv)": (_braingate_cnn_layers(), True),
        "too many channels (2→256 on 64×64: 1 Mi neurons)": (
            [SpeckLayer("a", 2, 256, (3, 3), (64, 64))], False),
        "kernel memory exceeded (128→128, 5×5: 512 Ki)": (
            [SpeckLayer("a", 128, 128, (5, 5), (8, 8))], False),
        "two 64 Ki kernels (cores 5, 6)": ([k64._replace(name=f"k{i}") for i in range(2)], True),
        "three 64 Ki kernels": ([k64._replace(name=f"k{i}") for i in range(3)], False),
        "three 64 Ki neuron maps (cores 0-2)": (
            [n64._replace(name=f"n{i}") for i in range(3)], True),
        "four 64 Ki neuron maps": ([n64._replace(name=f"n{i}") for i in range(4)], False),
        "nine layers": (many[:9], True),
        "ten layers (nine cores)": (many, False),
        "bias 2048 > 1024": ([SpeckLayer("b", 16, 2048, (1, 1), (1, 1))], False),
        "the same without bias": ([SpeckLayer("b", 16, 2048, (1, 1), (1, 1), False)], True),
        "matching needed (big kernels, big maps, small layers)": (
            [k64._replace(name="k0"), n64._replace(name="n0"), k64._replace(name="k1"),
             n64._replace(name="n1"), *many[:5]], True),
    }  # fmt: skip


def test_speck_verdicts_agree_with_sinabs(sinabs_backend):
    mapping, layer_mod, constraints, _, _ = sinabs_backend
    verdicts = {}
    for name, (layers, expected) in _cases().items():
        ours = speck_fit(layers)
        theirs = {i: _sinabs_layer(layer_mod, la) for i, la in enumerate(layers)}
        for i, la in enumerate(layers):  # the same needs per layer
            mem = theirs[i].memory_summary()
            assert (mem["kernel"], mem["neuron"]) == (la.kernel_memory, la.neuron_memory), name
            assert mem["bias"] == (la.c_out if la.bias else 0), name
        try:
            cores = mapping.get_valid_mapping(theirs, constraints)
            sinabs_fits = True
        except ValueError as e:
            assert "No valid mapping found" in str(e)
            sinabs_fits = False
        verdicts[name] = (ours["fits"], sinabs_fits)
        assert ours["fits"] == sinabs_fits == expected, (name, ours["unplaced"])
        if sinabs_fits:  # both placements are valid under sinabs's own constraints
            assert len(set(cores.values())) == len(layers)
            for i, la in enumerate(layers):
                core = ours["assignment"][la.name]
                assert core in mapping.find_chip_layers(theirs[i], constraints), (name, la.name)
    assert sorted(set(v[0] for v in verdicts.values())) == [False, True]  # both kinds occur
    assert len(verdicts) == 12


def test_non_square_kernels_are_refused_as_sinabs_does(sinabs_backend):
    _, layer_mod, _, _, _ = sinabs_backend
    la = SpeckLayer("a", 4, 8, (1, 3), (1, 30))
    with pytest.raises(ValueError, match="same height and width"):
        _sinabs_layer(layer_mod, la)
    assert not speck_fit([la])["fits"]


def test_non_square_kernels_fit_no_speck_core_and_say_why():
    one_d = SpeckLayer("conv1d", 4, 8, (1, 3), (1, 30))
    fit = speck_fit([one_d, SpeckLayer("ok", 4, 8, (3, 3), (30, 30))])
    assert not fit["fits"] and fit["unplaced"] == ["conv1d"]
    assert fit["refused"] == {"conv1d": "kernel (1, 3) is not square"}
