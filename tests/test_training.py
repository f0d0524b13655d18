"""Better training: best weights, early stopping, resume, Ctrl-C, normalisation, devices."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from nametool.export.onnx_export import export_onnx, validation_contexts  # noqa: E402
from nametool.runtime import NameModel  # noqa: E402
from nametool.runtime.errors import NametoolError  # noqa: E402
from nametool.runtime.schema import ModelConfig  # noqa: E402
from nametool.runtime.windows import build_windows  # noqa: E402
from nametool.train.checkpoint import load_checkpoint  # noqa: E402
from nametool.train.cli import main as tool_main  # noqa: E402
from nametool.train.config import TrainConfig  # noqa: E402
from nametool.train.data import load_names  # noqa: E402
from nametool.train import training  # noqa: E402
from nametool.train.training import resume_training, run_training  # noqa: E402

from .conftest import TINY_NAMES  # noqa: E402
from .test_parity import max_prob_diff  # noqa: E402

SMALL = ModelConfig(context_size=3, embed_dim=6, hidden=(24,), norm="layer")
CONFIG = TrainConfig(steps=120, batch_size=32, lr=5e-3, warmup=10, eval_every=40, dropout=0.1, seed=5)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("members, precision, plain", [
    (1, "auto", False), (1, "bf16", False), (2, "bf16", False), (2, "fp32", False),
    (2, "bf16", True),  # Linear and Tanh members, no dropout: StackedTanhMLP and the lean AdamW step
])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, members, precision, plain):
    names = load_names(TINY_NAMES)
    config, train_config = replace(SMALL, members=members), replace(CONFIG, precision=precision)
    if plain:
        config, train_config = replace(config, norm="none"), replace(train_config, dropout=0.0)
    whole = run_training(names, config, train_config, tmp_path / "whole.pt")
    calls = {"n": 0}

    def stop_after_70():
        calls["n"] += 1
        return calls["n"] > 70

    part = run_training(names, config, train_config, tmp_path / "part.pt", should_stop=stop_after_70)
    assert part.stopped == "interrupted" and part.checkpoint.loop.step == 70
    resumed = resume_training(tmp_path / "part.pt")
    assert resumed.stopped == "finished" and resumed.checkpoint.loop.step == 120
    a, b = weights(whole.checkpoint.model), weights(resumed.checkpoint.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.checkpoint.history == resumed.checkpoint.history
    assert whole.losses == resumed.losses


def test_resuming_from_the_file_an_evaluation_saved_is_exact_with_dropout(tmp_path):
    """A killed run resumes from its last evaluation's save: the save must not move the dropout stream."""
    import shutil

    names = load_names(TINY_NAMES)
    whole = run_training(names, SMALL, CONFIG, tmp_path / "whole.pt")
    saved_at_40 = tmp_path / "at40.pt"

    def keep_the_save_at_40(step, train_loss, val_loss):
        if step == 40:
            shutil.copy(tmp_path / "run.pt", saved_at_40)

    run_training(names, SMALL, CONFIG, tmp_path / "run.pt", progress=keep_the_save_at_40)
    assert load_checkpoint(saved_at_40).loop.step == 40
    resumed = resume_training(saved_at_40)
    a, b = weights(whole.checkpoint.model), weights(resumed.checkpoint.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.losses == resumed.losses


def test_checkpoints_from_before_precision_resume_in_fp32(tmp_path, monkeypatch):
    import json

    path = tmp_path / "old.pt"
    run_training(load_names(TINY_NAMES), SMALL, replace(CONFIG, steps=40), path)
    payload = torch.load(path, weights_only=True)
    config = json.loads(payload["train_config"])
    del config["precision"]
    payload["train_config"] = json.dumps(config)
    torch.save(payload, path)
    assert load_checkpoint(path).train_config.precision == "fp32"  # not "auto", which is bf16 on AMX
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(training, "BF16_MIN_MACS", 0)  # "auto" would take bf16 for this small model too
    assert resume_training(path).checkpoint.train_config.precision == "fp32"


def test_the_checkpoint_keeps_the_best_val_weights(tmp_path):
    names = load_names(TINY_NAMES)
    config = TrainConfig(steps=800, batch_size=64, lr=1e-2, warmup=0, eval_every=50, seed=1)  # overfits
    result = run_training(names, ModelConfig(3, 32, (256,)), config, tmp_path / "m.pt")
    history = result.checkpoint.history["val_loss"]
    assert min(history) < history[-1]  # the last weights are not the best ...
    saved = load_checkpoint(tmp_path / "m.pt")
    contexts, targets = build_windows(saved.splits["val"], saved.meta.vocab, saved.meta.model.context_size)
    with torch.no_grad():
        logits = saved.model.eval()(torch.from_numpy(contexts))
    val_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets)).item()
    assert val_loss == pytest.approx(min(history), abs=1e-6)  # ... the saved ones are
    assert saved.meta.provenance.val_loss == pytest.approx(val_loss, abs=1e-6)  # and the file says so


