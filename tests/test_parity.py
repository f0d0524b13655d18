"""onnxruntime must give PyTorch's next-char distributions on every validation context."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nametool.export.onnx_export import validation_contexts  # noqa: E402
from nametool.runtime import NameModel  # noqa: E402

TOLERANCE = 1e-5


def max_prob_diff(ckpt, model: NameModel, contexts: np.ndarray) -> float:
    """Largest |p_file - p_torch| over ``contexts``, each softmax taken here rather than by the
    export's own check (``parity``, ``next_char_probs``), so a fault there cannot hide one here."""
    logits = model.logits(contexts).astype(np.float64)  # (batch, vocab)
    ours = np.exp(logits - logits.max(axis=1, keepdims=True))
    ours /= ours.sum(axis=1, keepdims=True)
    with torch.no_grad():
        theirs = torch.softmax(ckpt.model.eval()(torch.from_numpy(contexts)).double(), dim=-1).numpy()
    return float(np.abs(ours - theirs).max())


@pytest.mark.parametrize("batch", [1, 7, 4096])
def test_runtime_distributions_equal_torch_on_every_validation_context(tiny_float, batch):
    result, onnx_path = tiny_float
    ckpt = result.checkpoint
    model = NameModel.load(onnx_path)
    contexts = validation_contexts(ckpt)
    assert len(contexts) > 100
    worst = max(max_prob_diff(ckpt, model, contexts[start:start + batch]) for start in range(0, len(contexts), batch))
    assert worst <= TOLERANCE


def test_parity_check_detects_a_different_model(tiny_float):
    """The comparison itself has teeth: perturbed torch weights break the tolerance."""
    result, onnx_path = tiny_float
    ckpt = result.checkpoint
    model = NameModel.load(onnx_path)
    contexts = validation_contexts(ckpt)
    original = ckpt.model.mlp[-1].bias.detach().clone()
    try:
        with torch.no_grad():
            ckpt.model.mlp[-1].bias[1] += 0.01
        diff = max_prob_diff(ckpt, model, contexts)
    finally:
        with torch.no_grad():
            ckpt.model.mlp[-1].bias.copy_(original)
    assert diff > TOLERANCE


def test_export_metadata_carries_the_schema_and_provenance(tiny_float):
    result, onnx_path = tiny_float
    meta, trained = NameModel.load(onnx_path).meta, result.checkpoint.meta
    assert (meta.vocab, meta.model, meta.sampling, meta.known_names) == (
        trained.vocab, trained.model, trained.sampling, trained.known_names)
    prov = meta.provenance
    assert prov.dataset == "tiny_names.txt" and prov.name_count == 400 and prov.seed == 7
    assert prov.steps == 300 and prov.val_loss == pytest.approx(result.losses["val"])
    assert prov.test_loss == pytest.approx(result.losses["test"])


def test_exported_file_is_self_contained_with_a_dynamic_batch(tiny_float):
    import onnx

    _, onnx_path = tiny_float
    proto = onnx.load(str(onnx_path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert list(onnx_path.parent.glob("*.data")) == []
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    assert inp.type.tensor_type.shape.dim[1].dim_value == 3


def test_the_model_beats_the_bigram_baseline(tiny_float):
    result, _ = tiny_float
    assert result.losses["val"] < result.bigram["val"]
