"""Files that last: atomic writes, Trainer checkpoints that resume exactly, all-or-nothing LoRA loads.

The Trainer runs on real data (sklearn digits) with every source of randomness a run has:
dropout (torch), a shuffling DataLoader (its own generator, or torch's global one) and input
noise drawn from numpy's and Python's global generators.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import braingate.lora as L
import braingate.train.trainer as trainer_mod
from braingate._files import atomic_write, atomic_write_bytes
from braingate.lora.io import CONFIG_NAME, WEIGHTS_NAME
from braingate.train import Trainer

# imported here, not inside a run: its first import draws from numpy's global generator
load_digits = pytest.importorskip("sklearn.datasets").load_digits

HERE = Path(__file__).resolve().parent
CFG = {"train": {"lr": 0.01, "epochs": 4, "progress": False}, "scheduler": {"type": "complexity"}}
EPOCHS = 4

# --- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_replaces_and_keeps_the_mode(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) & 0o044  # readable like a plain open() file
    target.chmod(0o640)
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old contents")

    def half_then_fail(f):
        f.write(b"new con")
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


# --- the Trainer on sklearn digits ------------------------------------------------------------


class NoisyDigits(Dataset):
    """sklearn digits scaled to [0, 1], with noise from numpy's and Python's global RNGs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        noise = np.random.normal(0.0, 0.05, size=64) + random.gauss(0.0, 0.01)  # noqa: NPY002
        return self.x[i] + torch.from_numpy(noise).float(), self.y[i]


def _digits():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    return NoisyDigits(x[:480], y[:480]), NoisyDigits(x[480:640], y[480:640])


def _scramble_rngs(seed: int) -> None:
    """What a fresh process (or other code) leaves in the global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    random.seed(seed)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))


def _loaders(loader_seed: int | None):
    train, val = _digits()
    gen = None if loader_seed is None else torch.Generator().manual_seed(loader_seed)
    return DataLoader(train, batch_size=64, shuffle=True, generator=gen), DataLoader(val, 80)


def _run(save_dir, epochs, *, resume=False, seed=0, loader_seed=1) -> Trainer:
    """One training process: seeds, model, loaders, Trainer, train() up to ``epochs``."""
    _scramble_rngs(seed)
    model = _model()
    tr, va = _loaders(loader_seed)
    trainer = Trainer(model, CFG, "cpu", save_dir=save_dir, resume=resume)
    trainer.train(tr, va, num_epochs=epochs)
    return trainer


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Weights after EPOCHS epochs without a stop, per loader kind (own generator / global)."""
    out = {}
    for loader_seed in (1, None):
        t = _run(tmp_path_factory.mktemp("full"), EPOCHS, loader_seed=loader_seed)
        assert (
            t.history["val_acc"][-1] > 0.5
        )  # it learns digits (chance 0.1): the comparison is not vacuous
        out[loader_seed] = _weights(t)
    return out


@pytest.mark.parametrize("loader_seed", [1, None], ids=["loader-generator", "global-generator"])
def test_resume_after_epoch_k_is_bit_identical(tmp_path, uninterrupted, loader_seed):
    _run(tmp_path, 2, loader_seed=loader_seed)  # "killed" after epoch 1 (epochs 0, 1 done)
    # the next process starts with other RNG states, another init and another loader seed
    again = _run(
        tmp_path, EPOCHS, resume=True, seed=99, loader_seed=None if loader_seed is None else 7
    )
    assert again.history["epoch"] == list(range(EPOCHS))
    assert _same(_weights(again), uninterrupted[loader_seed])


def test_without_rng_restore_the_resumed_run_differs(tmp_path, uninterrupted, monkeypatch):
    """The control for the test above: the RNG states are what makes the runs agree."""
    _run(tmp_path, 2)
    monkeypatch.setattr(trainer_mod, "_restore_rng", lambda rng, loaders: None)
    again = _run(tmp_path, EPOCHS, resume=True, seed=99, loader_seed=7)
    assert not _same(_weights(again), uninterrupted[1])