def test_patience_stops_early(tmp_path):
    names = load_names(TINY_NAMES)
    config = TrainConfig(steps=3000, batch_size=32, lr=3e-2, warmup=0, eval_every=20, patience=2, seed=1)
    result = run_training(names, ModelConfig(3, 16, (128,)), config, tmp_path / "m.pt")
    assert result.stopped == "early stop" and result.checkpoint.loop.step < 3000
    history = result.checkpoint.history["val_loss"]
    best = history.index(min(history))
    assert len(history) - 1 - best == 2


def test_layer_norm_exports_within_parity(tmp_path):
    names = load_names(TINY_NAMES)
    result = run_training(names, SMALL, CONFIG, tmp_path / "m.pt")
    with pytest.raises(NametoolError, match="no layer norm: export this model with --form float"):
        export_onnx(result.checkpoint, tmp_path / "m.onnx")  # the exact form, the default
    assert not (tmp_path / "m.onnx").exists()
    export_onnx(result.checkpoint, tmp_path / "m.onnx", form="float")
    model = NameModel.load(tmp_path / "m.onnx")
    assert max_prob_diff(result.checkpoint, model, validation_contexts(result.checkpoint)) <= 1e-5
    assert model.meta.model.norm == "layer"
    param_count = sum(p.numel() for p in result.checkpoint.model.parameters())
    assert model.meta.model.parameter_count(len(model.vocab)) == param_count


