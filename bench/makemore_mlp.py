"""makemore's MLP, as its README and makemore.py describe it, for side-by-side comparisons.

Written here from that description (Karpathy's makemore, `--type mlp`): every word is
``[start] c1 .. cn`` against targets ``c1 .. cn [end]``, the start and end being token 0;
at each position the model looks at the previous ``block_size = longest word + 1`` tokens
(a blank token beyond the start), embeds each in 64 dimensions, concatenates, and applies
Linear(block_size * 64, 64), tanh, Linear(64, vocab). AdamW at 5e-4, weight decay 0.01,
betas (0.9, 0.99), batches of 32 words, cross-entropy over every real position (the end
included): the same nats per character nametool reports.

    from bench.makemore_mlp import train_for
    test_loss, steps = train_for(seconds, splits)
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

EMBED, HIDDEN, BATCH, LR, WEIGHT_DECAY, BETAS = 64, 64, 32, 5e-4, 0.01, (0.9, 0.99)


class MakemoreMLP(nn.Module):
    def __init__(self, vocab: int, block_size: int):
        super().__init__()
        self.vocab, self.block_size = vocab, block_size
        self.wte = nn.Embedding(vocab + 1, EMBED)  # the last row: the blank before the start
        self.mlp = nn.Sequential(nn.Linear(block_size * EMBED, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, vocab))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (words, positions) -> (words, positions, vocab)
        embs = []
        for _ in range(self.block_size):  # the token k positions back, for k = 0 .. block_size - 1
            embs.append(self.wte(idx))
            idx = torch.roll(idx, 1, 1)
            idx[:, 0] = self.vocab
        return self.mlp(torch.cat(embs, -1))


def encode(words: list[str], stoi: dict[str, int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(len(words), width, dtype=torch.long)
    y = torch.full((len(words), width), -1, dtype=torch.long)
    for i, word in enumerate(words):
        ids = torch.tensor([stoi[c] for c in word], dtype=torch.long)
        x[i, 1:1 + len(ids)] = ids
        y[i, :len(ids)] = ids
        y[i, len(ids)] = 0
    return x, y


@torch.no_grad()
def mean_loss(model: MakemoreMLP, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    x, y = data
    logits = model(x)
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1).item()


def train_for(seconds: float, splits: dict[str, list[str]], seed: int = 42, eval_every: int = 500):
    """Train for ``seconds`` of wall time; returns (test loss of the best-val weights, steps, val loss)."""
    words = [w for part in splits.values() for w in part]
    chars = sorted({c for w in words for c in w})
    stoi = {c: i + 1 for i, c in enumerate(chars)}
    width = max(len(w) for w in words) + 1
    data = {split: encode(part, stoi, width) for split, part in splits.items()}
    torch.manual_seed(seed)
    model = MakemoreMLP(len(chars) + 1, width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS, eps=1e-8)
    gen = torch.Generator().manual_seed(seed)
    x, y = data["train"]
    best, best_state, step = float("inf"), None, 0
    start = time.perf_counter()
    while True:
        done = time.perf_counter() - start >= seconds
        if step % eval_every == 0 or done:
            val = mean_loss(model, data["val"])
            if val < best:
                best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
        if done:
            break
        batch = torch.randint(len(x), (BATCH,), generator=gen)
        logits = model(x[batch])
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y[batch].view(-1), ignore_index=-1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    model.load_state_dict(best_state)
    return mean_loss(model, data["test"]), step, best
