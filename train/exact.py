"""The exact form computed by PyTorch in int64: the reference export holds the written file to.

It reads the same integers the file stores (by their ``runtime.exact`` names) and computes
the graph's maths with torch's integer ops, sharing no code with the ONNX graph or the
numpy engine: export refuses a file whose integers differ from these on any validation
context.
"""

from __future__ import annotations

import numpy as np
import torch

from nametool.runtime import exact as spec


@torch.no_grad()
def exact_member_logits(arrays: dict[str, np.ndarray], contexts: np.ndarray, *, vocab_size: int, members: int,
                        layers: int) -> np.ndarray:
    """(rows, members, vocab) int64: what the exact graph returns for ``contexts`` (rows, context_size)."""
    as_long = {name: torch.from_numpy(np.asarray(value).astype(np.int64)) for name, value in arrays.items()
               if not name.startswith("exact.scale")}
    shifts = {name: torch.from_numpy(-np.log2(value.astype(np.float64)).astype(np.int64))
              for name, value in arrays.items() if name.startswith("exact.scale")}
    tanh = as_long[spec.TANH]
    top = len(tanh) - 1
    context = torch.from_numpy(np.ascontiguousarray(contexts, dtype=np.int64))
    ids = context + torch.arange(context.shape[1]) * vocab_size
    z = as_long[spec.TABLES][ids].sum(dim=1) + as_long[spec.bias_name(1)]  # (rows, members * hidden)
    x = tanh[torch.bitwise_right_shift(z, shifts[spec.scale_name(1)]).clamp(0, top)]
    x = x.view(len(context), members, -1).transpose(0, 1)  # (members, rows, hidden)
    for layer in range(2, layers + 1):
        z = torch.matmul(x, as_long[spec.weight_name(layer)]) + as_long[spec.bias_name(layer)]
        x = tanh[torch.bitwise_right_shift(z, shifts[spec.scale_name(layer)]).clamp(0, top)]
    z = torch.matmul(x, as_long[spec.OUT_WEIGHT]) + as_long[spec.OUT_BIAS]  # (members, rows, vocab)
    return z.transpose(0, 1).numpy()
