"""Models, data and losses of the training recipes the recorder must record and a verifier replay.

Named by ``module:callable`` (``recipes:dict_tokens``...) as a user names their own code; the test
directory ``tests/helpers`` is on ``sys.path`` (tests/conftest.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

import pol

VOCAB, LENGTH, CLASSES = 50, 12, 4


def _tokens(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
    lengths = torch.randint(4, LENGTH + 1, (n,), generator=g)
    mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    ids = ids * mask                                          # padding token 0
    labels = (ids[:, 0] % CLASSES).long()                     # learnable from the first token
    return ids, mask, labels


class DictTokens(Dataset):
    """Samples are dicts of tensors, as Hugging Face data sets give them."""

    def __init__(self, n: int = 256) -> None:
        self.ids, self.mask, self.labels = _tokens(n)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def dict_tokens(n: int = 256) -> pol.tasks.TaskData:
    return pol.tasks.TaskData(DictTokens(n))


def tuple_tokens(n: int = 256) -> pol.tasks.TaskData:
    """(tokens, mask, label) tuples."""
    return pol.tasks.TaskData(TensorDataset(*_tokens(n)))


class TokenClassifier(nn.Module):
    """Embedding bag over unmasked tokens; forward(input_ids, attention_mask) -> {"logits": ...}."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: Any = None) -> dict[str, Any]:
        h = self.embed(input_ids) * attention_mask[..., None]
        pooled = h.sum(1) / attention_mask.sum(1, keepdim=True).clamp(min=1)
        logits = self.head(self.norm(pooled))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = F.cross_entropy(logits, labels)
        return out


def token_classifier(dim: int = 16) -> nn.Module:
    return TokenClassifier(dim)


class TinyTransformer(nn.Module):
    """A one-layer transformer encoder with dropout (tokens, mask) -> logits."""

    def __init__(self, dim: int = 16, heads: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.pos = nn.Parameter(torch.zeros(LENGTH, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(dim, CLASSES)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(tokens) + self.pos, src_key_padding_mask=mask == 0)
        return self.head(h[:, 0])


def tiny_transformer(dim: int = 16) -> nn.Module:
    return TinyTransformer(dim)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """A custom loss (named by the user with --loss recipes:focal_loss)."""
    logp = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


class DictMLP(nn.Module):
    """The digits MLP returning a dict (as many libraries' models do)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)}


def dict_mlp() -> nn.Module:
    return DictMLP()
