"""Random-weight GPT-2-shaped checkpoints, built locally for tests and benchmarks (no downloads)."""

from __future__ import annotations

_WORDS = ("the cat sat on a mat and the dog ran to the park while birds sang in trees "
          "one two three four five six seven eight nine ten").split()


def build_gpt2_checkpoint(folder, n_layer: int, n_embd: int, n_head: int, vocab: int = 512,
                          n_positions: int = 128, seed: int = 0) -> str:
    """Write a random-weight ``GPT2LMHeadModel`` and a byte-level BPE tokenizer into ``folder``.

    ``n_layer=12, n_embd=768, n_head=12`` gives GPT-2 small's shape (with a smaller vocabulary).
    """
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
