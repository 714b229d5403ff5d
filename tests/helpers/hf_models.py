"""Tiny randomly initialised transformers models named by ``module:callable`` in the integration tests."""

from __future__ import annotations

from typing import Any

from recipes import CLASSES, LENGTH, VOCAB


def tiny_bert(layers: int = 2, dim: int = 16) -> Any:
    """A 2-layer BERT classifier with dropout, built from a config (no download)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=VOCAB, hidden_size=dim, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * dim, max_position_embeddings=LENGTH, num_labels=CLASSES,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    return BertForSequenceClassification(config)


def tiny_gpt2(layers: int = 2, dim: int = 16) -> Any:
    """A 2-layer GPT-2 language model (tied input/output embeddings), built from a config."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=dim, n_layer=layers, n_head=2)
    return GPT2LMHeadModel(config)


def lm_tokens(n: int = 256) -> Any:
    """Token sequences with masks and language-model labels (-100 on padding)."""
    import torch
    from torch.utils.data import Dataset

    import pol
    from recipes import _tokens

    ids, mask, _ = _tokens(n)
    labels = ids.masked_fill(mask == 0, -100)

    class LMTokens(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]}

    return pol.tasks.TaskData(LMTokens())
