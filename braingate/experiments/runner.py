"""``python -m braingate.experiments``: the ADLRNS experiment flow (config -> data -> Trainer).

The seed's ``run_exp.sh`` flags work as written::

    python -m braingate.experiments --config exp_config --data_dir DIR --save_dir DIR --gpu 0
    python -m braingate.experiments run digits_dynamic --epochs 2
    python -m braingate.experiments list

``--config`` takes a bundled config by name (``list`` shows them) or a YAML file. Data: an
ImageFolder-style directory at ``--data_dir`` (one sub-folder of images per class) when given,
else the config's ``data.name`` (shipped data: sklearn digits as 1×8×8 images, aeon
BasicMotions / GunPoint as flat vectors). Model types (``MODELS``): ``dynamic_mlp`` (a
DynamicLowRankLayer MLP), ``mlp`` (its dense twin, ``nn.Linear``), ``adlrns_resnet`` (the seed's small ResNet with dynamic low-rank convs)
and ``resnet`` (its dense twin, ``nn.Conv2d``). Every key of the config is used or refused:
unknown keys, model keys the model type does not read, an unknown ``model.type`` and
``hardware`` keys the estimator does not read are errors that name them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from braingate._registry import Registry
from braingate.energy.estimator import check_hardware_profile
from braingate.experiments.models import NORMS, AdlrnsResNet
from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.train import ExperimentConfig, Trainer, plot_history

__all__ = [
    "CONFIG_DIR",
    "MLP",
    "MODELS",
    "DynamicMLP",
    "ModelType",
    "bundled_configs",
    "load_config",
    "load_data",
    "load_image_folder",
    "main",
    "resolve_config",
    "run",
]

#: Configs shipped with braingate, by file stem.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = "digits_dynamic"
#: ``data:`` keys beyond DataConfig's fields that the runner reads.
DATA_EXTRA_KEYS = ("image_size",)
#: ``data.name`` values that are images (``image_size`` applies to them).
IMAGE_DATA = ("digits",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ModelType:
    """A ``model.type``: its builder ``(config, sample_shape, classes) -> nn.Module``, the
    ``model:`` keys it reads (a key it does not read is refused) and whether it needs images
    ``(C, H, W)``."""

    build: Callable[..., nn.Module]
    reads: tuple[str, ...]
    extra: tuple[str, ...] = ()  # keys beyond ModelConfig's fields
    images: bool = False


#: ``model.type`` -> :class:`ModelType`.
MODELS: Registry[ModelType] = Registry("model.type")


def model_type(name: str, reads: tuple[str, ...], extra: tuple[str, ...] = (),
               images: bool = False):  # fmt: skip
    """Decorator: register a builder ``(config, sample_shape, classes)`` as ``model.type``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, ModelType(fn, ("type", *reads), extra, images))
        return fn

    return deco


class DynamicMLP(nn.Module):
    """``DynamicLowRankLayer(n → hidden) → ReLU → Linear(hidden → classes)``; returns logits."""

    def __init__(
        self,
        n: int,
        hidden: int,
        classes: int,
        r_min: int,
        r_max: int,
        scorer_hidden: int,
        blocks: int,
    ):
        super().__init__()
        self.dyn = DynamicLowRankLayer(n, hidden, r_max, r_min, scorer_hidden, blocks)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.dyn(x.flatten(1))[0]))


class MLP(nn.Module):
    """``Linear(n → hidden) → ReLU → Linear(hidden → classes)``: the dense twin of
    :class:`DynamicMLP` (``model.type: mlp``); returns logits."""

    def __init__(self, n: int, hidden: int, classes: int):
        super().__init__()
        self.fc = nn.Linear(n, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(x.flatten(1))))


_RANKS = ("r_min", "r_max", "scorer_hidden", "num_gate_blocks")
_RESNET = ("width", "blocks_per_stage", "norm")
_DYNAMIC_RESNET = (*_RESNET, "planned", "nested")


