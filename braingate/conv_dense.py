"""How simulate counts plain torch convolutions left dense in an event network.

Registered in :data:`braingate.sim.simulate.DENSE_COUNTERS` for ``nn.Conv1d`` / ``nn.Conv2d``
(DESIGN §2b: layers that stay dense are counted at their dense cost, so ratios are honest):
``synops`` as NeuroBench's SynapticOperations counts a conv (the conv of the input's non-zero
pattern with the weight's non-zero pattern, bias excluded), ``dense_synops`` and ``lowrank_ops``
the MACs ``C_out·∏out·(C_in/groups)·∏k``, ``input_events`` the non-zero inputs. Pooling, like
ReLU, does no synaptic work and is not counted (its cost is elementwise on both paths).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from braingate.nn.base import Counts
from braingate.sim.simulate import DENSE_COUNTERS, DenseCounter

__all__: list[str] = []


def _count_conv(mod: nn.Module, x: Tensor, y: Tensor):
    dims = 1 if isinstance(mod, nn.Conv1d) else 2
    x = x.detach()
    if x.dim() == dims + 1:  # unbatched
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    nz = (x != 0).to(mod.weight.dtype)
    wnz = (mod.weight.detach() != 0).to(mod.weight.dtype)
    conv = torch.nn.functional.conv1d if dims == 1 else torch.nn.functional.conv2d
    if mod.padding_mode != "zeros":  # padded values are copies of inputs: count them too
        nz = nn.functional.pad(nz, mod._reversed_padding_repeated_twice, mode=mod.padding_mode)
        pad = 0
    else:
        pad = mod.padding
    eff = conv(nz, wnz, None, mod.stride, pad, mod.dilation, mod.groups)
    N = x.shape[0]
    synops = eff.reshape(N, -1).sum(-1).double().cpu().numpy()
    full = np.full(N, float(y[0].numel() * mod.weight[0].numel()))
    ev = nz.reshape(N, -1).sum(-1).double().cpu().numpy()
    units = (x != 0).transpose(0, 1).reshape(x.shape[1], -1).sum(-1).double().cpu().numpy()
    return Counts(synops=synops, dense_synops=full, lowrank_ops=full, input_events=ev), units


def _describe_conv(m: nn.Module) -> dict:
    fan_in = m.weight[0].numel()
    return {"kind": "conv", "in_features": m.in_channels, "out_features": m.out_channels,
            "rank": min(fan_in, m.out_channels), "blocks": 1, "in_channels": m.in_channels,
            "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
            "groups": m.groups}  # fmt: skip


for _t in (nn.Conv1d, nn.Conv2d):
    DENSE_COUNTERS.add(_t, DenseCounter(_count_conv, _describe_conv))
