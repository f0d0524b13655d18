"""Training with the first layer folded: the same maths as the lecture's form, used where it is faster."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402

from nametool.runtime.schema import ModelConfig  # noqa: E402
from nametool.train import training  # noqa: E402
from nametool.train.config import TrainConfig  # noqa: E402
from nametool.train.data import load_names  # noqa: E402
from nametool.train.model import build_model  # noqa: E402
from nametool.train.training import fold_pays, run_training  # noqa: E402

from .conftest import TINY_NAMES, assert_resumes_exactly  # noqa: E402

WIDE = ModelConfig(context_size=4, embed_dim=32, hidden=(48,), members=2)  # embed_dim >= vocab: folds in fp32
CONFIG = TrainConfig(steps=60, batch_size=32, lr=5e-3, warmup=5, eval_every=20, seed=3, precision="fp32")


@pytest.mark.parametrize("config", [WIDE, ModelConfig(3, 10, (20,)),
                                    ModelConfig(4, 6, (24, 16), norm="layer", members=3)])
def test_folded_gradients_equal_the_plain_ones(config):
    torch.manual_seed(1)
    model = build_model(27, config)
    contexts, targets = torch.randint(0, 27, (64, config.context_size)), torch.randint(0, 27, (64,))
    grads = {}
    for fold in (False, True):
        model.fold = fold
        model.zero_grad()
        loss = sum(F.cross_entropy(out, targets) for out in model.member_logits(contexts))
        loss.backward()
        grads[fold] = (loss.item(), [p.grad.clone() for p in model.parameters()])
    assert abs(grads[False][0] - grads[True][0]) < 1e-6
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads[False][1], grads[True][1]))


def test_the_table_gradient_is_the_in_order_sum_whatever_the_threads():
    from nametool.train.kernels import TableRowSum

    torch.manual_seed(2)
    ids = torch.randint(0, 27, (1024, 10)) + torch.arange(10) * 27  # the default's shape: large enough
    tables = torch.randn(10 * 27, 384, requires_grad=True)          # for PyTorch to split work on threads
    grad = torch.randn(1024, 384)
    found, saved = {}, torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            tables.grad = None
            TableRowSum.apply(ids, tables).backward(grad)
            found[threads] = tables.grad.clone()
    finally:
        torch.set_num_threads(saved)
    expected = torch.zeros_like(tables)
    for position in range(10):
        for row in range(1024):
            expected[ids[row, position]] += grad[row]
    assert torch.equal(found[1], expected) and torch.equal(found[2], expected)


def test_training_gathers_the_embeddings_as_eval_does():
    """Training reads E's rows by index_select (a faster backward), eval and export by nn.Embedding."""
    torch.manual_seed(3)
    model = build_model(27, ModelConfig(3, 10, (20,)))
    contexts, targets = torch.randint(0, 27, (200, 3)), torch.randint(0, 27, (200,))
    grads = {}
    for training in (True, False):
        model.train(training)
        model.zero_grad()
        logits = model(contexts)
        F.cross_entropy(logits, targets).backward()
        grads[training] = (logits.detach(), [p.grad.clone() for p in model.parameters()])
    assert torch.equal(grads[True][0], grads[False][0])
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(grads[True][1], grads[False][1]))


def test_the_rule_folds_fp32_wide_embeddings_only():
    assert fold_pays("fp32", WIDE, 27) and not fold_pays("bf16", WIDE, 27)
    assert not fold_pays("fp32", ModelConfig(3, 10, (200,)), 27)  # the lecture's shape


def test_a_folded_run_ends_where_the_plain_run_does(tmp_path, monkeypatch):
    names = load_names(TINY_NAMES)
    decided = []
    monkeypatch.setattr(training, "fold_pays", lambda *args: decided.append(fold_pays(*args)) or decided[-1])
    folded = run_training(names, WIDE, CONFIG, tmp_path / "folded.pt")
    assert decided == [True]  # this run really trained folded
    monkeypatch.setattr(training, "fold_pays", lambda *args: False)
    plain = run_training(names, WIDE, CONFIG, tmp_path / "plain.pt")
    assert all(abs(folded.losses[k] - plain.losses[k]) < 1e-4 for k in folded.losses)
    assert abs(folded.checkpoint.history["val_loss"][0] - plain.checkpoint.history["val_loss"][0]) < 1e-5


def test_resume_is_exact_with_the_folded_layer(tmp_path):
    names = load_names(TINY_NAMES)
    assert fold_pays(CONFIG.precision, WIDE, 27)
    assert_resumes_exactly(names, WIDE, CONFIG, tmp_path, 30)


def test_a_time_budget_sets_the_steps_from_measured_step_times(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from nametool.train.checkpoint import load_checkpoint
    from nametool.train.cli import main as tool_main

    monkeypatch.setattr(training, "measure_step_seconds", lambda *args, **kwargs: (0.004, 0.05))
    args = ["train", "--data", str(TINY_NAMES), "--context-size", "3", "--embed-dim", "6", "--hidden", "16",
            "--batch-size", "32", "--eval-every", "100", "--time-budget", "2", "--out", str(tmp_path / "m.pt")]
    result = CliRunner().invoke(tool_main, args)
    assert result.exit_code == 0, result.output
    steps = int(2 / (0.004 + 0.05 / 100))  # 444: the budget over a step and its share of an evaluation
    assert f"time budget 2 s: measured 4.00 ms a step and 50 ms an evaluation here; training {steps} steps" \
        in result.output
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt.train_config.steps == steps and ckpt.train_config.time_budget == 2.0
    assert ckpt.loop.step == steps


def test_measuring_the_step_time_leaves_torchs_random_state_as_it_was():
    names = load_names(TINY_NAMES)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    per_step, per_eval = training.measure_step_seconds(names, WIDE, replace(CONFIG, dropout=0.2))
    assert per_step > 0 and per_eval > 0
    assert torch.equal(torch.get_rng_state(), before)


def test_evaluation_folds_wide_first_layers_and_gives_the_plain_loss(monkeypatch):
    from nametool.train.training import Windows, eval_folds, mean_loss

    torch.manual_seed(5)
    wide, narrow = build_model(27, ModelConfig(8, 8, (32,), members=2)), build_model(27, ModelConfig(3, 10, (20,)))
    assert eval_folds(wide) and not eval_folds(narrow)  # 64 inputs and 30
    data = Windows(torch.randint(0, 27, (3000, 8)), torch.randint(0, 27, (3000,)))
    wide.train()
    folded = mean_loss(wide, data, chunk=1000)
    assert wide.training and not wide.fold  # the model's own mode and fold, restored
    monkeypatch.setattr(training, "eval_folds", lambda model: False)
    plain = mean_loss(wide, data, chunk=1000)
    monkeypatch.setattr(training, "eval_folds", lambda model: True)
    folds = []
    for member in wide.members:
        folded_layer = member._folded_first_layer
        monkeypatch.setattr(member, "_folded_first_layer", lambda c, f=folded_layer: folds.append(1) or f(c))
    assert mean_loss(wide, data, chunk=1000) == folded and len(folds) == 3 * 2  # 3 calls, 2 members
    assert folded == pytest.approx(plain, abs=1e-6)
