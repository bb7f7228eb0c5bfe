"""Helpers shared by the GPU exploration scripts in benches/ (not a benchmark itself)."""

from __future__ import annotations

import os
import subprocess

import torch


def commit() -> str:
    """The commit being measured: $PGC_COMMIT (the device gets a tree without .git), else git's HEAD."""
    if os.environ.get("PGC_COMMIT"):
        return os.environ["PGC_COMMIT"]
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL
        ).strip()
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        return "unknown"


def emit(text: str, results: str | None, quiet: bool = False) -> None:
    """Print a markdown table block (unless ``quiet``) and append it to ``results`` when given."""
    if not quiet:
        print(text, flush=True)
    if results:
        with open(results, "a") as f:
            f.write("\n" + text + "\n")


def out_file(out_dir: str | None, name: str) -> str | None:
    """``out_dir/name`` (the directory created), or None without ``out_dir``: where a script's ``--out`` results go."""
    if not out_dir:
        return None
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, name)


def vae_encode_step(vae, x: torch.Tensor):
    """One SDS-style VAE pass: encode 2x − 1, sample, backpropagate ones into the pixels x (requires grad)."""

    def step():
        z = vae.encode(x * 2 - 1).latent_dist.sample()
        torch.autograd.grad(z, x, torch.ones_like(z))

    return step


def vae_input(b: int, dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    x = torch.rand(b, 3, 1024, 1024, device="cuda", dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    return x.requires_grad_(True)
