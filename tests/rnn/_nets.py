"""Helpers for the recurrent tests: torch references and an independent delta-RNN recomputation."""

from __future__ import annotations

import numpy as np
import torch

from braingate.nn.event_rnn import _DeltaRNN


def step_all(module: _DeltaRNN, xs: torch.Tensor) -> torch.Tensor:
    """Outputs ``(T, B, H)`` of event-mode stepping, one ``(B, n)`` call per step."""
    outs = []
    for x in xs:
        y = module(x)
        outs.append(y[0] if isinstance(y, tuple) else y)
    return torch.stack(outs)


def naive_delta_rnn(module: _DeltaRNN, xs: torch.Tensor) -> tuple[np.ndarray, list[dict]]:
    """Delta GRU/LSTM written out from DESIGN §2c with plain numpy loops (float64), sharing no
    code with braingate: returns the outputs ``(T, B, H)`` and per step the summed counters
    ``{input_events, latent_events, synops}`` per sample. Thresholds must be scalars; all
    gates on."""
    T, B, _ = xs.shape
    H, G, L = module.hidden_size, module.gates, module.num_layers
    th, thh, thz = (float(getattr(module, k)) for k in module.threshold_names)
    layers = []
    for layer in range(L):
        fac = []
        for side in ("ih", "hh"):
            sfx = "" if module.is_cell else f"_l{layer}"
            U = getattr(module, f"U_{side}{sfx}").detach().double().numpy()
            s = getattr(module, f"s_{side}{sfx}").detach().double().numpy()
            V = getattr(module, f"V_{side}{sfx}").detach().double().numpy()
            b = getattr(module, f"bias_{side}{sfx}")
            b = np.zeros(G * H) if b is None else b.detach().double().numpy()
            fac.append({"W_lat": U * s, "V": V, "b": b, "ref": np.zeros((B, V.shape[0])),
                        "z": np.zeros((B, V.shape[1])), "zhat": np.zeros((B, V.shape[1])),
                        "m": np.zeros((B, G * H))})  # fmt: skip
        layers.append({"f": fac, "h": np.zeros((B, H)), "c": np.zeros((B, H))})

    def factor(f, x, theta):
        ie = np.zeros(B)
        le = np.zeros(B)
        syn = np.zeros(B)
        R = f["V"].shape[1]
        for b in range(B):
            for i in range(x.shape[1]):
                d = x[b, i] - f["ref"][b, i]
                if abs(d) > theta:
                    f["ref"][b, i] = x[b, i]
                    f["z"][b] += d * f["V"][i]
                    ie[b] += 1
            for j in range(R):
                d = f["z"][b, j] - f["zhat"][b, j]
                if abs(d) > thz:
                    f["zhat"][b, j] = f["z"][b, j]
                    f["m"][b] += d * f["W_lat"][:, j]
                    le[b] += 1
            syn[b] = ie[b] * R + le[b] * G * H
        return f["m"] + f["b"], ie, le, syn

    def sig(v):
        return 1 / (1 + np.exp(-v))

    outs, counts = [], []
    for t in range(T):
        x = xs[t].double().numpy()
        tot = {"input_events": np.zeros(B), "latent_events": np.zeros(B), "synops": np.zeros(B)}
        for k, lay in enumerate(layers):
            mh, ie1, le1, s1 = factor(lay["f"][1], lay["h"], thh)
            mx, ie2, le2, s2 = factor(lay["f"][0], x, th if k == 0 else thh)
            for key, a, c in (("input_events", ie1, ie2), ("latent_events", le1, le2),
                              ("synops", s1, s2)):  # fmt: skip
                tot[key] += a + c
            if module.cell == "gru":
                r = sig(mx[:, :H] + mh[:, :H])
                z = sig(mx[:, H : 2 * H] + mh[:, H : 2 * H])
                n = np.tanh(mx[:, 2 * H :] + r * mh[:, 2 * H :])
                lay["h"] = (1 - z) * n + z * lay["h"]
            else:
                a = mx + mh
                i, f_, g, o = (
                    sig(a[:, :H]),
                    sig(a[:, H : 2 * H]),
                    np.tanh(a[:, 2 * H : 3 * H]),
                    sig(a[:, 3 * H :]),
                )
                lay["c"] = f_ * lay["c"] + i * g
                lay["h"] = o * np.tanh(lay["c"])
            x = lay["h"]
        outs.append(x.copy())
        counts.append(tot)
    return np.stack(outs), counts