@model_type("dynamic_mlp", reads=("hidden", *_RANKS))
def _dynamic_mlp(cfg: ExperimentConfig, shape: tuple[int, ...], classes: int) -> nn.Module:
    m = cfg.model
    n = int(np.prod(shape))
    return DynamicMLP(n, m.hidden, classes, m.r_min, m.r_max, m.scorer_hidden, m.num_gate_blocks)


@model_type("mlp", reads=("hidden",))
def _mlp(cfg: ExperimentConfig, shape: tuple[int, ...], classes: int) -> nn.Module:
    return MLP(int(np.prod(shape)), cfg.model.hidden, classes)


def _resnet_kw(cfg: ExperimentConfig, keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``model:`` extras of a ResNet (defaults of :class:`AdlrnsResNet` when absent)."""
    kw = {k: cfg.model.extra[k] for k in keys if k in cfg.model.extra}
    for key in ("width", "blocks_per_stage"):
        val = kw.get(key, 1)
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"model.{key}={val!r} must be a positive int; write e.g. {key}: 1")
    for key in ("planned", "nested"):
        val = kw.get(key, 0.0)
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 <= val <= 1:
            raise ValueError(f"model.{key}={val!r} must be a fraction in [0, 1]; e.g. {key}: 0.5")
    if kw.get("norm", "group") not in NORMS:
        raise ValueError(f"model.norm={kw['norm']!r} is unknown; write one of {', '.join(NORMS)}")
    return kw


@model_type("adlrns_resnet", reads=_RANKS, extra=_DYNAMIC_RESNET, images=True)
def _adlrns_resnet(cfg: ExperimentConfig, shape: tuple[int, ...], classes: int) -> nn.Module:
    m = cfg.model
    return AdlrnsResNet(shape[0], classes, r_min=m.r_min, r_max=m.r_max,
                        num_gate_blocks=m.num_gate_blocks, scorer_hidden=m.scorer_hidden,
                        **_resnet_kw(cfg, _DYNAMIC_RESNET))  # fmt: skip


@model_type("resnet", reads=(), extra=_RESNET, images=True)
def _resnet(cfg: ExperimentConfig, shape: tuple[int, ...], classes: int) -> nn.Module:
    return AdlrnsResNet(shape[0], classes, dynamic=False, **_resnet_kw(cfg, _RESNET))


# ----------------------------------------------------------------------------- configs
def bundled_configs() -> dict[str, Path]:
    """``{name: path}`` of the configs shipped in ``braingate/experiments/configs``."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def resolve_config(config: str | Path) -> Path:
    """A YAML path from a path or a bundled config name (``exp_config`` or ``exp_config.yaml``)."""
    path = Path(config)
    if path.is_file():
        return path
    bundled = bundled_configs()
    if path.stem in bundled and path.parent == Path("."):
        return bundled[path.stem]
    raise FileNotFoundError(
        f"config {str(config)!r} not found: no such file, and no bundled config of that name; "
        f"bundled: {', '.join(bundled)} (python -m braingate.experiments list)"
    )


def load_config(config: str | Path) -> ExperimentConfig:
    """Load and check a config: YAML errors, unknown keys, an unknown model type, model keys the
    type does not read and hardware keys the estimator does not read raise ValueError naming
    them."""
    import yaml

    path = resolve_config(config)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    try:
        cfg = ExperimentConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    check_model_type(cfg.model.type, path)
    for section in ("model", "train", "scheduler", "data"):
        allowed = {"data": DATA_EXTRA_KEYS, "model": MODELS.get(cfg.model.type).extra}
        allowed = tuple(allowed.get(section, ()))
        extra = sorted(set(getattr(cfg, section).extra) - set(allowed))
        if extra:
            known = sorted(f for f in vars(getattr(cfg, section)) if f != "extra")
            raise ValueError(
                f"{path}: unknown key(s) {extra} in {section}:; known: {known + list(allowed)}"
            )
    check_hardware_profile(cfg.hardware.profile(), where=f"{path}: hardware")
    spec = MODELS.get(cfg.model.type)
    given = (raw or {}).get("model") or {}
    unused = sorted(set(given) - set(spec.reads) - set(spec.extra))
    if unused:
        raise ValueError(
            f"{path}: model key(s) {unused} are not read by model.type {cfg.model.type!r}; "
            f"it reads {sorted({*spec.reads, *spec.extra})}"
        )
    data = (raw or {}).get("data") or {}
    if "image_size" in data and cfg.data.name not in IMAGE_DATA:
        raise ValueError(
            f"{path}: data.image_size applies to images (data.name {', '.join(IMAGE_DATA)} or "
            f"--data_dir), not data.name={cfg.data.name!r}; remove it"
        )
    return cfg


def check_model_type(kind: str, where: Any = "config") -> None:
    """Raise ValueError unless ``kind`` is a registered model type."""
    if kind not in MODELS:
        raise ValueError(
            f"{where}: unknown model.type {kind!r}; known: {', '.join(MODELS.names())}"
        )


# ----------------------------------------------------------------------------- data
def _split(X: torch.Tensor, y: torch.Tensor, seed: int, val_fraction: float):
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"data.val_fraction={val_fraction} must be in (0, 1)")
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(len(X)))
    cut = int(len(X) * (1 - val_fraction))
    if cut < 1 or cut == len(X):
        raise ValueError(f"{len(X)} samples leave an empty split at val_fraction={val_fraction}")
    tr, va = idx[:cut], idx[cut:]
    return (X[tr], y[tr]), (X[va], y[va])


