"""Training's faster paths to the same numbers: the bfloat16 tanh and stacked members."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402

from nametool.runtime.schema import ModelConfig  # noqa: E402
from nametool.train.kernels import BLOCK, FastTanh, _Bf16Tanh, adamw_step  # noqa: E402
from nametool.train.model import build_model  # noqa: E402


def every_bfloat16() -> torch.Tensor:
    """All 65,536 bfloat16 bit patterns: both zeros, subnormals, infinities and NaNs included."""
    return torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a.view(torch.int16) == b.view(torch.int16)) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("threads", [1, 2])
def test_the_bfloat16_tanh_gives_pytorchs_bits_forward_and_backward(threads):
    x = every_bfloat16().repeat(5).view(2560, 128)  # two blocks of BLOCK elements, one partial
    assert 1 < x.numel() / BLOCK < 2
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).bfloat16()
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        found = {}
        for name, tanh in (("ours", FastTanh()), ("torch", torch.tanh)):
            leaf = x.clone().requires_grad_()
            out = tanh(leaf)
            out.backward(grad)
            found[name] = (out.detach(), leaf.grad)
    finally:
        torch.set_num_threads(saved)
    assert found["ours"][0].dtype == torch.bfloat16
    assert same_bits(found["ours"][0], found["torch"][0])
    assert same_bits(found["ours"][1], found["torch"][1])


def test_fast_tanh_leaves_float32_and_empty_inputs_to_torch(monkeypatch):
    monkeypatch.setattr(_Bf16Tanh, "apply", lambda x: pytest.fail("float32 or empty input took the bf16 path"))
    x = torch.linspace(-5, 5, 101)
    assert torch.equal(FastTanh()(x), torch.tanh(x))
    for odd in (torch.tensor(0.5).bfloat16(), torch.zeros(3, 0).bfloat16(), torch.zeros(0, 4).bfloat16()):
        assert same_bits(FastTanh()(odd), torch.tanh(odd)) and FastTanh()(odd).shape == odd.shape


def test_the_bfloat16_tanh_returns_a_tensor_of_its_own():
    """Not a view: what follows may work in place on it, as on torch.tanh's result."""
    x = torch.randn(6, 5).bfloat16().t().requires_grad_()  # a non-contiguous input too
    y = FastTanh()(x)
    y.add_(0)
    assert y.shape == x.shape and y.is_contiguous()


@pytest.mark.parametrize("config", [ModelConfig(10, 32, (48,), members=3),
                                    ModelConfig(4, 6, (24, 16), norm="layer", members=2)])
def test_stacked_members_give_each_members_logits_and_gradients(config):
    """bf16 training runs an ensemble's members as one batched call per layer; the maths is each member's."""
    torch.manual_seed(1)
    model = build_model(27, config)
    model.train()
    contexts, targets = torch.randint(0, 27, (64, config.context_size)), torch.randint(0, 27, (64,))
    found = {}
    for way, logits in (("stacked", lambda c: model._stacked_logits(c).unbind(0)),
                        ("one by one", lambda c: [m(c) for m in model.members])):
        model.zero_grad()
        outputs = logits(contexts)  # float32 here, to compare the maths closely
        sum(F.cross_entropy(out, targets) for out in outputs).backward()
        found[way] = ([out.detach() for out in outputs], [p.grad.clone() for p in model.parameters()])
    assert len(found["stacked"][0]) == config.members
    for a, b in zip(*(found[way][0] + found[way][1] for way in found)):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()


def test_training_stacks_members_in_bf16_only():
    """bf16 training: members of Linear and Tanh layers take the fused stack, others the autocast stack;
    float32, folded and evaluation run member by member."""
    torch.manual_seed(1)
    plain = build_model(27, ModelConfig(10, 32, (48,), members=3))
    normed = build_model(27, ModelConfig(10, 32, (48,), norm="layer", members=3))
    dropped = build_model(27, ModelConfig(10, 32, (48,), members=3), dropout=0.1)
    contexts = torch.randint(0, 27, (64, 10))
    calls = []
    for model in (plain, normed, dropped):
        for way in ("_stacked_logits", "_fused_logits"):
            original = getattr(model, way)
            setattr(model, way, lambda c, way=way, original=original, model=model:
                    calls.append((model, way)) or original(c))
        model.train()
    one_by_one = [m(contexts) for m in plain.members]
    assert all(torch.equal(a, b) for a, b in zip(plain.member_logits(contexts), one_by_one)) and not calls
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = plain.member_logits(contexts)
        expected = [m(contexts) for m in plain.members]
        normed.member_logits(contexts)
        dropped.member_logits(contexts)
    assert calls == [(plain, "_fused_logits"), (normed, "_stacked_logits"), (dropped, "_stacked_logits")]
    assert all(a.dtype == torch.bfloat16 and torch.allclose(a.float(), b.float(), atol=0.05)
               for a, b in zip(outputs, expected))
    plain.fold = True  # folded (float32 on CPUs without AMX): member by member
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain.member_logits(contexts)
    plain.fold = False
    plain.eval()  # evaluation and export: member by member
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain.member_logits(contexts)
    assert len(calls) == 3


