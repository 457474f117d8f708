"""How simulate counts plain torch convolutions left dense in an event network.

Registered in :data:`braingate.sim.simulate.DENSE_COUNTERS` for ``nn.Conv1d`` / ``nn.Conv2d`` /
``nn.Conv3d`` and the transposed convs (DESIGN §2b: layers that stay dense are counted at their
dense cost, so ratios are honest): ``synops`` as NeuroBench's SynapticOperations counts a conv
(the conv of the input's non-zero pattern with the weight's non-zero pattern, bias excluded; for
a transposed conv the transposed conv of the same patterns), ``dense_synops`` and
``lowrank_ops`` the MACs ``C_out·∏out·(C_in/groups)·∏k`` (transposed:
``C_in·∏in·(C_out/groups)·∏k``), ``input_events`` the non-zero inputs. Pooling, like ReLU, does
no synaptic work and is not counted (its cost is elementwise on both paths).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from braingate.nn.base import Counts
from braingate.sim.simulate import DENSE_COUNTERS, DenseCounter

__all__: list[str] = []


_CONV = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
         3: torch.nn.functional.conv3d}  # fmt: skip
_CONV_T = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d,
           3: torch.nn.functional.conv_transpose3d}  # fmt: skip


def _count_conv(mod: nn.Module, x: Tensor, y: Tensor):
    dims = mod.weight.dim() - 2
    transposed = isinstance(mod, nn.modules.conv._ConvTransposeNd)
    x = x.detach()
    if x.dim() == dims + 1:  # unbatched
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    nz = (x != 0).to(mod.weight.dtype)
    wnz = (mod.weight.detach() != 0).to(mod.weight.dtype)
    if transposed:
        eff = _CONV_T[dims](nz, wnz, None, mod.stride, mod.padding, mod.output_padding,
                            mod.groups, mod.dilation)  # fmt: skip
        per_sample = x[0].numel() * mod.weight[0].numel()  # C_in·∏in·(C_out/groups)·∏k
    else:
        if mod.padding_mode != "zeros":  # padded values are copies of inputs: count them too
            nz = nn.functional.pad(nz, mod._reversed_padding_repeated_twice,
                                   mode=mod.padding_mode)  # fmt: skip
            pad = 0
        else:
            pad = mod.padding
        eff = _CONV[dims](nz, wnz, None, mod.stride, pad, mod.dilation, mod.groups)
        per_sample = y[0].numel() * mod.weight[0].numel()  # C_out·∏out·(C_in/groups)·∏k
    N = x.shape[0]
    synops = eff.reshape(N, -1).sum(-1).double().cpu().numpy()
    full = np.full(N, float(per_sample))
    ev = nz.reshape(N, -1).sum(-1).double().cpu().numpy()
    units = (x != 0).transpose(0, 1).reshape(x.shape[1], -1).sum(-1).double().cpu().numpy()
    return Counts(synops=synops, dense_synops=full, lowrank_ops=full, input_events=ev), units


def _describe_conv(m: nn.Module) -> dict:
    fan_in = m.weight[0].numel()
    d = {"kind": "conv", "in_features": m.in_channels, "out_features": m.out_channels,
         "rank": min(fan_in, m.out_channels), "blocks": 1, "in_channels": m.in_channels,
         "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
         "groups": m.groups}  # fmt: skip
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        fan_out = m.weight[0].numel()  # (C_out/groups)·∏k per input channel
        d.update(kind="conv_transpose", rank=min(fan_out, m.in_channels))
    return d


for _t in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
           nn.ConvTranspose3d):  # fmt: skip
    DENSE_COUNTERS.add(_t, DenseCounter(_count_conv, _describe_conv))
