"""The experiments CLI: the seed's flags, bundled configs by name, clear errors, hardware keys."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import yaml

from braingate.energy import PerfEstimator
from braingate.experiments import bundled_configs, load_config, main, run


def test_bundled_configs_are_listed_by_name(capsys):
    assert {"digits_dense", "digits_dynamic", "exp_config", "resnet_dense"} <= set(
        bundled_configs()
    )
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "digits_dynamic" in out and "exp_config" in out and "adlrns_resnet" in out
    assert "refused" not in out  # every bundled config loads
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    assert "bundled configs: digits_dense, digits_dynamic, exp_config, resnet_dense" in out


def test_seed_exp_config_runs_as_written(capsys, tmp_path):
    """The seed's exp_config.yaml as written (model.type adlrns_resnet, its r_min / r_max /
    scorer / gate blocks, lr, energy weight, scheduler and hardware keys) with the seed's
    run_exp.sh flags, for one epoch on the shipped digits."""
    cfg = load_config("exp_config")
    assert cfg.model.type == "adlrns_resnet" and cfg.train.epochs == 100
    est = PerfEstimator(cfg.hardware.profile())
    assert est.peak_flops == pytest.approx(15.7e12)  # gpu_type: V100
    assert est.energy_per_flop_mJ == pytest.approx(1e-6) and est.flops_per_mac == 2
    out = tmp_path / "out"
    argv = ["--config", "exp_config", "--save_dir", str(out), "--epochs", "1"]
    if torch.cuda.is_available():
        argv += ["--gpu", "0"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the seed's 5 mJ budget never binds
        assert main(argv) == 0
    assert "adlrns_resnet on data.name=digits" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "adlrns_resnet" and "(1, 8, 8)" in summary["data"]
    layers = summary["dynamic_layers"]
    assert len(layers) == 6 and all(v["type"] == "DynamicLowRankConv2d" for v in layers.values())
    # the seed's range [4, 64] clipped to each conv's full rank: 16, 32, 64 channels per stage
    assert sorted({(v["r_min"], v["r_max"]) for v in layers.values()}) == [
        (4, 16),
        (4, 32),
        (4, 64),
    ]
    for v in layers.values():
        assert v["r_min"] <= v["mean_rank"] <= v["r_max"]
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["epoch"]) == 1
    assert all(np.isfinite(hist[k][0]) for k in ("train_loss", "val_loss", "energy_mJ"))
    assert hist["energy_mJ"][0] > 0 and (out / "best.pt").exists()
    assert (out / "history.png").stat().st_size > 0


def test_hardware_keys_reach_the_trainers_estimators(tmp_path):
    """Every hardware key is used: the dynamic convs of adlrns_resnet are priced by them."""
    from braingate.experiments.runner import MODELS
    from braingate.train import Trainer

    cfg = load_config("exp_config")
    model = MODELS.get("adlrns_resnet").build(cfg, (1, 8, 8), 10)
    Trainer(model, cfg, save_dir=tmp_path)
    convs = model.dynamic_convs()
    assert len(convs) == 6
    for conv in convs.values():
        assert conv.estimator.energy_per_flop_mJ == pytest.approx(1e-6)
        assert conv.estimator.peak_flops == pytest.approx(15.7e12)
        assert conv.budget == pytest.approx(5.0)


def _digit_folder(root, n: int = 200):
    """An ImageFolder of real images: sklearn digits saved as 8×8 grayscale PNG files."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i in range(n):
        folder = root / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(
            folder / f"{i}.png"
        )
    return root


