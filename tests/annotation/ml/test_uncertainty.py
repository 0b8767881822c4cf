"""Uncertainty scores for active learning: hand-computed entropy, MC dropout on a real network."""

from __future__ import annotations

import math

import pytest
import torch

from annotation.ml.uncertainty import entropy_score, mc_dropout_score


def test_entropy_is_one_for_a_coin_toss_and_zero_when_certain():
    uniform = torch.zeros(1, 2, 3, 3, 3)
    assert entropy_score(uniform).score == pytest.approx(1.0)
    certain = torch.zeros(1, 2, 3, 3, 3)
    certain[:, 1] = 50.0
    assert entropy_score(certain).score == pytest.approx(0.0, abs=1e-6)


def test_entropy_ignores_confident_background():
    logits = torch.zeros(1, 2, 1, 1, 4)
    logits[0, 0, ..., :3] = 50.0      # three confident background voxels
    logits[0, 1, ..., 3] = math.log(3)  # p(fg) = 0.75 in the last
    result = entropy_score(logits)
    p = torch.tensor([0.25, 0.75])
    assert result.roi_voxels == 1
    assert result.score == pytest.approx(float(-(p * p.log()).sum() / math.log(2)), rel=1e-5)
    with pytest.raises(ValueError):
        entropy_score(torch.zeros(1, 1, 2, 2, 2))


def test_mc_dropout_needs_dropout_and_reports_variance():
    from annotation.ml.networks import build_network

    torch.manual_seed(0)
    torch.set_num_threads(1)
    plain = build_network("unet", in_channels=1, out_channels=2, config={"channels": [4, 8], "strides": [2], "num_res_units": 0})
    x = torch.randn(1, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="no dropout"):
        mc_dropout_score(plain.eval(), lambda: plain(x), samples=3)
    dropped = build_network("unet", in_channels=1, out_channels=2,
                            config={"channels": [4, 8], "strides": [2], "num_res_units": 0, "dropout": 0.5}).eval()
    with torch.no_grad():
        result = mc_dropout_score(dropped, lambda: dropped(x), samples=4)
    assert result.samples == 4 and result.score > 0
    assert not any(m.training for m in dropped.modules())
    with pytest.raises(ValueError):
        mc_dropout_score(dropped, lambda: dropped(x), samples=1)
