"""The Bengio et al. (2003) MLP: embed each context character, concatenate, tanh layers, logits."""

from __future__ import annotations

import torch
from torch import nn

from nametool.runtime.schema import ModelConfig


class NameMLP(nn.Module):
    def __init__(self, vocab_size: int, config: ModelConfig, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.embed_dim)
        layers: list[nn.Module] = []
        width = config.context_size * config.embed_dim
        for size in config.hidden:
            layers.append(nn.Linear(width, size))
            if config.norm == "layer":
                layers.append(nn.LayerNorm(size))
            layers += [nn.Tanh(), nn.Dropout(dropout)]  # always present, so weight names never depend on it
            width = size
        layers.append(nn.Linear(width, vocab_size))
        self.mlp = nn.Sequential(*layers)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        x = self.embed(context).flatten(1)  # (batch, context_size * embed_dim)
        return self.mlp(x)  # (batch, vocab) logits
