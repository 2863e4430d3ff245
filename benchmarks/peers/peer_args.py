"""Command-line arguments every peer trainer script shares (run from this folder by a peer's
own venv, so it imports nothing from the toolkit)."""

from __future__ import annotations

import argparse


def common_parser(description: str) -> argparse.ArgumentParser:
    """The run shape both peers take: activations file, TopK size, batch, steps and threads."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--acts", required=True, help="safetensors file with a tensor 'acts' [N, d] float32")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--expansion", type=int, default=16)
    p.add_argument("--batch", type=int, default=4096, help="tokens per step")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    p.add_argument("--threads", type=int, default=2)
    return p
