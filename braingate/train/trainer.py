"""``Trainer``: task loss + energy penalty, checkpoints and resume, history as JSON/CSV.

Checkpoints (``last.pt``, ``best.pt``) are written atomically (temporary file, fsync,
``os.replace``): a run killed while saving keeps the previous checkpoint. They carry the RNG
states (torch, numpy, Python ``random``, and the generators of the data loaders), so a run
killed after epoch k and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from braingate._files import atomic_write, atomic_write_text
from braingate.energy.estimator import PerfEstimator
from braingate.scheduling.base import RankScheduler
from braingate.train.config import ExperimentConfig
from braingate.train.regularizers import model_energy_penalty

__all__ = ["CHECKPOINT_FORMAT", "ADLRNSTrainer", "Trainer"]

CHECKPOINT_FORMAT = "braingate.trainer/2"  # /1 (unmarked): no RNG states
_REQUIRED_KEYS = ("model", "optimizer", "epoch", "best_val", "history")

HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "energy_mJ",
    "avg_rank",
    "penalty",
    "time_s",
)


def _dynamic_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "last_soft_rank") and hasattr(m, "plan")]


_PLAIN = (dict, list, tuple, set, deque, int, float, bool, str, type(None), Tensor)


def _scheduler_states(layers: list[nn.Module]) -> list[tuple[Any, dict[str, Any], set[str]]]:
    """Copies of the plain state (numbers, containers, tensors) of the layers' schedulers and
    their budget managers, so a measurement that runs them can put everything back in place
    (object identities kept: a manager shared by layers, or held by the user, stays the same
    object)."""
    objs: list[Any] = []
    for layer in layers:
        sched = getattr(layer, "_scheduler", None)
        for obj in (sched, getattr(sched, "manager", None)):
            if obj is not None and hasattr(obj, "__dict__") and not isinstance(obj, nn.Module):
                if all(obj is not o for o in objs):
                    objs.append(obj)
    return [(o, {k: copy.deepcopy(v) for k, v in vars(o).items() if isinstance(v, _PLAIN)},
             set(vars(o))) for o in objs]  # fmt: skip


def _saving(layer: nn.Module, batch: int) -> float:
    """Energy per sample (mJ) a layer saves from ``r_max`` to its lowest block end."""
    table = layer.energy_table(batch)
    return float(table[-1] - table[0])


def _restore_states(states: list[tuple[Any, dict[str, Any], set[str]]]) -> None:
    for obj, plain, keys in states:
        for k in set(vars(obj)) - keys:
            delattr(obj, k)
        vars(obj).update(plain)


def _loader_generators(loaders: tuple[Any, ...]) -> list[torch.Generator]:
    """The distinct ``torch.Generator`` objects the loaders draw from (shuffle order, seeds)."""
    found: list[torch.Generator] = []
    for loader in loaders:
        if loader is None:
            continue
        batch_sampler = getattr(loader, "batch_sampler", None)
        holders = (
            loader,
            getattr(loader, "sampler", None),
            getattr(batch_sampler, "sampler", None),
        )
        for holder in holders:
            gen = getattr(holder, "generator", None)
            if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
                found.append(gen)
    return found


def _capture_rng(loaders: tuple[Any, ...]) -> dict[str, Any]:
    """Every RNG state a training epoch draws from, as plain tensors / tuples."""
    # numpy's global (legacy) generator is what user code seeded with np.random.seed draws from
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
        "loaders": [g.get_state() for g in _loader_generators(loaders)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _check_rng(rng: Any, path: Path) -> None:
    ok = (
        isinstance(rng, dict)
        and isinstance(rng.get("torch"), Tensor)
        and isinstance(rng.get("numpy"), tuple)
        and len(rng["numpy"]) == 5
        and isinstance(rng.get("python"), tuple)
        and isinstance(rng.get("loaders"), list)
        and all(isinstance(s, Tensor) for s in rng["loaders"])
    )
    if not ok:
        raise ValueError(
            f"checkpoint {path}: field 'rng' is malformed (expected torch / numpy / python / "
            "loaders states); the file was not written by this Trainer"
        )


def _restore_rng(rng: dict[str, Any], loaders: tuple[Any, ...]) -> None:
    gens = _loader_generators(loaders)
    if len(gens) != len(rng["loaders"]):
        warnings.warn(
            f"the checkpoint holds {len(rng['loaders'])} data-loader generator state(s) but the "
            f"loaders given to train() have {len(gens)}: the shuffle order after resuming will "
            "not match the interrupted run (build the loaders as before, e.g. "
            "DataLoader(..., generator=torch.Generator().manual_seed(s)))",
            stacklevel=3,
        )
    torch.set_rng_state(rng["torch"])
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))  # noqa: NPY002
    random.setstate(rng["python"])
    for gen, state in zip(gens, rng["loaders"]):
        gen.set_state(state)
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class Trainer:
    """Train a model with dynamic low-rank layers on the ADLRNS objective.

    .. math::
        \\min \\frac1N \\sum_i \\mathcal L(f(x_i), y_i) + \\lambda\\,\\mathcal E, \\quad
        \\mathcal E = \\alpha \\tfrac{\\mathrm{FLOPs}(r)}{\\mathrm{FLOPs}_{full}} + \\beta \\tfrac{\\mathrm{Mem}(r)}{\\mathrm{Mem}_{full}}

    The config (dict in the ADLRNS YAML schema, or :class:`ExperimentConfig`) sets the
    optimiser (``train``), the scheduler of every dynamic layer (``scheduler``: type, alpha,
    beta, ``energy_budget_mJ_per_sample`` as the layers' default budget) and their estimator
    (``hardware``, when given). After every training epoch it calibrates the layers' rank
    floors (:meth:`calibrate_rank_floors`; ``train.calibrate_ranks``, ``rank_tolerance``,
    ``calibration_samples``), so inference keeps the accuracy of ``r_max`` within the
    tolerance whatever the scheduler plans.

    Args:
        model: outputs logits (or a tuple whose first item is the logits).
        config: dict or ExperimentConfig.
        device: torch device (default CPU).
        save_dir: where ``last.pt``, ``best.pt``, ``history.json`` and ``history.csv`` go.
        resume: continue from ``save_dir/last.pt`` when it exists. The RNG states saved in it
            are restored when :meth:`train` starts, so pass loaders built as in the first run
            (same ``generator=`` if any).

    Raises:
        ValueError: on resume, when ``last.pt`` is truncated, not a checkpoint, or does not fit
            the model; the message names the file, and the trainer and model are unchanged.
    """

    def __init__(self, model: nn.Module, config: Any = None, device: Any = None,
                 save_dir: str | Path = "./checkpoints", resume: bool = False) -> None:  # fmt: skip
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(save_dir, (str, Path)):
            raise TypeError(f"save_dir={save_dir!r} must be a path (str or pathlib.Path)")
        if not isinstance(resume, bool):
            raise TypeError(f"resume={resume!r} must be True or False")
        self.config = (
            config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
        )
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = model.to(self.device)
        self.save_dir = Path(save_dir)
        tc = self.config.train
        torch.manual_seed(tc.seed)
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self._configure_layers()
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.start_epoch = 0
        self.best_val = -float("inf")
        self._loaders: tuple[Any, ...] = ()
        self._pending_rng: dict[str, Any] | None = None
        if resume and (self.save_dir / "last.pt").exists():
            self.load_checkpoint(self.save_dir / "last.pt")

    def _configure_layers(self) -> None:
        sc, hw = self.config.scheduler, self.config.hardware.profile()
        for layer in _dynamic_layers(self.model):
            kw = {"r_min": layer.r_min, "r_max": layer.r_max, "alpha": sc.alpha, "beta": sc.beta}
            if sc.type in ("fixed", "complexity"):
                kw.pop("alpha"), kw.pop("beta")
            if sc.type == "budget":
                if sc.energy_budget_mJ_per_sample is None:
                    raise ValueError(
                        "scheduler.type 'budget' needs scheduler.energy_budget_mJ_per_sample"
                    )
                kw["target_mJ"] = sc.energy_budget_mJ_per_sample
            layer.scheduler = RankScheduler(sc.type, **kw)
            if sc.type != "budget":
                layer.budget = sc.energy_budget_mJ_per_sample
            if hw:
                layer.estimator = PerfEstimator(hw)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path, epoch: int) -> None:
        """Model, optimizer, epoch, best score, history and RNG states, written atomically.

        The RNG states are those of this moment (and of the loaders of the current
        :meth:`train` call), so resuming from the file continues the same random stream.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": int(epoch),
            "best_val": self.best_val,
            "history": self.history,
            "config": self.config.to_dict(),
            "rng": _capture_rng(self._loaders),
        }
        atomic_write(path, lambda f: torch.save(state, f))
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a run killed mid-save
            stale.unlink(missing_ok=True)

    def _read_checkpoint(self, path: Path) -> dict[str, Any]:
        """Read and check a checkpoint without touching the trainer; errors name the file."""
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        size = path.stat().st_size
        try:
            state = torch.load(path, map_location=self.device, weights_only=False)
        except Exception as err:
            raise ValueError(
                f"checkpoint {path} ({size} bytes) cannot be read: it is truncated or not a "
                f"torch checkpoint ({type(err).__name__}: {err}). Delete it to start over, or "
                "resume from best.pt"
            ) from err
        if not isinstance(state, dict):
            raise ValueError(
                f"checkpoint {path} holds a {type(state).__name__}, not a Trainer checkpoint "
                f"(a dict with keys {list(_REQUIRED_KEYS)})"
            )
        missing = [k for k in _REQUIRED_KEYS if k not in state]
        if missing:
            raise ValueError(
                f"checkpoint {path} is not a Trainer checkpoint: missing keys {missing} "
                f"(it has {sorted(map(str, state))[:8]})"
            )
        epoch = state["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"checkpoint {path}: field 'epoch'={epoch!r} is not an int >= 0")
        history = state["history"]
        if not isinstance(history, dict) or any(k not in history for k in HISTORY_KEYS):
            raise ValueError(f"checkpoint {path}: field 'history' lacks keys {list(HISTORY_KEYS)}")
        if "rng" in state:
            _check_rng(state["rng"], path)
        own = self.model.state_dict()
        theirs = state["model"]
        if not isinstance(theirs, dict):
            raise ValueError(f"checkpoint {path}: field 'model' is not a state dict")
        bad = [k for k in own if k not in theirs]
        extra = [k for k in theirs if k not in own]
        shapes = [
            f"{k}: file {tuple(theirs[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items()
            if isinstance(v, Tensor) and isinstance(theirs.get(k), Tensor)
            if theirs[k].shape != v.shape
        ]
        if bad or extra or shapes:
            raise ValueError(
                f"checkpoint {path} does not fit this model: missing {bad[:5]}, unexpected "
                f"{extra[:5]}, shape mismatches {shapes[:5]}; build the model as in the saved run"
            )
        return state

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote; training resumes at the next epoch.

        All or nothing: if the file is unreadable, not a checkpoint, or does not fit the model
        or optimizer, a ``ValueError`` names the file and the model, optimizer and trainer are
        left as they were. The RNG states are applied when :meth:`train` next starts.
        """
        path = Path(path)
        state = self._read_checkpoint(path)
        model_before = {
            k: v.clone() if isinstance(v, Tensor) else copy.deepcopy(v)
            for k, v in self.model.state_dict().items()
        }
        optim_before = copy.deepcopy(self.optimizer.state_dict())
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except Exception as err:
            self.model.load_state_dict(model_before)
            self.optimizer.load_state_dict(optim_before)
            raise ValueError(
                f"checkpoint {path} does not fit this model/optimizer ({type(err).__name__}: "
                f"{err}); nothing was loaded"
            ) from err
        if "rng" not in state:
            warnings.warn(
                f"checkpoint {path} has no RNG states (written by an older braingate): the "
                "resumed run will not repeat the interrupted one exactly",
                stacklevel=2,
            )
        self._pending_rng = state.get("rng")
        self.start_epoch = state["epoch"] + 1
        self.best_val = state["best_val"]
        self.history = {k: list(state["history"][k]) for k in HISTORY_KEYS}

    def _write_history(self) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.save_dir / "history.json", json.dumps(self.history, indent=1))
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(HISTORY_KEYS)
        w.writerows(zip(*(self.history[k] for k in HISTORY_KEYS)))
        atomic_write_text(self.save_dir / "history.csv", buf.getvalue())

    # -- loops ----------------------------------------------------------------------------------
    def _batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        x, y = batch[0], batch[1]
        return x.to(self.device), y.to(self.device)

    def _forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def _layer_stats(self) -> tuple[float, float]:
        layers = [m for m in _dynamic_layers(self.model) if m.last_ranks is not None]
        energy = sum(float(m.last_energy_mJ.mean()) for m in layers)
        rank = sum(float(m.last_ranks.float().mean()) for m in layers) / max(len(layers), 1)
        return energy, rank

    def run_epoch(self, loader: Any, train: bool) -> dict[str, float]:
        """One pass; returns mean loss, accuracy, penalty, energy (mJ/sample) and rank."""
        tc = self.config.train
        self.model.train(train)
        tot = {"loss": 0.0, "correct": 0.0, "n": 0, "penalty": 0.0, "energy": 0.0, "rank": 0.0}
        bar = loader
        if train and tc.progress:
            from tqdm.auto import tqdm

            bar = tqdm(loader, desc="train", leave=False)
        keep = tc.calibration_samples if train and tc.calibrate_ranks else 0
        held: list[tuple[Tensor, Tensor]] = []
        with torch.set_grad_enabled(train):
            for batch in bar:
                x, y = self._batch(batch)
                if keep > 0:  # the epoch's first samples, for calibrate_rank_floors
                    held.append((x[:keep].detach(), y[:keep].detach()))
                    keep -= len(held[-1][1])
                logits = self._forward(x)
                loss = nn.functional.cross_entropy(logits, y)
                penalty = model_energy_penalty(self.model, tc.penalty_alpha, tc.penalty_beta)
                if train:
                    self.optimizer.zero_grad()
                    (loss + tc.energy_penalty_weight * penalty).backward()
                    if tc.grad_clip > 0:
                        nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
                    self.optimizer.step()
                b = len(y)
                energy, rank = self._layer_stats()
                tot["n"] += b
                tot["loss"] += float(loss.detach()) * b
                tot["correct"] += float((logits.argmax(-1) == y).sum())
                tot["penalty"] += float(penalty.detach()) * b
                tot["energy"] += energy * b
                tot["rank"] += rank * b
        if held:
            self.calibrate_rank_floors(torch.cat([h[0] for h in held]),
                                       torch.cat([h[1] for h in held]))  # fmt: skip
            self.model.train(train)
        n = max(tot["n"], 1)
        return {"loss": tot["loss"] / n, "acc": tot["correct"] / n, "penalty": tot["penalty"] / n,
                "energy": tot["energy"] / n, "rank": tot["rank"] / n}  # fmt: skip

    @torch.no_grad()
    def calibrate_rank_floors(self, x: Tensor, y: Tensor) -> dict[str, int | None]:
        """Set each dynamic layer's ``rank_floor`` from measured accuracy on ``(x, y)``.

        The reference is the model with every dynamic layer at ``r_max``. If the model at its
        schedulers' planned ranks stays within ``train.rank_tolerance`` points of it, no layer
        gets a floor. Otherwise the floors are lowered greedily, one layer at a time, the layer
        with the most energy to save (``r_max`` against its lowest block end) first: each gets
        the lowest block end at which the model (layers done at their floors, the rest at
        ``r_max``, schedulers planning above the floors) stays within the tolerance, so all
        floors together cost at most the tolerance on these samples. (Measured on the seed's
        ``adlrns_resnet``, lr 3e-3, 4 epochs, 3 seeds: 94.4 % at 0.52x the convs' dense
        energy in this order, 93.5 % at 0.55x in model order.)

        Why: the schedulers weigh singular-value mass against energy, which says nothing
        about how much accuracy a truncation costs on the task at hand (the ADLRNS seed's
        ``energy_aware`` alpha 1 put BasicMotions windows at rank 4-12 and cost 7 points,
        while sklearn digits held its accuracy there; benchmarks/adaptive_rank_accuracy.py).
        The samples are the epoch's first training samples, so held-in accuracy understates
        the drop on unseen data, hence a default of 0.5 point. The schedulers' (and budget
        managers') state is put back afterwards: these passes are not spending.

        Returns: ``{layer name: floor}`` (None: no floor).
        """
        dyn = _dynamic_layers(self.model)
        named = [(n, m) for n, m in self.model.named_modules()
                 if any(m is d for d in dyn) and hasattr(m, "rank_floor")]  # fmt: skip
        floors: dict[str, int | None] = {n: None for n, _ in named}
        layers = [(n, m) for n, m in named if len(m.ends) > 1]
        if not layers:
            return floors
        was = self.model.training
        self.model.eval()
        x, y = x.to(self.device), y.to(self.device)
        tol = self.config.train.rank_tolerance / 100.0

        def acc() -> float:
            return float((self._forward(x).argmax(-1) == y).float().mean())

        before = {n: m.rank_floor for n, m in layers}
        states = _scheduler_states([m for _, m in layers])
        try:
            for _, m in layers:
                m.force_rank = m.r_max
            ref = acc()
            for _, m in layers:
                m.force_rank, m.rank_floor = None, None
            if acc() < ref - tol - 1e-12:  # the plans cost too much: floors, greedily
                for _, m in layers:
                    m.rank_floor = m.r_max
                for name, m in sorted(layers, key=lambda nm: -_saving(nm[1], len(y))):
                    for r in m.ends.tolist():
                        m.rank_floor = int(r)
                        if r == m.r_max or acc() >= ref - tol - 1e-12:
                            floors[name] = int(r)
                            break
                    m.rank_floor = floors[name]
        except BaseException:
            for n, m in layers:
                m.rank_floor = before[n]
            raise
        finally:
            for _, m in layers:
                m.force_rank = None
            _restore_states(states)  # closed-loop schedulers do not count these passes
            self.model.train(was)
        for name, m in layers:
            m.rank_floor = floors[name]
        return floors

    def train(
        self, train_loader: Any, val_loader: Any = None, num_epochs: int | None = None
    ) -> dict[str, list[float]]:
        """Train for ``num_epochs`` (default ``train.epochs``) from ``start_epoch``; returns the history."""
        epochs = self.config.train.epochs if num_epochs is None else num_epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"num_epochs={num_epochs!r} must be an int >= 0; pass e.g. 10")
        self._loaders = (train_loader, val_loader)
        if self._pending_rng is not None and self.start_epoch < epochs:
            _restore_rng(self._pending_rng, self._loaders)
            self._pending_rng = None
        for epoch in range(self.start_epoch, epochs):
            t0 = time.perf_counter()
            tr = self.run_epoch(train_loader, train=True)
            va = self.run_epoch(val_loader, train=False) if val_loader is not None else tr
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": va["loss"],
                   "val_acc": va["acc"], "energy_mJ": va["energy"], "avg_rank": va["rank"],
                   "penalty": tr["penalty"], "time_s": time.perf_counter() - t0}  # fmt: skip
            for k in HISTORY_KEYS:
                self.history[k].append(row[k])
            if va["acc"] > self.best_val:
                self.best_val = va["acc"]
                self.save_checkpoint(self.save_dir / "best.pt", epoch)
            self.save_checkpoint(self.save_dir / "last.pt", epoch)
            self._write_history()
        self.start_epoch = max(self.start_epoch, epochs)
        return self.history


ADLRNSTrainer = Trainer
