"""Network architectures (torch). Small on purpose: they run on CPU for many patients."""

from __future__ import annotations

import torch
from torch import nn

from models import preprocess as pp


class BeatNet(nn.Module):
    """1D-CNN over a beat-centred segment, fused with RR-interval context features.

    Input: segment ``(n, leads, BEAT_LEN)`` and context ``(n, N_CONTEXT_FEATURES)`` (RR
    features then morphology-vs-template features); output logits ``(n, 5)`` for AAMI
    classes N, S, V, F, Q.

    ``n_leads=2``: the second channel is a second ECG lead at the same R positions. A
    segment with one channel, or whose second channel is all zeros, is a one-lead beat:
    the second channel is zero-filled and a lead-present flag (0/1, derived from the
    input, so no caller can get it wrong) joins the context features. Training blanks the
    second lead of a share of the beats (channel dropout), so one lead keeps working.
    ``n_leads=1`` is beats-1.0.0's network (a second channel is ignored).
    """

    def __init__(self, n_classes: int = 5, n_rr: int = pp.N_CONTEXT_FEATURES, width: int = 16,
                 n_leads: int = 1):
        super().__init__()
        w = width
        self.n_leads = n_leads
        self.features = nn.Sequential(
            nn.Conv1d(n_leads, w, 7, padding=3), nn.BatchNorm1d(w), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(w, 2 * w, 5, padding=2), nn.BatchNorm1d(2 * w), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(2 * w, 2 * w, 5, padding=2), nn.BatchNorm1d(2 * w), nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm1d(2 * w), nn.ReLU(),
            nn.AdaptiveAvgPool1d(11),
        )
        self.rr = nn.Sequential(nn.Linear(n_rr + (1 if n_leads > 1 else 0), 16), nn.ReLU())
        self.head = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(2 * w * 11 + 16, 64), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(64, n_classes),
        )

    def forward(self, segment: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        # log of RR features: ratios around 1 become symmetric around 0.
        n_rr = pp.N_RR_FEATURES
        ctx = torch.cat([torch.log(rr[:, :n_rr].clamp_min(1e-3)), rr[:, n_rr:]], dim=1)
        if self.n_leads == 1:
            segment = segment[:, :1]
        else:
            segment, present = with_second_lead(segment)
            ctx = torch.cat([ctx, present[:, None]], dim=1)
        z = self.features(segment).flatten(1)
        r = self.rr(ctx)
        return self.head(torch.cat([z, r], dim=1))


def with_second_lead(segment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 2, L)`` segments (a one-channel input gets a zero second lead) and the
    lead-present flag ``(n,)``: 1 where the second channel is not all zeros."""
    if segment.shape[1] == 1:
        zeros = torch.zeros_like(segment)
        return torch.cat([segment, zeros], dim=1), torch.zeros(segment.shape[0])
    two = segment[:, :2]
    return two, (two[:, 1].abs().amax(dim=1) > 0).to(segment.dtype)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, kernel: int = 7):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm1d(c_out), nn.ReLU(),
            nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm1d(c_out),
        )
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False),
                                      nn.BatchNorm1d(c_out))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class RhythmNet(nn.Module):
    """Residual 1D-CNN over a single-lead ECG window (``(n, 1, RHYTHM_LEN)`` at 250 Hz),
    logits for rhythm classes N, A, O, ~. Global average + max pooling make it accept
    other window lengths too."""

    def __init__(self, n_classes: int = 4, widths: tuple[int, ...] = (24, 32, 48, 64, 64),
                 n_rr: int = 0):
        super().__init__()
        # Optional RR-irregularity features of the window (models.preprocess.rhythm_rr_features),
        # fused with the pooled CNN features before the classifier.
        self.n_rr = n_rr
        self.stem = nn.Sequential(
            nn.Conv1d(1, widths[0], 15, stride=2, padding=7, bias=False),
            nn.BatchNorm1d(widths[0]), nn.ReLU(), nn.MaxPool1d(2),
        )
        blocks = []
        c = widths[0]
        for w in widths:
            blocks.append(ResBlock(c, w, stride=2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        rr_width = 16 if n_rr else 0
        self.rr = nn.Sequential(nn.Linear(n_rr, rr_width), nn.ReLU()) if n_rr else None
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * c + rr_width, n_classes))

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        z = self.blocks(self.stem(x))
        z = torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1)
        if self.rr is not None:
            if rr is None:
                raise ValueError(f"this RhythmNet needs {self.n_rr} RR features per window")
            z = torch.cat([z, self.rr(rr)], dim=1)
        return self.head(z)