def test_ctrl_c_saves_and_resume_finishes(tmp_path):
    out = tmp_path / "run.pt"
    args = [sys.executable, "-m", "nametool.train.cli", "train", "--data", str(TINY_NAMES),
            "--context-size", "3", "--embed-dim", "8", "--hidden", "64", "--steps", "3000",
            "--eval-every", "50", "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:  # the first evaluation saves
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted at step" in stdout and "--resume" in stdout and "Traceback" not in stderr
    saved = load_checkpoint(out)
    assert 0 < saved.loop.step < 3000
    resumed = CliRunner().invoke(tool_main, ["train", "--resume", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(out).loop.step == 3000


def test_cuda_when_absent_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without CUDA
    result = CliRunner().invoke(tool_main, ["train", "--data", str(TINY_NAMES), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA device here" in result.output


def test_an_ensemble_predicts_the_mean_of_its_members_distributions():
    from nametool.train.model import NameEnsemble, build_model

    torch.manual_seed(0)
    model = build_model(5, ModelConfig(context_size=3, embed_dim=4, hidden=(8,), members=3))
    assert isinstance(model, NameEnsemble)
    contexts = torch.randint(0, 5, (16, 3))
    members = torch.stack([torch.softmax(logits, -1) for logits in model.member_logits(contexts)])
    assert not torch.allclose(members[0], members[1])  # each member starts from its own weights
    torch.testing.assert_close(torch.softmax(model(contexts), -1), members.mean(0))


def test_an_ensemble_trains_exports_within_parity_and_says_so(tmp_path):
    names = load_names(TINY_NAMES)
    config = ModelConfig(context_size=3, embed_dim=6, hidden=(24,), members=2)
    result = run_training(names, config, CONFIG, tmp_path / "m.pt")
    export_onnx(result.checkpoint, tmp_path / "m.onnx", form="float")
    model = NameModel.load(tmp_path / "m.onnx")
    assert max_prob_diff(result.checkpoint, model, validation_contexts(result.checkpoint)) <= 1e-5
    assert model.meta.model.members == 2
    assert model.meta.model.parameter_count(len(model.vocab)) == sum(
        p.numel() for p in result.checkpoint.model.parameters())
    # averaging distributions never loses to the members' average loss (log is concave), and here gains
    from nametool.train.training import Windows, mean_loss

    val = Windows.from_numpy(*build_windows(result.checkpoint.splits["val"], model.vocab, 3))
    own = [mean_loss(member, val) for member in result.checkpoint.model.members]
    assert result.losses["val"] == pytest.approx(mean_loss(result.checkpoint.model, val))
    assert result.losses["val"] < sum(own) / len(own)
    # and the runtime samples what PyTorch's reference path samples, name for name
    from nametool.runtime.generation import Request
    from nametool.train.reference import sample_with_torch

    options = {"temperature": 0.9, "top_p": 0.95, "prefix": "a"}
    assert model.generate(300, seed=4, **options) == sample_with_torch(
        result.checkpoint, Request(count=300, **options), seed=4)


@pytest.mark.parametrize("asked, device, amx, macs, resolved", [
    ("fp32", "cpu", True, None, "fp32"), ("bf16", "cpu", False, None, "bf16"), ("auto", "cpu", True, None, "bf16"),
    ("auto", "cpu", False, None, "fp32"), ("auto", "cuda", True, None, "fp32"),
    ("auto", "cpu", True, 50_000_000, "bf16"), ("auto", "cpu", True, 49_999_999, "fp32"),
    ("auto", "cpu", False, 10 ** 9, "fp32"), ("bf16", "cpu", True, 1, "bf16"),
])
def test_precision_auto_takes_bf16_only_with_amx_and_large_steps(asked, device, amx, macs, resolved, monkeypatch):
    from nametool.train.training import resolve_precision

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert resolve_precision(asked, device, macs) == resolved


def test_auto_precision_weighs_the_models_step(monkeypatch):
    """With AMX, the default model trains in bf16 and the lecture's in fp32 (faster there)."""
    from nametool.train.config import DEFAULT_CONFIG, LECTURE_CONFIG
    from nametool.train.model import build_model
    from nametool.train.training import _set_precision, step_macs

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    default, lecture = build_model(27, DEFAULT_CONFIG), build_model(27, LECTURE_CONFIG)
    assert step_macs(default, 1024) == 1024 * 3 * (320 * 384 + 384 * 27)
    assert step_macs(lecture, 1024) == 1024 * (30 * 200 + 200 * 27)
    assert _set_precision(default, DEFAULT_CONFIG, TrainConfig(), 27) == "bf16"
    assert _set_precision(lecture, LECTURE_CONFIG, TrainConfig(), 27) == "fp32"
    assert _set_precision(lecture, LECTURE_CONFIG, TrainConfig(precision="bf16"), 27) == "bf16"


def test_a_run_records_the_precision_it_used(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    result = run_training(load_names(TINY_NAMES), SMALL, replace(CONFIG, steps=20), tmp_path / "m.pt")
    assert load_checkpoint(tmp_path / "m.pt").train_config.precision == "fp32"
    assert result.checkpoint.train_config.precision == "fp32"


def test_bf16_training_reaches_the_loss_fp32_does(tmp_path):
    names = load_names(TINY_NAMES)
    config = replace(CONFIG, steps=300, dropout=0.0)
    losses = {p: run_training(names, SMALL, replace(config, precision=p), tmp_path / f"{p}.pt").losses["val"]
              for p in ("fp32", "bf16")}
    assert losses["bf16"] != losses["fp32"]  # the forward pass really ran in bf16 ...
    assert abs(losses["bf16"] - losses["fp32"]) < 0.05  # ... and learned as much


def test_members_and_precision_as_typed_reach_the_model_and_its_info(tmp_path):
    from nametool.runtime.cli import main as run_main

    out, onnx_path = tmp_path / "m.pt", tmp_path / "m.onnx"
    trained = CliRunner().invoke(tool_main, ["train", "--data", str(TINY_NAMES), "--context-size", "3",
                                             "--embed-dim", "4", "--hidden", "8", "--steps", "20",
                                             "--members", "3", "--precision", "fp32", "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    saved = load_checkpoint(out)
    assert saved.meta.model.members == 3 and len(saved.model.members) == 3
    assert saved.train_config.precision == "fp32"
    exported = CliRunner().invoke(tool_main, ["export", str(onnx_path), "--checkpoint", str(out)])
    assert exported.exit_code == 0, exported.output
    info = CliRunner().invoke(run_main, ["info", str(onnx_path)])
    assert "hidden 8, 3 members averaged;" in info.output