def test_image_folder_at_data_dir(tmp_path):
    """--data_dir: an ImageFolder of real images."""
    imgs = _digit_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    # 6 epochs: 150 training images need a few to clear the accuracy bound below
    argv = ["--config", "digits_dynamic", "--data_dir", str(imgs), "--save_dir",
            str(out), "--epochs", "6"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "ImageFolder" in summary["data"] and "10 classes" in summary["data"]
    assert summary["val_acc"] > 0.2


def test_seed_config_on_an_image_folder(tmp_path):
    """The seed's flags with --data_dir: adlrns_resnet on (1, 16, 16) images of the folder."""
    imgs = _digit_folder(tmp_path / "imgs", 120)
    seed = yaml.safe_load(bundled_configs()["exp_config"].read_text())
    seed["data"] = {"image_size": 16}
    seed["train"]["progress"] = False
    path = tmp_path / "seed16.yaml"
    path.write_text(yaml.safe_dump(seed))
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert main(["--config", str(path), "--data_dir", str(imgs), "--save_dir", str(out),
                     "--epochs", "1"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert "ImageFolder" in summary["data"] and summary["model"] == "adlrns_resnet"
    assert len(summary["dynamic_layers"]) == 6 and np.isfinite(summary["val_loss"])


@pytest.mark.parametrize(
    ("config", "edit", "message"),
    [
        ("exp_config", lambda c: c["model"].update(hidden=64),
         r"model key\(s\) \['hidden'\] are not read by model.type 'adlrns_resnet'"),
        ("resnet_dense", lambda c: c["model"].update(r_max=8),
         r"model key\(s\) \['r_max'\] are not read by model.type 'resnet'"),
        ("exp_config", lambda c: c["model"].update(depth=3),
         r"unknown key\(s\) \['depth'\] in model"),
        ("exp_config", lambda c: c.update(data={"name": "basicmotions", "image_size": 16}),
         "data.image_size applies to images"),
        ("exp_config", lambda c: c["model"].update(width=0), "model.width=0 must be a positive int"),
        ("exp_config", lambda c: c["model"].update(norm="layer"), "model.norm='layer' is unknown"),
        ("resnet_dense", lambda c: c["model"].update(planned=0.5),
         r"unknown key\(s\) \['planned'\] in model"),
        ("exp_config", lambda c: c.update(data={"name": "gunpoint"}),
         "model.type 'adlrns_resnet' takes images"),
    ],
)  # fmt: skip
def test_image_model_keys_are_used_or_refused(tmp_path, capsys, config, edit, message):
    cfg = yaml.safe_load(bundled_configs()[config].read_text())
    edit(cfg)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "--save_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err
    import re

    assert re.search(message, err), err


def test_resnet_width_and_depth_are_read(tmp_path):
    from braingate.experiments.runner import MODELS

    cfg = yaml.safe_load(bundled_configs()["exp_config"].read_text())
    cfg["model"].update(width=8, blocks_per_stage=2)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    model = MODELS.get("adlrns_resnet").build(load_config(path), (3, 12, 12), 5)
    assert len(model.dynamic_convs()) == 12 and model.head.in_features == 32
    assert model(torch.rand(2, 3, 12, 12)).shape == (2, 5)
    dense = MODELS.get("resnet").build(load_config("resnet_dense"), (3, 12, 12), 5)
    n_conv = sum(isinstance(m, torch.nn.Conv2d) for m in dense.modules())
    assert not hasattr(dense, "dynamic_convs") or not dense.dynamic_convs()
    assert n_conv == 1 + 6 + 2  # stem, two per block, two projection shortcuts


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["hardware"].update(gpu_typo="V100"), r"unknown key\(s\) \['gpu_typo'\]"),
        (lambda c: c["hardware"].update(gpu_type="TPU9"), "gpu_type='TPU9' is unknown"),
        (lambda c: c["model"].update(depth=3), r"unknown key\(s\) \['depth'\] in model"),
        (lambda c: c["train"].update(lr_decay=0.1), r"unknown key\(s\) \['lr_decay'\] in train"),
        (lambda c: c["model"].update(type="transformer"), "unknown model.type 'transformer'"),
        (lambda c: c.update(optim={}), "unknown config sections"),
    ],
)
def test_config_keys_are_used_or_refused(tmp_path, capsys, edit, message):
    cfg = yaml.safe_load(bundled_configs()["digits_dynamic"].read_text())
    edit(cfg)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=message):
        load_config(path)
    assert main(["run", str(path), "--save_dir", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err


def test_missing_files_are_clear_errors(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "bundled: digits_dense, digits_dynamic" in err
    assert main(["--config", "digits_dynamic", "--data_dir", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    assert main(["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_gpu_flag_without_cuda_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["--config", "digits_dynamic", "--gpu", "0", "--save_dir", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_adlrns_resnet_learns_digits_at_its_planned_ranks(tmp_path):
    """The seed's config with a larger lr and 4 epochs: the dynamic ResNet learns the digits at
    the ranks its scheduler plans, spending less on its convs than the same convs dense.
    Rank floors are off: calibrated floors raise the accuracy (93.8 % against 87.1 % for this
    seed) but put stage 2's first conv at rank 55 of 64, above that conv's dense price."""
    seed = yaml.safe_load(bundled_configs()["exp_config"].read_text())
    seed["train"].update(lr=3e-3, progress=False, calibrate_ranks=False)
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hist = run(path, tmp_path / "out", epochs=4)
    assert hist["val_acc"][-1] > 0.6  # chance: 0.1
    layers = json.loads((tmp_path / "out" / "summary.json").read_text())["dynamic_layers"]
    for v in layers.values():
        assert v["r_min"] <= v["mean_rank"] <= v["r_max"]
        assert 0 < v["energy_mJ"] < v["dense_energy_mJ"]


def _val_acc(config: str, tmp_path, seed: int) -> tuple[float, dict]:
    cfg = yaml.safe_load(bundled_configs()[config].read_text())
    cfg["train"]["seed"] = seed
    path = tmp_path / f"{config}_{seed}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / f"{config}_{seed}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the config's 5 mJ budget never binds
        hist = run(path, save_dir=out)
    return hist["val_acc"][-1], json.loads((out / "summary.json").read_text())


def test_digits_dynamic_keeps_up_with_its_dense_twin(tmp_path):
    """digits_dynamic (a DynamicLowRankLayer MLP, scheduler energy_aware alpha 1) against
    digits_dense (the same MLP with nn.Linear, same training), as shipped, 8 epochs each, two
    seeds. Without calibrated rank floors the layer inferred at rank 4-6 of 32 and the mean
    fell to ~87 % (one seed 73 %) against ~94.5 % dense; measured with floors: ~95 %. It must
    also still save energy: its dynamic layer below the dense layer's price."""
    dyn, dense = [], []
    for seed in (0, 1):
        acc, summary = _val_acc("digits_dynamic", tmp_path, seed)
        dyn.append(acc)
        (layer,) = summary["dynamic_layers"].values()
        assert layer["energy_mJ"] < layer["dense_energy_mJ"]
        assert layer["mean_rank"] < layer["r_max"]
        dense.append(_val_acc("digits_dense", tmp_path, seed)[0])
    assert np.mean(dyn) >= np.mean(dense) - 0.02, (dyn, dense)
    assert min(dyn) >= min(dense) - 0.04, (dyn, dense)
