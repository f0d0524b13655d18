"""Sample one name with PyTorch from a checkpoint, the makemore way: the cold-start reference.

    python bench/torch_one_name.py CHECKPOINT
"""

import sys

import torch
from torch.nn import functional as F

from nametool.train.checkpoint import load_checkpoint

ckpt = load_checkpoint(sys.argv[1])
itos = ckpt.meta.vocab.itos()
context, out = [0] * ckpt.meta.model.context_size, []
with torch.no_grad():
    for _ in range(ckpt.meta.sampling.max_len):
        ix = torch.multinomial(F.softmax(ckpt.model(torch.tensor([context])), dim=1), 1).item()
        if ix == 0:
            break
        context = context[1:] + [ix]
        out.append(itos[ix])
print("".join(out))
