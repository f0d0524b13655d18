"""Distillation (--teacher): the loss it fits, that it pulls the student to the teacher, and its refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from nametool.runtime.errors import ModelFileError, RequestError  # noqa: E402
from nametool.runtime.schema import ModelConfig  # noqa: E402
from nametool.runtime.windows import build_windows  # noqa: E402
from nametool.train.checkpoint import load_checkpoint  # noqa: E402
from nametool.train.cli import main as tool_main  # noqa: E402
from nametool.train.config import TrainConfig  # noqa: E402
from nametool.train.data import load_names  # noqa: E402
from nametool.train.distill import distill_loss  # noqa: E402
from nametool.train.training import resume_training, run_training  # noqa: E402

from .conftest import TINY_NAMES, assert_resumes_exactly, stop_after  # noqa: E402

TEACHER = ModelConfig(context_size=3, embed_dim=8, hidden=(32,), members=3)
STUDENT = ModelConfig(context_size=3, embed_dim=8, hidden=(32,), members=1)
CONFIG = TrainConfig(steps=150, batch_size=64, lr=1e-2, warmup=10, eval_every=50, seed=5)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    run_training(load_names(TINY_NAMES), TEACHER, replace(CONFIG, steps=300), path)
    return path


def test_the_loss_mixes_the_data_and_the_teachers_distribution():
    gen = torch.Generator().manual_seed(0)
    logits, soft = torch.randn(50, 7, generator=gen), F.softmax(torch.randn(50, 7, generator=gen), dim=-1)
    targets = torch.randint(7, (50,), generator=gen)
    hard = F.cross_entropy(logits, targets)
    cross = -(soft * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    assert torch.allclose(distill_loss(logits, targets, soft, 0.0), hard)
    assert torch.allclose(distill_loss(logits, targets, soft, 1.0), cross)
    assert torch.allclose(distill_loss(logits, targets, soft, 0.3), 0.7 * hard + 0.3 * cross)


def kl_to_teacher(student_path, teacher_path) -> float:
    student, teacher = load_checkpoint(student_path), load_checkpoint(teacher_path)
    contexts, _ = build_windows(student.splits["train"], student.meta.vocab, 3)
    contexts = torch.from_numpy(contexts)
    with torch.no_grad():
        p, q = F.log_softmax(teacher.model(contexts), -1), F.log_softmax(student.model(contexts), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def test_a_distilled_student_is_closer_to_its_teacher(tmp_path, teacher):
    names = load_names(TINY_NAMES)
    plain = run_training(names, STUDENT, CONFIG, tmp_path / "plain.pt")
    taught = run_training(names, STUDENT, replace(CONFIG, teacher=str(teacher), distill=1.0), tmp_path / "taught.pt")
    assert kl_to_teacher(tmp_path / "taught.pt", teacher) < 0.5 * kl_to_teacher(tmp_path / "plain.pt", teacher)
    saved = load_checkpoint(tmp_path / "taught.pt")
    assert saved.meta.provenance.teacher == "teacher.pt"
    assert saved.train_config.teacher == str(teacher.resolve()) and len(saved.train_config.teacher_sha256) == 64
    assert plain.checkpoint.meta.provenance.teacher is None


def test_a_distilled_run_resumes_exactly(tmp_path, teacher):
    assert_resumes_exactly(load_names(TINY_NAMES), STUDENT, replace(CONFIG, teacher=str(teacher)), tmp_path, 70)


def test_resuming_with_a_changed_teacher_is_refused(tmp_path, teacher):
    import shutil

    own = tmp_path / "own-teacher.pt"
    shutil.copyfile(teacher, own)
    run_training(load_names(TINY_NAMES), STUDENT, replace(CONFIG, teacher=str(own)), tmp_path / "part.pt",
                 should_stop=stop_after(20))
    run_training(load_names(TINY_NAMES), TEACHER, replace(CONFIG, steps=20, seed=5), own, force=True)
    with pytest.raises(ModelFileError, match="the file changed since the run started"):
        resume_training(tmp_path / "part.pt")
    own.unlink()
    with pytest.raises(ModelFileError, match="no such file"):
        resume_training(tmp_path / "part.pt")


def test_a_teacher_of_another_split_is_refused(tmp_path, teacher):
    with pytest.raises(RequestError, match="trained on another split"):
        run_training(load_names(TINY_NAMES), STUDENT, replace(CONFIG, seed=6, teacher=str(teacher)), tmp_path / "s.pt")
    assert not (tmp_path / "s.pt").exists()


def test_a_teacher_of_another_vocabulary_is_refused(tmp_path, teacher):
    with pytest.raises(RequestError, match="vocabulary"):
        run_training(load_names(TINY_NAMES), STUDENT, replace(CONFIG, teacher=str(teacher)), tmp_path / "s.pt",
                     end_token="#")


def test_the_cli_distils_and_says_why_it_refuses(tmp_path, teacher):
    runner = CliRunner()
    out = tmp_path / "s.pt"
    result = runner.invoke(tool_main, ["train", "--data", str(TINY_NAMES), "--members", "1", "--context-size", "3",
                                       "--embed-dim", "8", "--hidden", "32", "--steps", "60", "--batch-size", "64",
                                       "--seed", "5", "--teacher", str(teacher), "--distill", "0.7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).train_config.distill == 0.7
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nothing")
    result = runner.invoke(tool_main, ["train", "--data", str(TINY_NAMES), "--steps", "10", "--teacher", str(bad),
                                       "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"Error: {bad}: not a nametool checkpoint")
    result = runner.invoke(tool_main, ["train", "--data", str(TINY_NAMES), "--teacher", str(teacher),
                                       "--distill", "1.5"])
    assert result.exit_code == 2
