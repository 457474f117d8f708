"""Converting CNNs: Conv converters, BatchNorm folding, refusals, dense counts of convs."""

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg
import braingate.conv_dense  # registers the dense conv counters
from braingate.convert_conv import absorbs, fold_batchnorm, fold_batchnorms, refusal
from braingate.nn.event_conv import EventConv1d, EventConv2d


def bn_net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                      nn.Linear(6 * 8 * 8, 3))  # fmt: skip
    bn = m[1]
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.normal_()
    return m.eval()


def test_fold_batchnorm_keeps_the_eval_function():
    m = bn_net()
    x = torch.randn(3, 2, 8, 8)
    want = m(x)
    assert fold_batchnorms(m) == ["1"]
    assert isinstance(m[1], nn.Identity)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)
    conv = nn.Conv1d(3, 4, 3, bias=False)
    bn = nn.BatchNorm1d(4).eval()
    bn.running_mean.normal_()
    x = torch.randn(2, 3, 10)
    torch.testing.assert_close(fold_batchnorm(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-6)
    assert not absorbs(conv, nn.BatchNorm1d(5)) and not absorbs(conv, nn.ReLU())
    with pytest.raises(ValueError, match="num_features=4"):
        fold_batchnorm(conv, nn.BatchNorm2d(4))


def test_convert_turns_convs_into_event_convs_at_fractional_rank():
    m = bn_net()
    fold_batchnorms(m)
    x = torch.randn(2, 2, 8, 8)
    want = m(x)
    bg.convert(m, rank=1.0)
    assert isinstance(m[0], EventConv2d) and m[0].rank == 6
    torch.testing.assert_close(m(x), want, rtol=1e-4, atol=1e-5)
    assert m.conversion_report["0"]["converted"] and m.conversion_report["0"]["full_rank"] == 6
    c1 = nn.Sequential(nn.Conv1d(3, 8, 5))
    bg.convert(c1, rank=0.5, blocks=2)
    assert isinstance(c1[0], EventConv1d) and c1[0].rank == 4 and c1[0].blocks == 2


def test_convert_folds_batchnorm_and_leaves_grouped_convs_dense_with_the_reason():
    m = bn_net()
    m.insert(3, nn.Conv2d(6, 6, 3, padding=1, groups=3))
    x = torch.randn(2, 2, 8, 8)
    want = m(x)
    with pytest.warns(UserWarning, match="left these layers dense"):
        bg.convert(m, rank=1.0)
    assert isinstance(m[0], EventConv2d) and isinstance(m[1], nn.Identity)
    assert m.conversion_report["0"]["folded"] == "1"
    rep = m.conversion_report["3"]
    assert not rep["converted"] and "groups=3" in rep["reason"]
    torch.testing.assert_close(m(x), want, rtol=1e-4, atol=1e-5)


def test_refusals_name_the_reason():
    assert "groups=2" in refusal(nn.Conv2d(4, 4, 3, groups=2))
    assert "padding_mode='circular'" in refusal(nn.Conv2d(4, 4, 3, padding=1,
                                                          padding_mode="circular"))  # fmt: skip
    assert refusal(nn.Conv2d(4, 4, 3)) == ""


def test_dense_conv_counts_are_neurobench_synops():
    pytest.importorskip("neurobench")
    from neurobench.metrics.utils.layers.macs import stateless_layer_macs

    torch.manual_seed(1)
    for conv in (nn.Conv2d(3, 5, 3, stride=2, padding=1), nn.Conv1d(2, 4, 5, padding=2)):
        x = torch.randn(4, conv.in_channels, *([9] * (conv.weight.dim() - 2)))
        x = x * (torch.rand_like(x) < 0.4)
        xs = x.unsqueeze(0)
        _, rep = bg.simulate(nn.Sequential(conv), xs, mode="event")
        with torch.no_grad():
            nb = float(stateless_layer_macs((x != 0).float(), conv, total=False)) / 4
        assert rep.layers["0"]["synops"] == pytest.approx(nb)
        y = conv(x)
        assert rep.layers["0"]["dense_synops"] == y[0].numel() * conv.weight[0].numel()
        np.testing.assert_allclose(rep.layers["0"]["input_unit_events"],
                                   (x != 0).transpose(0, 1).flatten(1).sum(1).numpy() / 4)  # fmt: skip


def test_rank_dict_converts_the_layers_it_names_and_reports_the_others_dense():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10),
    )  # fmt: skip
    with pytest.warns(UserWarning, match=r"3 \(Conv2d: not in the rank dict\)"):
        bg.convert(net, rank={"0": 4, "6": 5}, execution="event")
    assert isinstance(net[0], EventConv2d) and isinstance(net[3], nn.Conv2d)
    assert net.conversion_report["3"] == {"type": "Conv2d", "converted": False,
                                          "reason": "not in the rank dict"}  # fmt: skip
    xs = torch.rand(4, 2, 1, 14, 14)
    per_path = []
    for fuse in (True, False):  # compiled chain and module calls count the dense conv alike
        bg.reset(net)
        _, rep = bg.simulate(net, xs, mode="event", fuse=fuse)
        per_path.append({n: (d["synops"], d["dense_synops"]) for n, d in rep.layers.items()})
    assert per_path[0] == per_path[1]
    assert per_path[0]["3"][1] == 8 * 8 * 9 * 7 * 7 * 4  # its MACs per sample, 4 steps


def test_rank_dict_with_an_unknown_name_is_refused_before_anything_changes():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match="not convertible layers"):
        bg.convert(net, rank={"0": 2, "conv9": 3})
    assert isinstance(net[0], nn.Conv2d)


def test_a_layer_that_fails_to_build_leaves_the_model_unchanged_batchnorm_included():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    before = [type(m) for m in net]
    with pytest.raises(ValueError, match=r"converting '0': threshold=nan.*not changed"):
        bg.convert(net, rank=2, threshold=float("nan"))
    assert [type(m) for m in net] == before
    with pytest.raises(ValueError, match=r"converting '3'"):  # a per-unit θ the 2nd conv refuses
        bg.convert(net, rank=2, threshold=torch.full((1,), 0.1))
    assert [type(m) for m in net] == before
