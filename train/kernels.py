"""Training's own kernels: the same maths as the plain PyTorch form, computed faster on the CPU.

Each was chosen by measurement (figures beside it) and is tested against the plain form
(tests/test_train_kernels.py, tests/test_train_fold.py). Export never uses them; evaluation
folds wide first layers (``training.eval_folds``) through ``TableRowSum``'s forward.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

BLOCK = 1 << 18  # elements of a bf16 tanh block: its float32 copy stays in a core's cache


def bf16_tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh`` of a bfloat16 tensor, computed in float32 blocks and rounded: the same bits."""
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # the result itself, not a view of one
    width = x.shape[-1]
    rows = max(1, BLOCK // max(1, width))
    for part, out in zip(x.reshape(-1, width).split(rows), y.view(-1, width).split(rows)):
        out.copy_(torch.tanh_(part.float()))
    return y


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

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = bf16_tanh(x)
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


class StackedTanhMLP(torch.autograd.Function):
    """Every member's logits, embedding to last layer, in bfloat16 on the CPU, with a backward of its own:
    the arithmetic of the stacked autocast form (``NameEnsemble._stacked_logits``) without its casts.

    For members of Linear and Tanh layers only (no LayerNorm, no dropout). Inputs: ``ids``
    (members, batch, context) rows of the members' embedding tables laid end to end, then each
    member's parameters in order (embedding, then weight and bias of each Linear). The autocast
    form gathers float32 embeddings, casts them, and gets every weight's gradient transposed, then
    copies it into the weight's layout; here the rows come from a bf16 copy of the tables (the same
    values: rounding commutes with the gather), and the weight gradients are computed in the
    weights' own layout. Embedding gradients are added in float32 by ``index_add_``, as autograd's.
    On the 2-core Xeon (AMX), the default's step took 5.45 against 6.50 ms (5.85 against 6.81 in a
    noisier round), parameters equal to the bit after five AdamW steps there. Tested on any CPU:
    logits to the bit, gradients within one bf16 rounding, five steps' losses within 1e-3.
    """

    @staticmethod
    def forward(ctx, ids: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        members = ids.shape[0]
        per_member = len(params) // members
        kinds = [params[k::per_member] for k in range(per_member)]  # kinds[k]: parameter k of every member
        tables = _stack_bf16(kinds[0])  # (members, vocab, embed)
        x = tables.flatten(0, 1).index_select(0, ids.reshape(-1)).view(*ids.shape[:2], -1)
        inputs, weights = [x], []  # (members, batch, context * embed) first
        layers = (per_member - 1) // 2
        for layer in range(layers):
            weight = _stack_bf16(kinds[1 + 2 * layer])  # (members, out, in)
            bias = _stack_bf16(kinds[2 + 2 * layer]).unsqueeze(1)  # (members, 1, out)
            x = torch.baddbmm(bias, x, weight.transpose(1, 2))
            weights.append(weight)
            if layer < layers - 1:
                x = bf16_tanh(x)
                inputs.append(x)
        ctx.save_for_backward(ids, *inputs, *weights)
        ctx.table_shape = tables.shape
        return x  # (members, batch, vocab) bf16

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        ids, *saved = ctx.saved_tensors
        layers = len(saved) // 2
        inputs, weights = saved[:layers], saved[layers:]
        grad = grad.to(torch.bfloat16)
        kinds: list[torch.Tensor] = [None] * (1 + 2 * layers)
        for layer in reversed(range(layers)):
            x = inputs[layer]
            kinds[1 + 2 * layer] = torch.bmm(grad.transpose(1, 2), x).float()  # (members, out, in)
            kinds[2 + 2 * layer] = grad.sum(1).float()  # (members, out)
            grad = torch.bmm(grad, weights[layer])  # (members, batch, in)
            if layer > 0:
                grad = torch.ops.aten.tanh_backward(grad, x)
        members, vocab, dim = ctx.table_shape
        tables = torch.zeros(members * vocab, dim, dtype=torch.float32, device=grad.device)
        tables.index_add_(0, ids.reshape(-1), grad.float().view(-1, dim))
        kinds[0] = tables.view(members, vocab, dim)
        return None, *(kind[member] for member in range(members) for kind in kinds)


def _stack_bf16(params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """(members, *shape) bfloat16: each parameter rounded as ``.to(torch.bfloat16)`` rounds it."""
    out = torch.empty((len(params), *params[0].shape), dtype=torch.bfloat16, device=params[0].device)
    for slot, param in zip(out, params):
        slot.copy_(param.detach())
    return out


def adamw_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()`` of a fused AdamW on the CPU whose state exists: the same kernel call
    (``torch._fused_adamw_``, the same numbers, tested) without the Python that regroups and checks
    the tensors at every step: 0.17 against 0.27 ms for the default's 15 parameters on the 2-core
    Xeon. Any other optimizer or setting, and the first step (which creates the state), go
    through ``optimizer.step()``."""
    kernel = getattr(torch, "_fused_adamw_", None)  # private in torch 2.x: may vanish
    group = optimizer.param_groups[0]
    params = group["params"]
    states = [optimizer.state.get(p) for p in params]
    plain = (isinstance(optimizer, torch.optim.AdamW) and len(optimizer.param_groups) == 1 and group["fused"]
             and group.get("decoupled_weight_decay", True)  # every AdamW's; the key is new in torch 2.7
             and all(isinstance(value, float) for value in (group["lr"], *group["betas"]))
             and not any(group.get(flag) for flag in ("amsgrad", "maximize", "capturable", "differentiable"))
             and getattr(optimizer, "grad_scale", None) is None and getattr(optimizer, "found_inf", None) is None)
    if (kernel is None or not plain or not all(states)
            or any(p.grad is None or p.device.type != "cpu" or p.dtype != torch.float32 for p in params)):
        optimizer.step()
        return
    steps = [state["step"] for state in states]
    beta1, beta2 = group["betas"]
    with torch.no_grad():  # as optimizer.step() runs it
        torch._foreach_add_(steps, 1)
        kernel(params, [p.grad for p in params], [state["exp_avg"] for state in states],
               [state["exp_avg_sq"] for state in states], [], steps, amsgrad=False, lr=group["lr"], beta1=beta1,
               beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
