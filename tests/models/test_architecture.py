"""models/architecture.py: the two-lead beat network works with one lead."""

from __future__ import annotations

import torch

from models import preprocess as pp
from models.architecture import BeatNet, with_second_lead


def test_lead_present_flag_follows_the_second_channel() -> None:
    seg = torch.randn(4, 2, pp.BEAT_LEN)
    seg[1, 1] = 0.0
    two, present = with_second_lead(seg)
    assert two.shape == (4, 2, pp.BEAT_LEN)
    assert present.tolist() == [1.0, 0.0, 1.0, 1.0]
    one, present1 = with_second_lead(seg[:, :1])
    assert one.shape == (4, 2, pp.BEAT_LEN) and torch.all(one[:, 1] == 0)
    assert present1.tolist() == [0.0] * 4


def test_two_lead_net_gives_the_same_answer_for_one_lead_and_a_blank_second_lead() -> None:
    torch.manual_seed(0)
    net = BeatNet(n_leads=2).eval()
    seg = torch.randn(5, 1, pp.BEAT_LEN)
    rr = torch.rand(5, pp.N_CONTEXT_FEATURES) + 0.5
    blank = torch.cat([seg, torch.zeros_like(seg)], dim=1)
    with torch.inference_mode():
        torch.testing.assert_close(net(seg, rr), net(blank, rr))
        assert net(torch.cat([seg, seg], dim=1), rr).shape == (5, 5)


def test_one_lead_net_ignores_a_second_lead() -> None:
    torch.manual_seed(0)
    net = BeatNet().eval()
    seg = torch.randn(3, 2, pp.BEAT_LEN)
    rr = torch.rand(3, pp.N_CONTEXT_FEATURES) + 0.5
    with torch.inference_mode():
        torch.testing.assert_close(net(seg, rr), net(seg[:, :1], rr))