def test_kill_mid_save_keeps_the_previous_checkpoint(tmp_path, uninterrupted, monkeypatch):
    real_save = torch.save
    calls = {"last": 0}

    def save_half_then_die(obj, f, *a, **kw):
        if ".last.pt." in str(getattr(f, "name", "")):
            calls["last"] += 1
            if calls["last"] == 1:  # epoch 1's last.pt (epoch 0 was saved before patching)
                buf = io.BytesIO()
                real_save(obj, buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                raise OSError("killed during save (simulated)")
        return real_save(obj, f, *a, **kw)

    _scramble_rngs(0)
    model = _model()
    tr, va = _loaders(1)
    trainer = Trainer(model, CFG, "cpu", save_dir=tmp_path)
    trainer.train(tr, va, num_epochs=1)
    after_epoch0 = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(OSError, match="simulated"):
        trainer.train(tr, va, num_epochs=EPOCHS)
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == after_epoch0
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    again = _run(tmp_path, EPOCHS, resume=True, seed=5, loader_seed=3)
    assert again.history["epoch"] == list(range(EPOCHS))
    assert _same(_weights(again), uninterrupted[1])


def _cli() -> None:
    """Subprocess entry: ``save_dir epochs resume kill_on_last_save`` (0 = never)."""
    torch.set_num_threads(1)  # as the test process (conftest)
    save_dir, epochs, resume, kill_at = (
        sys.argv[1],
        int(sys.argv[2]),
        sys.argv[3] == "1",
        int(sys.argv[4]),
    )
    real_save, n = torch.save, [0]

    def save(obj, f, *a, **kw):
        if ".last.pt." in str(getattr(f, "name", "")):
            n[0] += 1
            if n[0] == kill_at:
                buf = io.BytesIO()
                real_save(obj, buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *a, **kw)

    torch.save = save
    t = _run(
        save_dir, epochs, resume=resume, seed=42 if resume else 0, loader_seed=11 if resume else 1
    )
    torch.save = real_save
    torch.save(_weights(t), Path(save_dir) / "final_weights.pt")


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_files_that_last as m; m._cli()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # two fresh interpreters importing torch and sklearn: ~10 s on 2 cores
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_real_sigkill_during_save_then_resume_in_a_new_process(tmp_path, uninterrupted):
    killed = _subprocess(str(tmp_path), str(EPOCHS), "0", "3")  # dies writing epoch 2's last.pt
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list(tmp_path.glob(".last.pt.*.tmp"))  # the half-written temporary file stays behind
    state = torch.load(tmp_path / "last.pt", weights_only=False)
    assert state["epoch"] == 1  # the previous checkpoint, whole
    resumed = _subprocess(str(tmp_path), str(EPOCHS), "1", "0")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(tmp_path / "final_weights.pt")
    assert _same(final, uninterrupted[1])
    assert not list(tmp_path.glob(".last.pt.*.tmp"))  # the next save cleared the leftover


# --- resume errors name the file and change nothing -------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """A directory with a real 1-epoch checkpoint, and its bytes."""
    _run(tmp_path, 1)
    return tmp_path, (tmp_path / "last.pt").read_bytes()


def _bad_files():
    def truncated(good):
        return good[: len(good) // 2]

    def empty(good):
        return b""

    def garbage(good):
        return b"this is not a checkpoint" * 50

    def a_list(good):
        buf = io.BytesIO()
        torch.save([1, 2, 3], buf)
        return buf.getvalue()

    def missing_keys(good):
        buf = io.BytesIO()
        torch.save({"model": {}, "epoch": 3}, buf)
        return buf.getvalue()

    def bad_epoch(good):
        state = torch.load(io.BytesIO(good), weights_only=False)
        state["epoch"] = -4
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    def bad_rng(good):
        state = torch.load(io.BytesIO(good), weights_only=False)
        state["rng"] = {"torch": "nope"}
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    return {
        "truncated": (truncated, r"last\.pt .*truncated or not a torch checkpoint"),
        "empty": (empty, r"last\.pt \(0 bytes\) cannot be read"),
        "garbage": (garbage, r"last\.pt .*cannot be read"),
        "a-list": (a_list, r"last\.pt holds a list, not a Trainer checkpoint"),
        "missing-keys": (missing_keys, r"last\.pt is not a Trainer checkpoint: missing keys"),
        "bad-epoch": (bad_epoch, r"last\.pt: field 'epoch'=-4"),
        "bad-rng": (bad_rng, r"last\.pt: field 'rng' is malformed"),
    }


@pytest.mark.parametrize("case", list(_bad_files()))
def test_resume_from_a_bad_file_names_it_and_changes_nothing(saved, case):
    directory, good = saved
    make, match = _bad_files()[case]
    (directory / "last.pt").write_bytes(make(good))
    _scramble_rngs(3)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        Trainer(model, CFG, "cpu", save_dir=directory, resume=True)
    assert _same(model.state_dict(), before)


def test_checkpoint_for_another_model_is_refused(saved):
    directory, _ = saved
    model = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 10))
    with pytest.raises(ValueError, match=r"last\.pt does not fit this model: .*shape mismatches"):
        Trainer(model, CFG, "cpu", save_dir=directory, resume=True)


