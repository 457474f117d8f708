"""Delta GRU vs dense GRU on real sensor streams (aeon's BasicMotions, GunPoint, Daphnet).

Classification (BasicMotions, GunPoint), per training seed:

1. train a torch ``nn.GRU(n, 64)`` + ``nn.Linear`` head densely (the dense baseline, its
   accuracy); the decision is the last step's logits (BasicMotions) or their mean over time
   (GunPoint: a last-step GRU readout does not learn its 150 steps reliably);
2. convert it (``EventGRU.from_gru`` with the hidden factor at rank 4, ``EventLinear.from_linear``
   head) and fine-tune densely for a few epochs;
3. fine-tune *through events*: learned per-unit thresholds, the differentiable torch event step of
   every layer (``reference_step``, BPTT with surrogate gradients), an activity penalty hinged at
   a budget of 9 % of the dense synops, and a distillation term towards the dense torch model's
   decisions (the event network learns to decide as the dense one does); the weights of the
   epoch with the lowest training loss within the budget are kept;
4. evaluate with ``bg.simulate`` in dense and event mode on the test split. ``synops`` ratio =
   dense synops of the torch GRU + head (``3H(n+H) + H·C`` per step) over the event network's
   synops; the gates' elementwise work is reported apart (``neuron_ops``).

Wall clock (batch 1, one thread, alternating rounds in one run): the compiled event network
(``bg.sim.compile_events``: GRU and head in one compiled call per step) against torch stepping the
trained ``nn.GRUCell`` + ``nn.Linear`` one step at a time, over test streams.

Daphnet S06R02E0: a GRU forecasts all 9 accelerometer channels 4 steps (62 ms) ahead; the curve of
R² against synops over a common threshold scale, on the held-out 30 % of the recording streamed
at batch 1.

Usage: ``python benchmarks/recurrent_event_vs_dense.py [--quick] [--seeds N]``; writes
``results/recurrent_event_vs_dense.json`` and prints tables.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_seconds, machine, table, write_json

import braingate as bg
from braingate.datasets.sensors import basic_motions, daphnet, gun_point
from braingate.nn.event_rnn import EventGRU
from braingate.sim.fused import compile_events

OUT = Path(__file__).resolve().parents[1] / "results" / "recurrent_event_vs_dense.json"


# -- classification ------------------------------------------------------------------------------
def decide(logits: torch.Tensor, readout: str) -> torch.Tensor:
    """Per-sample logits from per-step logits ``(T, B, C)``: the last step, or the mean."""
    return logits[-1] if readout == "last" else logits.mean(0)


def _step(opt, params, loss) -> None:
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def train_torch(d, H: int, epochs: int, seed: int, readout: str) -> tuple[nn.GRU, nn.Linear]:
    torch.manual_seed(seed)
    gru, head = nn.GRU(d.features, H), nn.Linear(H, d.classes)
    params = [*gru.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(d.x_train.shape[1]).split(25):
            out, _ = gru(d.x_train[:, idx])
            loss = nn.functional.cross_entropy(decide(head(out), readout), d.y_train[idx])
            _step(opt, params, loss)
    return gru, head


def accuracy(ys: torch.Tensor, y: torch.Tensor, readout: str) -> float:
    return float((decide(ys, readout).argmax(-1) == y).double().mean())


def finetune_dense(net: nn.Sequential, d, epochs: int, readout: str) -> None:
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(d.x_train.shape[1]).split(25):
            loss = nn.functional.cross_entropy(decide(net(d.x_train[:, idx]), readout),
                                               d.y_train[idx])  # fmt: skip
            _step(opt, params, loss)


def finetune_events(net: nn.Sequential, d, cfg: dict, readout: str, teacher=None) -> list:
    """BPTT through every layer's differentiable event step, thresholds learned per unit, the
    activity ``synops / dense_synops`` penalised above ``cfg["budget"]``. Keeps the weights of
    the epoch with the lowest training loss among those within the budget (training data only).
    Returns the per-epoch ``(task loss, activity)``."""
    for m in net:
        m.learn_thresholds(per_unit=cfg.get("per_unit", True))
    raw = [p for n, p in net.named_parameters() if n.endswith("_raw")]
    rest = [p for n, p in net.named_parameters() if not n.endswith("_raw")]
    opt = torch.optim.Adam([{"params": rest, "lr": cfg["lr"]}, {"params": raw, "lr": cfg["lr_th"]}])
    dense = sum(m.dense_counts(()).dense_synops for m in net)
    history, best = [], (float("inf"), None)
    for _ in range(cfg["event_epochs"]):
        tot = [0.0, 0.0, 0]
        for idx in torch.randperm(d.x_train.shape[1]).split(20):
            xs = d.x_train[:, idx]
            if cfg.get("augment", 0):  # per-sample gain and sensor noise
                a = cfg["augment"]
                xs = xs * (1 + a * torch.randn(1, xs.shape[1], 1)) + a * torch.randn_like(xs)
            states = [m.init_state(xs.shape[1], xs) for m in net]
            syn, logits = 0.0, []
            for x in xs:
                h = x
                for k, m in enumerate(net):
                    h, states[k], c = m.reference_step(h, states[k])
                    syn = syn + c.synops
                logits.append(h)
            activity = syn.mean() / (dense * xs.shape[0])
            out = decide(torch.stack(logits), readout)
            loss = nn.functional.cross_entropy(out, d.y_train[idx])
            if teacher is not None and cfg.get("distill", 0):  # stay close to the dense model
                with torch.no_grad():
                    soft = decide(teacher(xs), readout).div(2).softmax(-1)
                kl = nn.functional.kl_div(out.div(2).log_softmax(-1), soft, reduction="batchmean")
                loss = loss + cfg["distill"] * 4 * kl
            tot[0] += float(loss.detach()) * len(idx)
            tot[1] += float(activity.detach()) * len(idx)
            tot[2] += len(idx)
            loss = loss + cfg["weight"] * (activity - cfg["budget"]).clamp_min(0)
            _step(opt, rest + raw, loss)
        history.append((tot[0] / tot[2], tot[1] / tot[2]))
        if history[-1][1] <= cfg["budget"] * 1.05 and history[-1][0] <= best[0]:
            best = (history[-1][0], copy.deepcopy(net.state_dict()))
    if best[1] is not None:
        net.load_state_dict(best[1])
    for m in net:
        m.freeze_thresholds()
    return history


def classify(d, seed: int, H: int, rank_h: int, cfg: dict) -> tuple[dict, nn.Sequential, tuple]:
    t0 = time.perf_counter()
    readout = cfg["readout"][d.name]
    gru, head = train_torch(d, H, cfg["epochs"][d.name], seed, readout)
    with torch.no_grad():
        out, _ = gru(d.x_test)
        acc_torch = accuracy(head(out), d.y_test, readout)
    net = nn.Sequential(
        EventGRU.from_gru(gru, (d.features, rank_h), return_state=False,
                          threshold=0.05, hidden_threshold=0.05, latent_threshold=0.05),
        bg.EventLinear.from_linear(head, d.classes, threshold=0.05, latent_threshold=0.05),
    )  # fmt: skip
    finetune_dense(net, d, cfg["dense_epochs"], readout)
    history = finetune_events(net, d, cfg, readout, lambda xs: head(gru(xs)[0]))
    with torch.no_grad():
        yd, _ = bg.simulate(net, d.x_test, mode="dense")
        ye, rep = bg.simulate(net, d.x_test, mode="event")
    T = d.x_test.shape[0]
    dense_torch = 3 * H * (d.features + H) + H * d.classes  # MACs per step of GRU + head
    row = {
        "dataset": d.name, "seed": seed, "hidden": H, "rank_h": rank_h,
        "readout": readout, "acc_torch_dense": acc_torch,
        "acc_dense": accuracy(yd, d.y_test, readout),
        "acc_event": accuracy(ye, d.y_test, readout),
        "synops_per_step": rep.total["synops"] / T,
        "dense_synops_per_step": dense_torch,
        "ratio": dense_torch * T / rep.total["synops"],
        "neuron_ops_per_step": rep.total["neuron_ops"] / T,
        "train_s": time.perf_counter() - t0, "event_history": history,
    }  # fmt: skip
    return row, net, (gru, head)


# -- wall clock ----------------------------------------------------------------------------------
def wall_clock(net: nn.Sequential, gru: nn.GRU, head: nn.Linear, xs: torch.Tensor, rounds: int):
    """Per-step seconds at batch 1: compiled event network vs torch GRUCell stepping."""
    cell = nn.GRUCell(gru.input_size, gru.hidden_size)
    with torch.no_grad():
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, k).copy_(getattr(gru, k + "_l0"))
    streams = [xs[:, b : b + 1].contiguous() for b in range(xs.shape[1])]
    T = xs.shape[0]
    with bg.execution(net, "event"):
        chain = compile_events(net)

        def event(i: int) -> None:
            chain.reset()
            for x in streams[i % len(streams)]:
                chain(x)

        def dense(i: int) -> None:
            h = torch.zeros(1, gru.hidden_size)
            for x in streams[i % len(streams)]:
                h = cell(x, h)
                head(h)

        with torch.no_grad():
            sec = interleaved_seconds({"event": event, "torch": dense}, len(streams), rounds)
        # the two step the same model: the compiled event outputs at θ = 0 equal torch's
        segments = chain.compiled_segments
    us = {k: v / T * 1e6 for k, v in sec.items()}
    return {"us_event": us["event"], "us_torch_gru_cell": us["torch"],
            "speedup": us["torch"] / us["event"], "compiled_segments": segments}  # fmt: skip


# -- Daphnet -------------------------------------------------------------------------------------
def daphnet_curve(H: int, rank_h: int, epochs: int, scales: list[float]) -> dict:
    d = daphnet(horizon=4)
    torch.manual_seed(0)
    gru, head = nn.GRU(9, H), nn.Linear(H, 9)
    opt = torch.optim.Adam([*gru.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(epochs):
        for idx in torch.randperm(d.x_train.shape[1]).split(32):
            out, _ = gru(d.x_train[:, idx])
            loss = nn.functional.mse_loss(head(out)[16:], d.y_train[16:, idx])  # 16 warm-up steps
            opt.zero_grad()
            loss.backward()
            opt.step()
    net = nn.Sequential(EventGRU.from_gru(gru, (9, rank_h), return_state=False),
                        bg.EventLinear.from_linear(head, 9))  # fmt: skip
    finetune_opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(max(1, epochs // 4)):
        for idx in torch.randperm(d.x_train.shape[1]).split(32):
            loss = nn.functional.mse_loss(net(d.x_train[:, idx])[16:], d.y_train[16:, idx])
            finetune_opt.zero_grad()
            loss.backward()
            finetune_opt.step()
    y = d.y_test
    var = float(y.var())

    def r2(pred):
        return 1 - float((pred - y).pow(2).mean()) / var

    with torch.no_grad():
        out, _ = gru(d.x_test)
        r2_torch = r2(head(out))
    T = d.x_test.shape[0]
    dense_torch = 3 * H * (9 + H) + H * 9
    points = []
    for c in scales:
        for m in net:
            for k in m.threshold_names:
                setattr(m, k, c)
        with torch.no_grad():
            ys, rep = bg.simulate(net, d.x_test, mode="event")
        points.append({"scale": c, "r2": r2(ys), "synops_per_step": rep.total["synops"] / T,
                       "ratio": dense_torch * T / max(rep.total["synops"], 1.0)})  # fmt: skip
    persistence = r2(d.x_test)
    return {"dataset": d.name, "horizon": d.horizon, "hidden": H, "rank_h": rank_h,
            "test_steps": T, "r2_torch_dense": r2_torch, "r2_persistence": persistence,
            "dense_synops_per_step": dense_torch, "curve": points}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer seeds and epochs")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    q = args.quick
    seeds = args.seeds or (1 if q else 5)
    cfg = {
        "epochs": {"BasicMotions": 40 if q else 150, "GunPoint": 60 if q else 300},
        "readout": {"BasicMotions": "last", "GunPoint": "mean"},
        "dense_epochs": 5 if q else 20, "event_epochs": 8 if q else 40, "lr": 1e-3,
        "lr_th": 3e-2, "budget": 0.09, "weight": 4.0, "distill": 1.0, "per_unit": True,
    }  # fmt: skip
    H, rank_h = 64, 4
    rows, timing = [], []
    for load in (basic_motions, gun_point):
        d = load()
        for seed in range(seeds):
            row, net, (gru, head) = classify(d, seed, H, rank_h, cfg)
            rows.append(row)
            print(f"{d.name} seed {seed}: dense {row['acc_torch_dense']:.3f} event "
                  f"{row['acc_event']:.3f} ratio {row['ratio']:.1f}x", flush=True)  # fmt: skip
            if seed == 0:
                xs = d.x_test[:, : (4 if q else 16)]
                t = wall_clock(net, gru, head, xs, rounds=3 if q else 7)
                timing.append({"dataset": d.name, **t})
    summary = []
    for name in sorted({r["dataset"] for r in rows}):
        rs = [r for r in rows if r["dataset"] == name]
        mean = lambda k, rs=rs: float(np.mean([r[k] for r in rs]))  # noqa: E731
        summary.append({"dataset": name, "seeds": len(rs), "acc_torch_dense": mean("acc_torch_dense"),
                        "acc_dense": mean("acc_dense"), "acc_event": mean("acc_event"),
                        "drop_points": 100 * (mean("acc_torch_dense") - mean("acc_event")),
                        "ratio": mean("ratio"), "min_ratio": min(r["ratio"] for r in rs)})  # fmt: skip
    scales = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4] if not q else [0.0, 0.05, 0.2]
    curve = daphnet_curve(32, 8, 8 if q else 30, scales)
    payload = {"machine": machine(), "quick": q, "config": {**cfg, "hidden": H, "rank_h": rank_h},
               "runs": rows, "summary": summary, "timing": timing, "daphnet": curve}  # fmt: skip
    write_json(args.out, payload)
    print()
    print(table(summary, ["dataset", "seeds", "acc_torch_dense", "acc_dense", "acc_event",
                          "drop_points", "ratio", "min_ratio"],
                {"acc_torch_dense": "{:.3f}", "acc_dense": "{:.3f}", "acc_event": "{:.3f}",
                 "drop_points": "{:+.2f}", "ratio": "{:.1f}x", "min_ratio": "{:.1f}x"}))  # fmt: skip
    print()
    print(table(timing, ["dataset", "us_event", "us_torch_gru_cell", "speedup",
                         "compiled_segments"],
                {"us_event": "{:.1f}", "us_torch_gru_cell": "{:.1f}",
                 "speedup": "{:.1f}x"}))  # fmt: skip
    print()
    print(
        f"Daphnet S06R02E0, {curve['horizon']} steps ahead: torch dense R² "
        f"{curve['r2_torch_dense']:.3f}, persistence R² {curve['r2_persistence']:.3f}"
    )
    print(table(curve["curve"], ["scale", "r2", "synops_per_step", "ratio"],
                {"r2": "{:.3f}", "synops_per_step": "{:.0f}", "ratio": "{:.1f}x"}))  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
