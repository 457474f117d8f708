"""Event-driven CNNs against dense torch CNNs on real image streams (issue 14, DESIGN §2b, §5).

Part 1, saccade digits (``braingate.datasets.saccade``: sklearn digits moved along the N-MNIST
saccade path). Per training seed: a dense CNN (conv 1→16, ReLU, max-pool, conv 16→32, ReLU,
max-pool, linear) is trained on single frames; ``bg.convert`` factors it (truncated SVD), its
thresholds are calibrated (``bg.calibrate_thresholds``, 1-point tolerance) and it is fine-tuned
with events in the loop (surrogate gradients, learned thresholds, activity penalty towards a
synops budget; 4 epochs: since calibrate_thresholds' exact noise margin, its thresholds here are
2–3× lower than before and 2 epochs left seeds 1 and 3 at 7–8× fewer synops). On the test streams: accuracy (logits averaged over the stream), synops of every
layer (``bg.simulate``), and the per-frame wall clock at batch 1, one thread, of the compiled
event CNN (``compile_events``: one call per frame; its reset at each stream start included) and
of the same dense torch CNN, in alternating rounds. Synops ratios are given against the dense
CNN's MACs (``dense_synops``) and against its NeuroBench synops (MACs on non-zero inputs only).

Part 2, camera motion (``braingate.datasets.camera``: pan / zoom / jitter over china.jpg,
128×128 RGB). The CNN (three convs, 3→16 s2, 16→32 s2, 32→32) has learned features: it is the
encoder of a denoising autoencoder trained for a few hundred Adam steps on 32×32 patches of
sklearn's *other* sample image, ``flower.jpg``, then factored at ranks 8 / 12 / 12 and fine-tuned
factored (:func:`camera_cnn`). The dense torch CNN it is timed against and whose output is the
reference for the error is the same function as plain ``nn.Conv2d`` layers (weights
``U·diag(s)·Vᵀ``). Earlier versions used a Kaiming-initialised, untrained CNN converted at full
rank; random filters at full rank are not what a user runs (trained filters are smoother, and a
factored CNN is what braingate converts to), and at full rank the factored conv costs more MACs
than the dense one in the first layer (``C_in·k² = 27`` against 16 outputs). For each tolerance
the thresholds are calibrated to that relative output error on one clip (seed 1), and speed and
error are measured on another (seed 2, faster pan); neither clip was used for training.
``input_event_fraction`` is the share of input elements sent per frame, per layer. DeltaCNN
(Parger et al., CVPR 2022) reports 1.3–7× over cuDNN on GPU for video.

    python benchmarks/conv_event_vs_dense.py [--quick] [--seeds 0 1 2 3 4]
        [--out results/conv_event_vs_dense.json]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_seconds, machine, table

import braingate as bg
import braingate.conv_dense  # dense conv counters (NeuroBench synops)
import braingate.convert_conv  # Conv converters
from braingate._files import atomic_write_text
from braingate.datasets.camera import camera_motion
from braingate.datasets.saccade import saccade_digits
from braingate.nn.base import event_modules
from braingate.sim.fused import compile_events
from braingate.train.events_in_loop import rollout

RANKS = {"0": 6, "3": 12, "7": 10}


def digits_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


def accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    return float((out.mean(0).argmax(-1) == y).double().mean())


def train_dense(net: nn.Module, xs: torch.Tensor, ys: torch.Tensor, epochs: int) -> None:
    """Adam on single frames (a few random frames of every stream per epoch)."""
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    T, N = xs.shape[:2]
    for _ in range(epochs):
        for idx in torch.randperm(N).split(64):
            f = torch.randint(0, T, (4,))
            x = xs[f][:, idx].flatten(0, 1)
            loss = F.cross_entropy(net(x), ys[idx].repeat(len(f)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()


def finetune(net: nn.Module, xs, ys, epochs: int, budget: float, lam: float) -> None:
    """Events in the loop: learned thresholds, activity penalty above ``budget``."""
    layers = list(event_modules(net).values())
    for layer in layers:
        layer.learn_thresholds(per_unit=True)
    named = list(net.named_parameters())
    opt = torch.optim.Adam([
        {"params": [p for n, p in named if "threshold" not in n], "lr": 3e-4},
        {"params": [p for n, p in named if "threshold" in n], "lr": 0.03},
    ])  # fmt: skip
    for _ in range(epochs):
        for idx in torch.randperm(xs.shape[1]).split(32):
            out, tape = rollout(net, xs[:, idx])
            loss = F.cross_entropy(out.mean(0), ys[idx]) + lam * tape.penalty(budget)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for layer in layers:
        layer.freeze_thresholds()


def frame_seconds(dense: nn.Module, event: nn.Module, xs: torch.Tensor, streams: int) -> dict:
    """Per-frame seconds at batch 1 of the dense torch CNN and the compiled event CNN (its reset
    at each stream start included), alternating rounds (best round)."""
    bg.execution(event, "event")
    chain = compile_events(event, strict=True)
    T = xs.shape[0]
    frames = [xs[t, b : b + 1].contiguous() for b in range(streams) for t in range(T)]

    def ev(i: int) -> None:
        if i % T == 0:
            chain.reset()
        chain(frames[i])

    def de(i: int) -> None:
        dense(frames[i])

    with torch.no_grad():
        t = interleaved_seconds({"event": ev, "dense": de}, reps=len(frames), rounds=5)
    t["segments"] = chain.compiled_segments
    return t


def digits_seed(seed: int, data, fast, args) -> dict:
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    dense = digits_cnn()
    train_dense(dense, data.x_train, data.y_train, args.dense_epochs)
    xs, ys = fast.x_train[:, : args.tune_streams], fast.y_train[: args.tune_streams]
    xt, yt = fast.x_test, fast.y_test
    with torch.no_grad():
        acc_dense = accuracy(dense(xt.flatten(0, 1)).unflatten(0, xt.shape[:2]), yt)
    _, rep_dense = bg.simulate(dense, xt, mode="event")
    net = bg.convert(copy.deepcopy(dense), rank=RANKS)
    with torch.no_grad():
        acc_lowrank = accuracy(net(xt.flatten(0, 1)).unflatten(0, xt.shape[:2]), yt)
    cal = bg.calibrate_thresholds(net, xs, ys, tolerance=0.01, readout="mean",
                                  max_evals=args.calib_evals, seed=seed,
                                  headroom=args.calib_headroom)  # fmt: skip
    ys_cal, rep_cal = bg.simulate(net, xt, mode="event")
    finetune(net, xs, ys, args.event_epochs, 1 / args.target_ratio, lam=args.lam)
    ys_ev, rep = bg.simulate(net, xt, mode="event")
    tm = frame_seconds(dense, net, xt, args.time_streams)
    syn = rep.total["synops"]
    return {
        "seed": seed,
        "acc_dense": 100 * acc_dense,
        "acc_lowrank": 100 * acc_lowrank,
        "acc_calibrated": 100 * accuracy(ys_cal, yt),
        "acc_event": 100 * accuracy(ys_ev, yt),
        "ratio_calibrated": rep_cal.total["dense_synops"] / rep_cal.total["synops"],
        "ratio_macs": rep.total["dense_synops"] / syn,
        "ratio_nb": rep_dense.total["synops"] / syn,
        "dense_us": 1e6 * tm["dense"],
        "event_us": 1e6 * tm["event"],
        "speedup": tm["dense"] / tm["event"],
        "segments": tm["segments"],
        "layers": {n: {k: d[k] for k in ("synops", "dense_synops", "input_events",
                                          "latent_events")} for n, d in rep.layers.items()},
        "calibration": cal.thresholds,
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip


CAMERA_RANKS = {"0": 8, "2": 12, "4": 12}


def camera_cnn(steps: int, seed: int = 0) -> tuple[nn.Sequential, nn.Sequential]:
    """The camera CNN with learned features: the encoder (3 convs) of a denoising autoencoder
    trained on 32×32 patches of sklearn's other sample image, ``flower.jpg`` (never on the
    ``china.jpg`` clips), then factored at :data:`CAMERA_RANKS` (truncated SVD) and fine-tuned
    factored. Returns ``(event CNN, dense twin)``: the twin is the same function as plain
    ``nn.Conv2d`` layers (weights ``U·diag(s)·Vᵀ``), the dense torch CNN a user would run."""
    from sklearn.datasets import load_sample_image

    torch.manual_seed(seed)
    img = torch.tensor(load_sample_image("flower.jpg"), dtype=torch.float32).permute(2, 0, 1)
    img = img / 255

    def patches(n: int, size: int = 32) -> torch.Tensor:
        ys = torch.randint(0, img.shape[1] - size, (n,)).tolist()
        xs = torch.randint(0, img.shape[2] - size, (n,)).tolist()
        return torch.stack([img[:, y : y + size, x : x + size] for y, x in zip(ys, xs)])

    enc = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
    )  # fmt: skip
    dec = nn.Sequential(
        nn.ReLU(), nn.Upsample(scale_factor=2), nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(),
        nn.Upsample(scale_factor=2), nn.Conv2d(16, 3, 3, padding=1),
    )  # fmt: skip

    def train(enc: nn.Module, n: int, lr: float) -> None:
        opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr)
        for _ in range(n):
            x = patches(32)
            loss = F.mse_loss(dec(enc(x + 0.1 * torch.randn_like(x))), x)
            opt.zero_grad()
            loss.backward()
            opt.step()

    train(enc, steps, 3e-3)
    event = bg.convert(enc, rank=CAMERA_RANKS)
    train(event, steps, 1e-3)
    event.eval()
    twin = []
    for m in event:
        if isinstance(m, bg.EventConv2d):
            c = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                          m.dilation)  # fmt: skip
            with torch.no_grad():
                c.weight.copy_(m.weight())
                c.bias.copy_(m.bias)
            m = c
        twin.append(m)
    return event, nn.Sequential(*twin).eval()


def camera_curve(args) -> list[dict]:
    trained, dense = camera_cnn(args.camera_train_steps)
    clip_cal = camera_motion(args.camera_steps, seed=1)
    clip = camera_motion(args.camera_steps, seed=2, pan=0.3)
    with torch.no_grad():
        ref = dense(clip.flatten(0, 1)).unflatten(0, clip.shape[:2])
    rows = []
    for tol in args.tolerances:
        net = copy.deepcopy(trained)
        bg.execution(net, "event")
        if tol > 0:
            bg.calibrate_thresholds(net, clip_cal, tolerance=tol, max_evals=args.calib_evals,
                                    holdout=0)  # fmt: skip
        out, rep = bg.simulate(net, clip, mode="event")
        err = ((out - ref).flatten(2).norm(dim=-1) / ref.flatten(2).norm(dim=-1)).mean()
        tm = frame_seconds(dense, net, clip, 1)
        rows.append({
            "tolerance": tol, "rel_error": float(err),
            "ratio_macs": rep.total["dense_synops"] / rep.total["synops"],
            "input_event_fraction": {  # events per input element and frame, per layer
                n: rep.layers[n]["input_events"]
                / (clip.shape[0] * m.in_channels * math.prod(m._in_spatial))
                for n, m in event_modules(net).items()},
            "dense_us": 1e6 * tm["dense"], "event_us": 1e6 * tm["event"],
            "speedup": tm["dense"] / tm["event"],
            "thresholds": {n: [float(torch.as_tensor(m.threshold).mean()),
                               float(torch.as_tensor(m.latent_threshold).mean())]
                           for n, m in event_modules(net).items()},
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one seed, small budgets")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps-per-saccade", type=int, default=20)
    ap.add_argument("--dense-epochs", type=int, default=6)
    ap.add_argument("--event-epochs", type=int, default=4)
    ap.add_argument("--tune-streams", type=int, default=400)
    ap.add_argument("--time-streams", type=int, default=10)
    ap.add_argument("--calib-evals", type=int, default=60)
    ap.add_argument("--target-ratio", type=float, default=20.0)
    ap.add_argument("--lam", type=float, default=2.0, help="weight of the activity penalty")
    ap.add_argument(
        "--calib-headroom",
        type=float,
        default=None,
        help="calibrate_thresholds' headroom (default: its automatic choice)",
    )
    ap.add_argument("--camera-steps", type=int, default=48)
    ap.add_argument("--camera-train-steps", type=int, default=150)
    ap.add_argument("--tolerances", type=float, nargs="+",
                    default=[0.0, 0.0025, 0.005, 0.01, 0.02, 0.04])  # fmt: skip
    ap.add_argument("--skip-camera", action="store_true")
    ap.add_argument("--out", default="results/conv_event_vs_dense.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.dense_epochs, args.event_epochs = args.seeds[:1], 3, 1
        args.tune_streams, args.time_streams, args.calib_evals = 128, 4, 25
        args.camera_steps, args.tolerances, args.camera_train_steps = 16, [0.0, 0.01], 20
    torch.set_num_threads(1)
    data = saccade_digits(steps_per_saccade=6)
    fast = saccade_digits(steps_per_saccade=args.steps_per_saccade)
    runs = []
    for seed in args.seeds:
        runs.append(digits_seed(seed, data, fast, args))
        r = runs[-1]
        print(f"seed {seed}: acc dense {r['acc_dense']:.1f} event {r['acc_event']:.1f}, "
              f"synops {r['ratio_macs']:.1f}x (NeuroBench {r['ratio_nb']:.1f}x), "
              f"speed {r['speedup']:.2f}x  [{r['seconds']:.0f} s]", flush=True)  # fmt: skip
    cols = ["seed", "acc_dense", "acc_lowrank", "acc_calibrated", "acc_event", "ratio_calibrated",
            "ratio_macs", "ratio_nb", "dense_us", "event_us", "speedup"]  # fmt: skip
    fmt = {c: "{:.2f}" for c in cols[1:]}
    keys = cols[1:]
    summary = [{"seed": s, **{k: fn([r[k] for r in runs]) for k in keys}}
               for s, fn in (("mean", statistics.fmean), ("min", min), ("max", max))]  # fmt: skip
    print(f"\nsaccade digits, {fast.x_test.shape[1]} test streams of {fast.x_test.shape[0]} frames")
    print(table(runs + summary, cols, fmt))
    camera = [] if args.skip_camera else camera_curve(args)
    if camera:
        print("\ncamera motion over china.jpg (128x128 RGB); DeltaCNN reports 1.3-7x on GPU")
        ccols = ["tolerance", "rel_error", "ratio_macs", "dense_us", "event_us", "speedup"]
        print(table(camera, ccols, {c: "{:.4f}" if c != "speedup" else "{:.2f}" for c in ccols}))
    payload = {"machine": machine(), "args": vars(args), "digits": runs, "summary": summary,
               "camera": camera}  # fmt: skip
    import json

    atomic_write_text(args.out, json.dumps(payload, indent=1))
    return payload


if __name__ == "__main__":
    main()
