"""Connectors: learned maps from a modality's evidence vectors to soft tokens of the LLM.

The LLM reads the clip partly as text (a short line per evidence record) and partly as ``k``
soft tokens per modality, vectors of its own hidden size placed in the prompt through
``inputs_embeds``. Two kinds, selectable per modality (:class:`ConnectorSpec`):

- ``mlp``: mean-pool the sequence (frames or turns), then a 2-layer MLP to ``k * hidden``;
  cheap, order-free, enough when one vector summarises the clip (a text embedding).
- ``qformer``: ``k`` learned queries cross-attend over the projected sequence (one block of
  cross-attention + feed-forward, as BLIP-2's Q-Former without its self-attention stack), so a
  long face sequence can keep *which* frames showed what.

Inputs, per modality (shapes are per clip, the batch is padded with a mask):

======  =========  ================================================================
face    (n, 128)   L2-normalised expression embeddings, one per sampled frame
voice   (n, 88)    eGeMAPSv02 functionals per speech turn, standardised (:class:`Standardiser`)
text    (n, 384)   L2-normalised MiniLM sentence embeddings per transcript segment
======  =========  ================================================================
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["DIMS", "Connector", "ConnectorSpec", "MLPProjector", "QFormer", "build_connector"]

DIMS: dict[str, int] = {"face": 128, "voice": 88, "text": 384}
"""Input width of each modality's vectors."""

Kind = Literal["mlp", "qformer"]


class ConnectorSpec(BaseModel):
    """One modality's connector: ``kind``, ``tokens`` (soft tokens it adds to the prompt) and
    ``width`` (its inner width; the Q-Former's attention width)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "mlp"
    tokens: int = Field(default=2, ge=1, le=64)
    width: int = Field(default=256, ge=8)
    heads: int = Field(default=4, ge=1)


class Connector(nn.Module):
    """Maps ``x`` (batch, n, dim) with ``mask`` (batch, n; True = real) to (batch, k, hidden).

    A clip with no vectors of the modality (mask all False) gets the learned ``empty`` tokens,
    so the prompt keeps its shape and the model can learn what "no face" looks like."""

    def __init__(self, dim: int, hidden: int, tokens: int) -> None:
        super().__init__()
        self.dim, self.hidden, self.tokens = dim, hidden, tokens
        self.empty = nn.Parameter(torch.zeros(tokens, hidden))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.project(x, mask)
        present = mask.any(dim=1)[:, None, None]
        return torch.where(present, out, self.empty.expand_as(out))

    def project(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MLPProjector(Connector):
    """Masked mean over the sequence, then Linear-GELU-Linear to ``tokens * hidden``."""

    def __init__(self, dim: int, hidden: int, tokens: int = 2, width: int = 256) -> None:
        super().__init__(dim, hidden, tokens)
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width), nn.GELU(),
                                 nn.Linear(width, tokens * hidden))

    def project(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.to(x.dtype)[..., None]
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.net(pooled).view(x.shape[0], self.tokens, self.hidden)


class QFormer(Connector):
    """``tokens`` learned queries cross-attending over the projected sequence, then a
    feed-forward block and a projection to the LLM's hidden size."""

    def __init__(self, dim: int, hidden: int, tokens: int = 4, width: int = 256,
                 heads: int = 4) -> None:
        super().__init__(dim, hidden, tokens)
        self.inp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, width))
        self.queries = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.attend = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.out = nn.Linear(width, hidden)

    def project(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keys = self.inp(x)
        queries = self.queries.expand(x.shape[0], -1, -1)
        # a clip without vectors would make the softmax NaN: let it attend to its padding
        # (the result is replaced by the ``empty`` tokens in forward)
        blocked = ~mask & mask.any(dim=1, keepdim=True)
        attended, _ = self.attend(queries, keys, keys, key_padding_mask=blocked,
                                  need_weights=False)
        h = self.norm(queries + attended)
        return self.out(h + self.ff(h))


def build_connector(modality: str, spec: ConnectorSpec, hidden: int) -> Connector:
    """The connector ``spec`` names for ``modality``, mapping its vectors to ``hidden``."""
    dim = DIMS[modality]
    if spec.kind == "mlp":
        return MLPProjector(dim, hidden, spec.tokens, spec.width)
    return QFormer(dim, hidden, spec.tokens, spec.width, spec.heads)