def test_failed_optimizer_load_rolls_the_model_back(saved):
    directory, good = saved
    state = torch.load(io.BytesIO(good), weights_only=False)
    state["optimizer"]["param_groups"][0]["params"] = [0]  # 1 of 4 parameters: does not fit
    torch.save(state, directory / "other.pt")
    trainer = _run(directory / "fresh", 1, seed=8)
    model_before = _weights(trainer)
    optim_before = trainer.optimizer.state_dict()
    before = (trainer.start_epoch, trainer.best_val, json.dumps(trainer.history))
    with pytest.raises(ValueError, match=r"other\.pt does not fit this model/optimizer"):
        trainer.load_checkpoint(directory / "other.pt")
    assert _same(_weights(trainer), model_before)
    after = trainer.optimizer.state_dict()
    assert after["param_groups"] == optim_before["param_groups"]
    for k, v in optim_before["state"].items():
        assert all(torch.equal(v[s], after["state"][k][s]) for s in v)
    assert (trainer.start_epoch, trainer.best_val, json.dumps(trainer.history)) == before


def test_missing_checkpoint_names_the_file(tmp_path):
    trainer = Trainer(_model(), CFG, "cpu", save_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt does not exist"):
        trainer.load_checkpoint(tmp_path / "nowhere.pt")


def test_old_checkpoint_without_rng_loads_with_a_warning(saved):
    directory, good = saved
    state = torch.load(io.BytesIO(good), weights_only=False)
    del state["rng"], state["format"]
    torch.save(state, directory / "last.pt")
    with pytest.warns(UserWarning, match="no RNG states"):
        t = Trainer(_model(), CFG, "cpu", save_dir=directory, resume=True)
    assert t.start_epoch == 1


def test_loaders_without_the_saved_generator_warn(saved):
    directory, _ = saved
    t = Trainer(_model(), CFG, "cpu", save_dir=directory, resume=True)
    tr, va = _loaders(None)  # the checkpoint has the state of one loader generator
    with pytest.warns(UserWarning, match="shuffle order after resuming will not match"):
        t.train(tr, va, num_epochs=2)


# --- LoRA adapters: atomic saves, all-or-nothing loads ----------------------------------------


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.encoder(x))


def _adapted(rank=2, variant=None, name="default"):
    torch.manual_seed(0)
    model = L.LoRAModel(Net(), L.LoRAConfig(rank=rank, variant=variant), adapter_name=name)
    with torch.no_grad():
        for p in model.get_trainable_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def _fingerprint(model: nn.Module):
    """Everything a load could leave behind: modules, tensors, flags, adapter bookkeeping."""
    return (
        [(n, type(m).__name__, id(m)) for n, m in model.named_modules()],
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        [(n, p.requires_grad, id(p)) for n, p in model.named_parameters()],
        sorted(getattr(model, "peft_config", {})),
        list(getattr(model, "active_adapters", [])),
        model.training,
    )


