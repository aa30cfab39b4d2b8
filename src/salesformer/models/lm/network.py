"""The LM forecaster's network: a text encoder fused with history, covariates and statics.

Fusion design (TiDE-style dense encoder/decoder, chosen for speed on CPUs and robustness on
short, lumpy retail series):

1. the pooled text vector of the item (mean of the encoder's token states, L2-normalised) is
   projected to ``text_size`` and layer-normalised;
2. one flat vector joins the scaled history window, its observed-mask, the static features,
   the text projection and a small projection of every future step's covariates;
3. residual MLP blocks encode it and a linear decoder emits one vector per horizon step;
4. a temporal residual block reads each step's vector with that step's own covariates (so a
   promotion or price change acts on its own week) and emits the quantiles;
5. a linear skip from the history window to the horizon adds a level-and-trend path.

Quantiles cannot cross by construction: the median is emitted directly and the other levels
are the median plus (minus) cumulative softplus increments.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Linear -> ReLU -> Linear -> dropout, plus a linear skip, then layer norm."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Sequential(
            nn.Linear(n_in, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_out),
            nn.Dropout(dropout),
        )
        self.skip = nn.Linear(n_in, n_out)
        self.norm = nn.LayerNorm(n_out)

    def forward(self, x: Any) -> Any:
        return self.norm(self.dense(x) + self.skip(x))


class FusionHead(nn.Module):
    """Maps (history, statics, future covariates, text vector) to quantiles per step."""

    def __init__(
        self,
        *,
        context: int,
        horizon: int,
        n_future: int,
        n_static: int,
        text_dim: int,
        n_quantiles: int,
        median_index: int,
        hidden_size: int = 256,
        text_size: int = 64,
        decoder_size: int = 16,
        future_size: int = 4,
        n_blocks: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.horizon = horizon
        self.n_quantiles = n_quantiles
        self.median_index = median_index
        self.decoder_size = decoder_size
        self.text_dim = text_dim
        self.text_proj = nn.Sequential(nn.Linear(text_dim, text_size), nn.LayerNorm(text_size))
        self.future_proj = nn.Linear(n_future, future_size)
        n_in = 2 * context + n_static + text_size + horizon * future_size
        blocks = [ResidualBlock(n_in, hidden_size, hidden_size, dropout)]
        blocks += [
            ResidualBlock(hidden_size, hidden_size, hidden_size, dropout)
            for _ in range(n_blocks - 1)
        ]
        self.encoder = nn.Sequential(*blocks)
        self.decoder = nn.Linear(hidden_size, horizon * decoder_size)
        self.temporal = ResidualBlock(
            decoder_size + n_future + text_size, hidden_size // 4, n_quantiles, dropout
        )
        self.skip = nn.Linear(context, horizon)

    def forward(self, hist: Any, hist_mask: Any, static: Any, future: Any, text: Any) -> Any:
        """Quantiles of the scaled target, shape (batch, horizon, n_quantiles), sorted."""
        batch = hist.shape[0]
        text_vec = self.text_proj(text)
        projected = self.future_proj(future).reshape(batch, -1)
        joined = torch.cat([hist, hist_mask, static, text_vec, projected], dim=1)
        encoded = self.encoder(joined)
        decoded = self.decoder(encoded).reshape(batch, self.horizon, self.decoder_size)
        per_step_text = text_vec.unsqueeze(1).expand(-1, self.horizon, -1)
        raw = self.temporal(torch.cat([decoded, future, per_step_text], dim=2))
        median = raw[..., self.median_index] + self.skip(hist)
        gaps = nn.functional.softplus(raw) + 1e-4
        m = self.median_index
        above = median.unsqueeze(-1) + torch.cumsum(gaps[..., m + 1 :], dim=-1)
        below = median.unsqueeze(-1) - torch.cumsum(gaps[..., :m].flip(-1), dim=-1).flip(-1)
        return torch.cat([below, median.unsqueeze(-1), above], dim=-1)


def pinball_loss(predicted: Any, target: Any, mask: Any, weight: Any, levels: Any) -> Any:
    """Mean pinball loss over quantile levels, weighted per sample, over unmasked cells."""
    error = target.unsqueeze(-1) - predicted
    loss = torch.maximum(levels * error, (levels - 1.0) * error).mean(dim=-1)
    cell_weight = mask * weight.unsqueeze(-1)
    return (loss * cell_weight).sum() / cell_weight.sum().clamp(min=1e-6)
