"""The experiments CLI: the seed's flags, bundled configs by name, clear errors, hardware keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from braingate.energy import PerfEstimator
from braingate.experiments import bundled_configs, load_config, main, run


def test_bundled_configs_are_listed_by_name(capsys):
    assert {"digits_dynamic", "exp_config"} <= set(bundled_configs())
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "digits_dynamic" in out and "exp_config" in out and "adlrns_resnet" in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bundled configs: digits_dynamic, exp_config" in capsys.readouterr().out


def test_seed_exp_config_says_adlrns_resnet_is_not_yet_available(capsys, tmp_path):
    # the seed's run_exp.sh flags, as written
    argv = ["--config", "exp_config", "--data_dir", str(tmp_path), "--save_dir",
            str(tmp_path / "out"), "--gpu", "0"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "model.type 'adlrns_resnet' is not yet available" in err and "dynamic_mlp" in err
    assert not (tmp_path / "out").exists()


def test_seed_config_runs_end_to_end_with_an_available_model(tmp_path):
    """The seed's YAML as written except model.type (until adlrns_resnet exists): every
    hardware key reaches the estimator, and a short run trains and writes its files."""
    seed = yaml.safe_load(bundled_configs()["exp_config"].read_text())
    seed["model"]["type"] = "dynamic_mlp"
    seed["train"].update(epochs=1, lr=3e-3, progress=False)
    path = tmp_path / "seed.yaml"
    path.write_text(yaml.safe_dump(seed))
    cfg = load_config(path)
    est = PerfEstimator(cfg.hardware.profile())
    assert est.peak_flops == pytest.approx(15.7e12)  # gpu_type: V100
    assert est.energy_per_flop_mJ == pytest.approx(1e-6) and est.flops_per_mac == 2
    hist = run(path, tmp_path / "out")
    assert len(hist["epoch"]) == 1 and hist["val_acc"][-1] > 0.1  # digits: chance 0.1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["device"] == "cpu" and (tmp_path / "out" / "history.png").stat().st_size > 0


def test_image_folder_at_data_dir(tmp_path):
    """--data_dir: an ImageFolder of real images (sklearn digits saved as PNG files)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    for i in range(200):
        folder = tmp_path / "imgs" / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(
            folder / f"{i}.png"
        )
    out = tmp_path / "out"
    argv = ["--config", "digits_dynamic", "--data_dir", str(tmp_path / "imgs"), "--save_dir",
            str(out), "--epochs", "3"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "ImageFolder" in summary["data"] and "10 classes" in summary["data"]
    assert summary["val_acc"] > 0.2


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
    assert "not found" in err and "bundled: digits_dynamic" in err
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