def _same_fingerprint(a, b) -> bool:
    return a[0] == b[0] and _same(a[1], b[1]) and a[2:] == b[2:]


def _fresh_base():
    torch.manual_seed(1)
    return Net()


@pytest.fixture
def adapter_dir(tmp_path):
    _adapted().save_adapter(tmp_path)
    return tmp_path


def test_round_trip_still_exact(adapter_dir):
    x = torch.randn(4, 6)
    torch.manual_seed(0)
    src = _adapted()
    loaded = L.load_adapter(_fresh_base(), adapter_dir)
    sd_src = L.adapter_state_dict(src, "default")
    sd_new = L.adapter_state_dict(loaded, "default")
    assert _same(sd_src, sd_new)
    with torch.no_grad():
        src.base_model.load_state_dict({k: v for k, v in loaded.base_model.state_dict().items()})
        assert torch.equal(src(x), loaded(x))


def _corrupt_weights(directory: Path, how: str) -> None:
    path = directory / WEIGHTS_NAME
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(good)))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "nan":
        import safetensors.torch as st

        tensors = st.load(good)
        key = sorted(tensors)[0]
        tensors[key] = torch.full_like(tensors[key], float("nan"))
        path.write_bytes(st.save(tensors))
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize(
    ("how", "error", "match"),
    [
        ("truncated", ValueError, "adapter_model.safetensors .*truncated or not a safetensors"),
        ("garbage", ValueError, "adapter_model.safetensors .*cannot be read"),
        ("empty", ValueError, r"adapter_model.safetensors \(0 bytes\) cannot be read"),
        ("nan", ValueError, "holds NaN or inf; the adapter is corrupt"),
        ("missing", FileNotFoundError, "adapter_model.safetensors not found"),
    ],
)
def test_bad_weights_file_leaves_the_model_untouched(adapter_dir, how, error, match):
    _corrupt_weights(adapter_dir, how)
    base = _fresh_base()
    before = _fingerprint(base)
    with pytest.raises(error, match=match):
        L.load_adapter(base, adapter_dir)
    assert _same_fingerprint(_fingerprint(base), before)
    existing = _adapted(name="a")
    before = _fingerprint(existing)
    with pytest.raises(error, match=match):
        existing.load_adapter(adapter_dir, "b")
    assert _same_fingerprint(_fingerprint(existing), before)


def test_wrong_shapes_roll_back_injected_wrappers(adapter_dir):
    cfg_path = adapter_dir / CONFIG_NAME
    raw = json.loads(cfg_path.read_text())
    raw["r"] = 3  # the wrappers are built with rank 3; the file holds rank-2 tensors
    cfg_path.write_text(json.dumps(raw))
    base = _fresh_base()
    before = _fingerprint(base)
    with pytest.raises(ValueError, match=r"adapter_model.safetensors does not fit the model"):
        L.load_adapter(base, adapter_dir)
    assert _same_fingerprint(_fingerprint(base), before)
    assert not any(isinstance(m, L.LoRAModel) or "LoRA" in type(m).__name__ for m in base.modules())
    x = torch.randn(2, 6)
    with torch.no_grad():
        assert torch.equal(base(x), _fresh_base()(x))


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_any_exception_after_injection_rolls_back(adapter_dir, monkeypatch, exc):
    import braingate.lora.io as lio

    real = lio._load_tensors

    def load_then_fail(*a, **kw):
        real(*a, **kw)  # every tensor copied, then the interruption
        raise exc

    monkeypatch.setattr(lio, "_load_tensors", load_then_fail)
    base = _fresh_base()
    before = _fingerprint(base)
    with pytest.raises(type(exc)):
        L.load_adapter(base, adapter_dir)
    assert _same_fingerprint(_fingerprint(base), before)
    existing = _adapted(name="a")
    existing.eval()
    before = _fingerprint(existing)
    with pytest.raises(type(exc)):
        existing.load_adapter(adapter_dir, "b")
    assert _same_fingerprint(_fingerprint(existing), before)
    monkeypatch.undo()
    existing.load_adapter(adapter_dir, "b")  # and the model is still usable
    assert sorted(existing.peft_config) == ["a", "b"]


