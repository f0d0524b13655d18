"""The Bengio et al. (2003) MLP: embed each context character, concatenate, tanh layers, logits.

``members > 1`` trains that many such MLPs side by side, each from its own
initial weights on the same batches, and predicts with the mean of their
next-character distributions (an ensemble): the averaged distribution is the
model, in training's evaluation, in the exported file and in generation.

Training computes the same maths in faster ways where they measured faster
(train/kernels.py): the first layer folded (fp32), the members stacked (bf16)
and the bf16 tanh through fp32. Evaluation runs member by member in fp32,
with wide first layers folded (training.eval_folds); export traces the plain
form.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nametool.runtime.schema import ModelConfig
from nametool.train.kernels import FastTanh, StackedTanhMLP, TableRowSum


class NameMLP(nn.Module):
    """One member: context ids -> next-character logits."""

    def __init__(self, vocab_size: int, config: ModelConfig, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.embed_dim)
        layers: list[nn.Module] = []
        width = config.context_size * config.embed_dim
        for size in config.hidden:
            layers.append(nn.Linear(width, size))
            if config.norm == "layer":
                layers.append(nn.LayerNorm(size))
            layers += [FastTanh(), nn.Dropout(dropout)]  # always present, so weight names never depend on it
            width = size
        layers.append(nn.Linear(width, vocab_size))
        self.mlp = nn.Sequential(*layers)

    fold = False  # compute the first layer as summed per-position tables (set by training; same maths)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        if self.fold:
            return self.mlp[1:](self._folded_first_layer(context))  # (batch, vocab) logits
        # In training on the CPU, E's rows by index_select, whose backward is an in-order index_add_:
        # the values of self.embed(context) without nn.Embedding's sorting backward (bf16 steps 1.16x
        # as fast). Export traces the eval form, the Gather that export/fold.py reads; on CUDA,
        # index_add_ adds with atomics in no set order, and nn.Embedding's backward stays.
        if self.training and context.device.type == "cpu":
            x = self.embed.weight.index_select(0, context.reshape(-1)).view(len(context), -1)
        else:
            x = self.embed(context).flatten(1)  # (batch, context_size * embed_dim)
        return self.mlp(x)  # (batch, vocab) logits

    def _folded_first_layer(self, context: torch.Tensor) -> torch.Tensor:
        """``concat_i E[c_i] @ W1.T`` as ``sum_i (E @ W1_i.T)[c_i]``: the tables ``T_i = E @ W1_i.T``
        once per call, then one row per position, summed (``embedding_bag``). Gradients reach E and
        W1 through the tables, exactly as through the concatenation."""
        first, (vocab, dim) = self.mlp[0], self.embed.weight.shape
        size = context.shape[1]
        # One product, (hidden * context, embed) @ (embed, vocab), then laid out as (context * vocab, hidden):
        # forward and backward 199 against 427 us for einsum("ve,hce->cvh"), whose layout copies cost
        # more than its products (a member of the default, 2-core Xeon); the default's fp32 step 6.72
        # against 7.50 ms, 7.96 against 8.72 under the AVX2 proxy.
        tables = torch.mm(first.weight.view(-1, dim), self.embed.weight.t())  # (hidden * context, vocab)
        tables = tables.view(first.out_features, size, vocab).permute(1, 2, 0).contiguous().view(size * vocab, -1)
        ids = context + torch.arange(size, device=context.device) * vocab
        if context.device.type == "cpu":  # TableRowSum's backward is exact on the CPU only
            rows = TableRowSum.apply(ids, tables)  # (batch, hidden)
        else:
            rows = F.embedding_bag(ids, tables, mode="sum")
        return rows + first.bias

    def member_logits(self, context: torch.Tensor) -> torch.Tensor:
        """What training fits: each member's own logits, (members, batch, vocab)."""
        return self(context).unsqueeze(0)

    @property
    def embedding(self) -> torch.Tensor:
        return self.embed.weight


