"""Shared fixtures: locally built GPT-2-shaped checkpoints (random weights, no downloads)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_WORDS = ("the cat sat on a mat and the dog ran to the park while birds sang in trees "
          "one two three four five six seven eight nine ten").split()


def build_gpt2_checkpoint(folder, n_layer: int, n_embd: int, n_head: int, vocab: int = 512,
                          n_positions: int = 64, seed: int = 0) -> str:
    """Write a random-weight GPT2LMHeadModel and a byte-level BPE tokenizer into ``folder``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions,
                        vocab_size=vocab, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).eval().save_pretrained(folder)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(_WORDS[i:] + _WORDS[:i]) for i in range(len(_WORDS))] * 20, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>").save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def toy_gpt2_dir(tmp_path_factory) -> str:
    """A 2-layer, d_model 64 GPT-2 checkpoint folder."""
    return build_gpt2_checkpoint(tmp_path_factory.mktemp("toy_gpt2"), n_layer=2, n_embd=64, n_head=4)


@pytest.fixture(scope="session")
def gpt2_small_dir(tmp_path_factory) -> str:
    """A GPT-2-small-shaped checkpoint: 12 layers, d_model 768, 12 heads, random weights."""
    return build_gpt2_checkpoint(tmp_path_factory.mktemp("gpt2_small"), n_layer=12, n_embd=768, n_head=12)