@pytest.mark.parametrize("config", [ModelConfig(10, 32, (48,), members=3), ModelConfig(4, 6, (24, 16), members=2)])
def test_the_fused_stack_computes_the_autocast_stacks_numbers(config):
    """StackedTanhMLP against the autocast form it replaces: the same bf16 operations, so the same logits to
    the bit; the weights' gradients come from products in another layout (the same sums, perhaps in
    another order: one bf16 rounding apart at most), and five AdamW steps' losses stay together (not the
    weights: a gradient that cancels to about zero may take either sign, and Adam's first steps move by
    the sign)."""
    contexts = torch.randint(0, 27, (5, 256, config.context_size))
    targets = contexts[..., -1]  # learnable: the last character again
    losses, found = {}, {}
    for way in ("_fused_logits", "_stacked_logits"):
        torch.manual_seed(3)
        model = build_model(27, config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        losses[way] = []
        for step in range(5):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = getattr(model, way)(contexts[step])
            loss = sum(F.cross_entropy(out.float(), targets[step]) for out in logits.unbind(0))
            optimizer.zero_grad()
            loss.backward()
            if step == 0:
                found[way] = (logits.detach(), [p.grad.clone() for p in model.parameters()])
            optimizer.step()
            losses[way].append(loss.item())
    (fused, fused_grads), (stacked, stacked_grads) = found["_fused_logits"], found["_stacked_logits"]
    assert fused.dtype == torch.bfloat16 and fused.shape == (config.members, 256, 27)
    assert same_bits(fused, stacked)
    assert all(a.dtype == torch.float32 and a.shape == b.shape for a, b in zip(fused_grads, stacked_grads))
    for a, b in zip(fused_grads, stacked_grads):
        assert torch.allclose(a, b, rtol=2 ** -7, atol=1e-6), (a - b).abs().max()
    assert losses["_fused_logits"] == pytest.approx(losses["_stacked_logits"], abs=1e-3)
    assert losses["_fused_logits"][-1] < losses["_fused_logits"][0] - 0.05  # five steps that learn


def test_stacked_members_in_bf16_keep_the_member_paths_dtypes_and_gradients():
    """With LayerNorm, the stacked path's activations stay bf16 as the member path's do."""
    config = ModelConfig(4, 6, (24, 16), norm="layer", members=2)
    torch.manual_seed(1)
    model = build_model(27, config)
    contexts, targets = torch.randint(0, 27, (256, 4)), torch.randint(0, 27, (256,))
    dtypes, grads = {}, {}
    for way in ("stacked", "one by one"):
        seen = []
        hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(args[0].dtype))
                 for member in model.members for m in member.mlp if isinstance(m, torch.nn.Tanh)]
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model.member_logits(contexts) if way == "stacked" else [m(contexts) for m in model.members]
        sum(F.cross_entropy(out.float(), targets) for out in outputs).backward()
        for hook in hooks:
            hook.remove()
        dtypes[way], grads[way] = set(seen), torch.cat([p.grad.flatten() for p in model.parameters()])
    assert dtypes["stacked"] == dtypes["one by one"] == {torch.bfloat16}
    # bf16 rounds the two paths differently: 3e-4 at most, measured, against gradients of 7e-3 on average
    assert torch.allclose(grads["stacked"], grads["one by one"], rtol=0.02, atol=1e-3)


def _adamw_runs(step, **options):
    """Parameters and optimizer state after six AdamW steps taken by ``step``, the optimizer rebuilt
    from its state dict after the third (as --resume does)."""
    torch.manual_seed(4)
    model = build_model(27, ModelConfig(4, 6, (24,), members=2))
    contexts, targets = torch.randint(0, 27, (6, 64, 4)), torch.randint(0, 27, (6, 64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1, **options)
    for index in range(6):
        if index == 3:
            saved = optimizer.state_dict()
            optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1, **options)
            optimizer.load_state_dict(saved)
        optimizer.param_groups[0]["lr"] = 0.01 * (index + 1)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model.member_logits(contexts[index]).flatten(0, 1), targets[index].repeat(2)).backward()
        step(optimizer)
    state = [value for p in model.parameters() for value in optimizer.state[p].values()]
    return list(model.parameters()) + state


@pytest.mark.parametrize("options", [{"fused": True}, {"fused": False}, {"fused": True, "amsgrad": True}])
def test_the_lean_adamw_step_gives_the_optimizers_own_numbers(options, monkeypatch):
    expected = _adamw_runs(torch.optim.AdamW.step, **options)
    step, fallbacks = torch.optim.AdamW.step, []
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self: fallbacks.append(1) or step(self))
    found = _adamw_runs(adamw_step, **options)
    assert len(found) == len(expected) and all(torch.equal(a, b) for a, b in zip(found, expected))
    # fused: only the first step creates state through optimizer.step (a loaded state counts as state)
    assert len(fallbacks) == (1 if options == {"fused": True} else 6)