class NameEnsemble(nn.Module):
    """Several members; the logits are the log of their mean distribution."""

    def __init__(self, vocab_size: int, config: ModelConfig, dropout: float = 0.0):
        super().__init__()
        self.members = nn.ModuleList(NameMLP(vocab_size, config, dropout) for _ in range(config.members))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        logprobs = torch.stack([F.log_softmax(member(context), dim=-1) for member in self.members])
        return torch.logsumexp(logprobs, dim=0) - math.log(len(self.members))

    def member_logits(self, context: torch.Tensor) -> torch.Tensor:
        if self.training and not self.fold and context.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            if _tanh_only(self.members[0]) and torch.get_autocast_dtype("cpu") == torch.bfloat16:
                return self._fused_logits(context)
            return self._stacked_logits(context)
        return torch.stack([member(context) for member in self.members])

    def _fused_logits(self, context: torch.Tensor) -> torch.Tensor:
        """``_stacked_logits`` for members of Linear and Tanh layers, forward and backward written out
        (``StackedTanhMLP``): the default's bf16 step 1.16 to 1.19 times as fast on the 2-core Xeon (AMX)."""
        params = [p for member in self.members for p in member.parameters()]  # embedding, then each Linear's
        return StackedTanhMLP.apply(self._member_ids(context), *params)  # (members, batch, vocab)

    def _member_ids(self, context: torch.Tensor) -> torch.Tensor:
        """(members, batch, context) rows of the members' embedding tables laid end to end."""
        vocab = self.members[0].embed.num_embeddings
        return context.unsqueeze(0) + torch.arange(len(self.members), device=context.device).view(-1, 1, 1) * vocab

    def _stacked_logits(self, context: torch.Tensor) -> torch.Tensor:
        """Every member's logits from one batched call per layer over the stacked weights instead of
        one call per member: the members' maths, used in bf16 training on the CPU for members with
        LayerNorm or dropout (others take ``_fused_logits``; bf16 rounds a
        LayerNorm's affine step separately here; with dropout, the members' masks are one draw).
        On the 2-core Xeon (AMX), whole runs of the default took 19.0 against 20.8 s
        (bench/train_time.py --against), the same test loss to four decimals. Not in float32,
        where MKL's batched product took 1.3x the time of one product per member for the
        default's first layer (with AVX-512 and under the AVX2 proxy), so stacking lost: 13.1
        against 10.8 ms a step plain, and with two folded hidden layers 19.2 against 17.2. bf16
        without AMX (oneDNN limited to AVX-512 BF16: 17.7 against 18.3 ms; to AVX2: 281 either way)
        does not lose by stacking. Not on CUDA: ``index_select``'s backward adds there with atomics,
        in no set order."""
        members, first = self.members, self.members[0]
        embed = self._stack("embed.weight").flatten(0, 1)  # (members * vocab, embed)
        ids = self._member_ids(context).reshape(-1)
        x = embed.index_select(0, ids).view(len(members), len(context), -1)  # (members, batch, context * embed)
        for index, layer in enumerate(first.mlp):
            if isinstance(layer, (nn.Linear, nn.LayerNorm)):
                weight, bias = self._stack(f"mlp.{index}.weight"), self._stack(f"mlp.{index}.bias").unsqueeze(1)
            if isinstance(layer, nn.Linear):
                x = torch.baddbmm(bias, x, weight.transpose(1, 2))  # weight (members, out, in)
            elif isinstance(layer, nn.LayerNorm):
                normed = F.layer_norm(x, layer.normalized_shape, eps=layer.eps)
                x = torch.addcmul(bias.to(normed.dtype), normed, weight.unsqueeze(1).to(normed.dtype))
            elif isinstance(layer, (nn.Tanh, nn.Dropout)):  # no weights: one module serves every member
                x = layer(x)
            else:
                raise TypeError(f"stacked members: no rule for {type(layer).__name__}")
        return x  # (members, batch, vocab)

    def _stack(self, name: str) -> torch.Tensor:
        """One parameter of every member, stacked: (members, *shape)."""
        return torch.stack([member.get_parameter(name) for member in self.members])

    @property
    def fold(self) -> bool:
        return self.members[0].fold

    @fold.setter
    def fold(self, value: bool) -> None:
        for member in self.members:
            member.fold = value

    @property
    def embedding(self) -> torch.Tensor:
        """The first member's (each member learns its own)."""
        return self.members[0].embed.weight


def _tanh_only(member: NameMLP) -> bool:
    """Whether the member is Linear and Tanh layers only (dropout off), the layers ``StackedTanhMLP`` knows."""
    return all(isinstance(layer, (nn.Linear, nn.Tanh)) or (isinstance(layer, nn.Dropout) and layer.p == 0)
               for layer in member.mlp)


CharModel = NameMLP | NameEnsemble


def build_model(vocab_size: int, config: ModelConfig, dropout: float = 0.0) -> CharModel:
    """The network ``config`` describes, freshly initialised from torch's global generator."""
    kind = NameMLP if config.members == 1 else NameEnsemble
    return kind(vocab_size, config, dropout)