def load_data(name: str, seed: int = 0, val_fraction: float = 0.25,
              image_size: int | None = None):  # fmt: skip
    """Real data only: ``digits`` (sklearn's 8×8 digits as ``(1, 8, 8)`` images in [0, 1],
    bilinearly resized to ``image_size`` when given), ``basicmotions`` / ``gunpoint`` (aeon,
    flattened to vectors)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        X = torch.tensor(load_digits().images / 16.0, dtype=torch.float32).unsqueeze(1)
        y = load_digits().target
        if image_size is not None and image_size != 8:
            X = torch.nn.functional.interpolate(X, size=(image_size, image_size),
                                                mode="bilinear", align_corners=False)  # fmt: skip
            X = X.clamp(0.0, 1.0)
    elif name in ("basicmotions", "gunpoint"):
        from aeon.datasets import load_classification

        X, y = load_classification({"basicmotions": "BasicMotions", "gunpoint": "GunPoint"}[name])
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        X = (X - X.mean(0)) / (X.std(0) + 1e-8)
        y = np.unique(y, return_inverse=True)[1]
    else:
        raise ValueError(f"unknown data.name {name!r}; known: basicmotions, digits, gunpoint")
    X = torch.as_tensor(X, dtype=torch.float32)
    return _split(X, torch.as_tensor(y).long(), seed, val_fraction)


def load_image_folder(data_dir: str | Path, size: int = 32, seed: int = 0,
                      val_fraction: float = 0.25):  # fmt: skip
    """An ImageFolder-style directory (``DIR/<class>/<image>``) as ``(C, size, size)`` tensors in
    [0, 1] (grayscale when every image is, else RGB), split into train / validation.

    Returns:
        ``((x_train, y_train), (x_val, y_val)), class names``.
    """
    from PIL import Image

    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--data_dir {str(data_dir)!r} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = {c: sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
             for c in classes}  # fmt: skip
    classes = [c for c in classes if files[c]]
    if len(classes) < 2:
        raise ValueError(
            f"--data_dir {str(data_dir)!r} needs at least two class folders of images "
            f"(DIR/<class>/<image>{IMAGE_SUFFIXES[0]}); found {len(classes)}"
        )
    images, labels = [], []
    for k, c in enumerate(classes):
        for p in files[c]:
            with Image.open(p) as im:
                images.append(im.convert("RGB") if im.mode not in ("L", "1") else im.convert("L"))
            labels.append(k)
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    arr = np.stack([np.asarray(im.convert(mode).resize((size, size)), dtype=np.float32) / 255.0
                    for im in images])  # fmt: skip
    x = torch.from_numpy(arr).reshape(len(arr), size, size, -1).permute(0, 3, 1, 2).contiguous()
    return _split(x, torch.tensor(labels), seed, val_fraction), classes


# ----------------------------------------------------------------------------- run
def _device(gpu: int | None) -> torch.device:
    if gpu is None or gpu < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--gpu {gpu}: CUDA is not available (torch {torch.__version__}); omit --gpu (or "
            "pass --gpu -1) to train on the CPU"
        )
    if gpu >= torch.cuda.device_count():
        raise ValueError(f"--gpu {gpu}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(f"cuda:{gpu}")


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, default=float)
    os.replace(tmp, path)


def run(config: str | Path = DEFAULT_CONFIG, save_dir: str | Path | None = None,
        epochs: int | None = None, data_dir: str | Path | None = None,
        gpu: int | None = None) -> dict:  # fmt: skip
    """Train the config's model on its data; write checkpoints, history, the four-panel PNG and
    ``summary.json`` into ``save_dir`` (default ``results/experiments/<config name>``).

    Args:
        config: a bundled config name or a YAML path.
        save_dir: output folder (a run there before is resumed from ``last.pt``).
        epochs: overrides ``train.epochs``.
        data_dir: an ImageFolder-style directory; overrides ``data.name``.
        gpu: CUDA device index; None or negative: CPU.

    Returns:
        the training history.
    """
    cfg = load_config(config)
    device = _device(gpu)
    name = resolve_config(config).stem
    save = Path(save_dir) if save_dir is not None else Path("results") / "experiments" / name
    seed, frac = cfg.train.seed, cfg.data.val_fraction
    if data_dir is not None:
        size = int(cfg.data.extra.get("image_size", 32))
        ((xt, yt), (xv, yv)), classes = load_image_folder(data_dir, size, seed, frac)
        source = f"ImageFolder {data_dir} ({len(classes)} classes, {len(xt) + len(xv)} images)"
    else:
        size = cfg.data.extra.get("image_size")
        (xt, yt), (xv, yv) = load_data(cfg.data.name, seed, frac, size)
        classes, source = sorted(set(yt.tolist()) | set(yv.tolist())), f"data.name={cfg.data.name}"
        source += f" ({len(xt) + len(xv)} samples of shape {tuple(xt.shape[1:])})"
    spec = MODELS.get(cfg.model.type)
    if spec.images and xt.dim() != 4:
        raise ValueError(
            f"model.type {cfg.model.type!r} takes images (C, H, W), but {source} gives vectors "
            f"of shape {tuple(xt.shape[1:])}; use data.name: digits or --data_dir DIR"
        )
    torch.manual_seed(seed)
    model = spec.build(cfg, tuple(xt.shape[1:]), len(classes))
    bs = cfg.train.batch_size
    train = DataLoader(TensorDataset(xt, yt), batch_size=bs, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=bs)
    print(f"{name}: {cfg.model.type} on {source}, device {device}, writing into {save}/")
    trainer = Trainer(model, cfg, device=device, save_dir=save, resume=True)
    hist = trainer.train(train, val, num_epochs=epochs)
    plot_history(hist, save / "history.png")
    summary = {"config": str(resolve_config(config)), "data": source, "device": str(device),
               "model": cfg.model.type, "parameters": sum(p.numel() for p in model.parameters()),
               **{k: v[-1] for k, v in hist.items() if v},
               "dynamic_layers": _dynamic_summary(model, val, device)}  # fmt: skip
    _write_json(save / "summary.json", summary)
    return hist


@torch.no_grad()
def _dynamic_summary(model: nn.Module, loader: Any, device: torch.device) -> dict[str, Any]:
    """Per dynamic layer, over one inference pass of ``loader``: its rank range, the mean rank
    it planned, its mean energy (mJ per sample, its estimator's price) and the energy of the
    same layer dense (``nn.Linear`` / ``nn.Conv2d`` of the same shape, same estimator)."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, DynamicLowRankLayer)}
    if not layers:
        return {}
    ranks: dict[str, list[Tensor]] = {n: [] for n in layers}
    energy: dict[str, list[Tensor]] = {n: [] for n in layers}
    model.eval()
    for batch in loader:
        model(batch[0].to(device))
        for n, m in layers.items():
            ranks[n].append(m.last_ranks.float())
            energy[n].append(m.last_energy_mJ)
    out = {}
    for n, m in layers.items():
        positions = m.positions() if hasattr(m, "positions") else 1
        B = loader.batch_size
        dense = m.estimator.estimate_dense((m.in_features, m.out_features), B * positions)
        out[n] = {"type": type(m).__name__, "r_min": m.r_min, "r_max": m.r_max,
                  "blocks": len(m.ends), "mean_rank": float(torch.cat(ranks[n]).mean()),
                  "energy_mJ": float(torch.cat(energy[n]).mean()),
                  "dense_energy_mJ": dense["energy_mJ"] / B}  # fmt: skip
    return out


def _parser() -> argparse.ArgumentParser:
    bundled = ", ".join(bundled_configs())
    ap = argparse.ArgumentParser(
        prog="python -m braingate.experiments",
        description="Train an ADLRNS experiment from a YAML config.",
        epilog=f"bundled configs: {bundled}. Without a subcommand, `run` is meant: the seed's "
        "`run_exp.sh --config ... --data_dir ... --save_dir ... --gpu 0` flags work as written.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the bundled configs")
    r = sub.add_parser("run", help="train from a config", epilog=f"bundled configs: {bundled}")
    r.add_argument("config_pos", nargs="?", metavar="CONFIG", help="bundled name or YAML path")
    r.add_argument("--config", default=None, help=f"bundled name or YAML path "
                                                  f"(default {DEFAULT_CONFIG})")  # fmt: skip
    r.add_argument("--data_dir", "--data-dir", default=None,
                   help="ImageFolder-style directory (DIR/<class>/<image>) to train on")  # fmt: skip
    r.add_argument("--save_dir", "--save-dir", default=None,
                   help="output folder (default results/experiments/<config>)")  # fmt: skip
    r.add_argument("--gpu", type=int, default=None, help="CUDA device index (default: CPU)")
    r.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors print one line naming the fix and return 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "list", "-h", "--help"):
        argv = ["run", *argv]  # the seed's run_exp.sh flags, no subcommand
    args = _parser().parse_args(argv)
    if args.cmd == "list":
        import yaml

        for name, path in bundled_configs().items():
            kind = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("model", {})
            kind = kind.get("type", "dynamic_mlp") if isinstance(kind, dict) else "?"
            try:
                load_config(path)
                note = ""
            except ValueError as err:
                note = f"\n    refused: {str(err).split(': ', 1)[-1]}"
            print(f"{name:<16} model.type={kind:<14} {path}{note}")
        return 0
    if args.config_pos and args.config and args.config_pos != args.config:
        print("error: give the config once (CONFIG or --config)", file=sys.stderr)
        return 2
    config = args.config or args.config_pos or DEFAULT_CONFIG
    try:
        hist = run(config, args.save_dir, args.epochs, args.data_dir, args.gpu)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{'epoch':>5} {'val_acc':>8} {'energy_mJ':>11} {'avg_rank':>8}")
    for e, a, en, rk in zip(hist["epoch"], hist["val_acc"], hist["energy_mJ"], hist["avg_rank"]):
        print(f"{e:5d} {a:8.3f} {en:11.3e} {rk:8.1f}")
    return 0