def _config_cases():
    return {
        "not-json": ("{r: 2,", r"adapter_config.json is not valid JSON"),
        "a-list": ([1, 2], r"adapter_config.json holds a JSON list"),
        "no-r": ({"lora_alpha": 8}, r"adapter_config.json: field 'r' is missing"),
        "r-string": ({"r": "two"}, r"field 'r' is invalid: rank='two'"),
        "r-negative": ({"r": -2}, r"field 'r' is invalid: rank=-2 must be a positive int"),
        "alpha-nan": ({"lora_alpha": float("nan")}, r"field 'lora_alpha' is nan"),
        "alpha-inf": ({"lora_alpha": float("inf")}, r"field 'lora_alpha' is inf"),
        "alpha-zero": ({"lora_alpha": 0}, r"field 'lora_alpha' is invalid"),
        "dropout": ({"lora_dropout": 1.5}, r"field 'lora_dropout' is invalid: dropout=1.5"),
        "targets": ({"target_modules": 5}, r"field 'target_modules' is invalid"),
        "rslora": ({"use_rslora": "yes"}, r"field 'use_rslora' is invalid"),
        "rank-pattern": ({"rank_pattern": {"head": 0}}, r"field 'rank_pattern' is invalid"),
        "use-dora": ({"use_dora": "maybe"}, r"field 'use_dora'='maybe' must be true or false"),
        "peft-type": ({"peft_type": "IA3"}, r"field 'peft_type'='IA3' is not supported"),
        "bias": ({"bias": "all"}, r"field 'bias'='all' is not supported"),
        "variant-shape": ({"braingate_variant": "dora"}, r"field 'braingate_variant' must be"),
        "variant-name": (
            {"braingate_variant": {"name": "nope", "config": {}}},
            r"field 'braingate_variant.name' unknown LoRA variant 'nope'; known variants: ",
        ),
        "variant-config": (
            {"braingate_variant": {"name": "sparse", "config": {"sparsity": 7}}},
            r"field 'braingate_variant.config' is invalid",
        ),
        "variant-config-key": (
            {"braingate_variant": {"name": "sparse", "config": {"bogus": 1}}},
            r"field 'braingate_variant.config' is invalid: .*bogus",
        ),
    }


@pytest.mark.parametrize("case", list(_config_cases()))
def test_malformed_config_names_file_and_field(adapter_dir, case):
    change, match = _config_cases()[case]
    cfg_path = adapter_dir / CONFIG_NAME
    if isinstance(change, dict):
        raw = json.loads(cfg_path.read_text())
        if case == "no-r":
            del raw["r"]
        raw.update(change)
        cfg_path.write_text(json.dumps(raw))
    else:
        cfg_path.write_text(change if isinstance(change, str) else json.dumps(change))
    base = _fresh_base()
    before = _fingerprint(base)
    with pytest.raises(ValueError, match=match):
        L.load_adapter(base, adapter_dir)
    assert _same_fingerprint(_fingerprint(base), before)


def test_adapter_save_is_atomic(adapter_dir, monkeypatch):
    before = {p.name: p.read_bytes() for p in adapter_dir.iterdir()}
    other = _adapted(rank=4)

    def fsync_fails(fd):
        raise OSError("I/O error while syncing (simulated)")

    monkeypatch.setattr(os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="simulated"):
        other.save_adapter(adapter_dir)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in adapter_dir.iterdir()} == before
    L.load_adapter(_fresh_base(), adapter_dir)  # still the old, whole adapter
