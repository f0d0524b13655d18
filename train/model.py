"""The Bengio et al. (2003) MLP: embed each context character, concatenate, tanh layers, logits.

``members > 1`` trains that many such MLPs side by side, each from its own
initial weights on the same batches, and predicts with the mean of their
next-character distributions (an ensemble): the averaged distribution is the
model, in training's evaluation, in the exported file and in generation.

Training computes the same maths in faster ways where they measured faster:
the first layer folded (fp32), the members stacked (bf16) and the bf16 tanh
through fp32; evaluation and export run the plain, member-by-member form.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from nametool.runtime.schema import ModelConfig


class TableRowSum(torch.autograd.Function):
    """``embedding_bag(ids, tables, mode="sum")`` with a faster backward: the tables' gradient is
    added up by ``index_add_``, one call per context position, in float32.

    PyTorch's own backward of ``embedding_bag`` sorts the ids first: 1.16 ms of a member's
    fp32 step at the default's shape (batch 1,024, ten positions, 384 wide), where these ten
    ``index_add_`` calls take 0.44 ms (the 2-core Xeon with AVX-512; under an AVX2-only proxy the
    folded step gains more, bench/train_fold.py). ``index_add_`` adds in the order of the
    ids on the CPU, whatever the thread count, so runs and resumes stay bit-exact (on CUDA it adds
    with atomics in no set order: used on the CPU only).
    """

    @staticmethod
    def forward(ctx, ids: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.table_shape, ctx.table_dtype = tables.shape, tables.dtype
        return F.embedding_bag(ids, tables, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (ids,) = ctx.saved_tensors
        grad_tables = torch.zeros(ctx.table_shape, dtype=torch.float32, device=grad.device)
        grad = grad.float()
        for position in range(ids.shape[1]):
            grad_tables.index_add_(0, ids[:, position], grad)
        return None, grad_tables.to(ctx.table_dtype)


class _Bf16Tanh(torch.autograd.Function):
    """``tanh`` of a bfloat16 tensor, computed in float32 and rounded: the same bits as PyTorch's bfloat16
    ``tanh`` (tested), which is 2.5x slower on the CPU than the float32 kernel plus both casts (1024 x 384
    elements: 295 against 118 us on the 2-core Xeon with AVX-512, 417 against 337 us under the AVX2-only
    proxy). In blocks of ``BLOCK`` elements, whose float32 copy stays in the core's cache: the
    default's three stacked members took 348 us so against 497 in one piece (1,001 against 1,148
    under the proxy). The backward is PyTorch's own, from the rounded result."""

    BLOCK = 1 << 18

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # the result itself, not a view of one
        width = x.shape[-1]
        rows = max(1, _Bf16Tanh.BLOCK // max(1, width))
        for part, out in zip(x.reshape(-1, width).split(rows), y.view(-1, width).split(rows)):
            out.copy_(torch.tanh_(part.float()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class FastTanh(nn.Tanh):
    """``nn.Tanh`` (the export traces it as ONNX Tanh), with bfloat16 inputs on the CPU taking ``_Bf16Tanh``:
    the same bits, faster."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16 and x.device.type == "cpu" and x.dim() > 0 and x.numel() > 0:
            return _Bf16Tanh.apply(x)
        return torch.tanh(x)


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
        blocks = first.weight.view(first.out_features, size, dim)  # (hidden, context, embed)
        tables = torch.einsum("ve,hce->cvh", self.embed.weight, blocks).reshape(size * vocab, -1)
        ids = context + torch.arange(size, device=context.device) * vocab
        if context.device.type == "cpu":  # TableRowSum's backward is exact on the CPU only
            rows = TableRowSum.apply(ids, tables)  # (batch, hidden)
        else:
            rows = F.embedding_bag(ids, tables, mode="sum")
        return rows + first.bias

    def member_logits(self, context: torch.Tensor) -> list[torch.Tensor]:
        """What training fits: each member's own logits."""
        return [self(context)]

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

    def member_logits(self, context: torch.Tensor) -> list[torch.Tensor]:
        if self.training and not self.fold and context.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            return list(self._stacked_logits(context).unbind(0))
        return [member(context) for member in self.members]

    def _stacked_logits(self, context: torch.Tensor) -> torch.Tensor:
        """Every member's logits from one batched call per layer over the stacked weights instead of
        one call per member: the members' maths, used in bf16 training on the CPU (bf16 rounds a
        LayerNorm's affine step separately here; with dropout, the members' masks are one draw).
        On the 2-core Xeon (AMX), whole runs of the default took 19.0 against 20.8 s
        (bench/train_time.py --against), the same test loss to four decimals. Not in float32,
        where MKL's batched product took 1.3x the time of one product per member for the
        default's first layer (with AVX-512 and under the AVX2 proxy), so stacking lost: 13.1
        against 10.8 ms a step plain, and with two folded hidden layers 19.2 against 17.2. bf16
        without AMX (oneDNN limited to AVX-512 BF16: 17.7 against 18.3 ms; to AVX2: 281 either way)
        does not lose by stacking. Not on
        CUDA: ``index_select``'s backward adds there with atomics, in no set order."""
        members, first = self.members, self.members[0]
        vocab = first.embed.num_embeddings
        offsets = torch.arange(len(members), device=context.device).view(-1, 1) * vocab  # (members, 1)
        embed = self._stack("embed.weight").flatten(0, 1)  # (members * vocab, embed)
        ids = (context.reshape(1, -1) + offsets).reshape(-1)
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


CharModel = NameMLP | NameEnsemble


def build_model(vocab_size: int, config: ModelConfig, dropout: float = 0.0) -> CharModel:
    """The network ``config`` describes, freshly initialised from torch's global generator."""
    kind = NameMLP if config.members == 1 else NameEnsemble
    return kind(vocab_size, config, dropout)
