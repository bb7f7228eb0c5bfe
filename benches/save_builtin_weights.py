"""Write a built-in model (``sdxl-random``, ``sd15-random``, the tiny ones) to disk as the directories a user
downloads — a diffusers pipeline directory, a VAE directory and one ControlNet directory per kind, weights as
``*.fp16.safetensors`` — so ``pgc-fast generate`` can be timed loading weights from local disk through the real
loading path (``guidance/models/loading.py``: local dir → ``from_pretrained``), as issue 21 (items 1 and 4) asks.

After writing, each file is fsynced and its pages are dropped from the page cache (``posix_fadvise DONTNEED``), so
the load that follows reads the disk as a first load after a download would, not memory.

    python benches/save_builtin_weights.py --model sdxl-random --controlnets depth --out /tmp/weights
    python benches/save_builtin_weights.py --model tiny-sdxl --device cpu --dtype fp32 --out /tmp/w   # CPU smoke

It prints the ``generate`` flags that load what it wrote: ``--model DIR/base --guidance.vae DIR/vae
--guidance.controlnets depth=DIR/controlnet-depth``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def local_flags(root: str | os.PathLike, controlnets: list[str]) -> list[str]:
    """The ``generate`` flags that load the tree :func:`save_builtin` wrote under ``root``."""
    r = Path(root)
    flags = ["--model", str(r / "base"), "--guidance.vae", str(r / "vae")]
    if controlnets:
        flags += ["--guidance.controlnets", ",".join(f"{k}={r / f'controlnet-{k}'}" for k in controlnets)]
    return flags


def save_builtin(name: str, root: str | os.PathLike, *, controlnets: list[str], device: str, dtype: torch.dtype) -> int:
    """Build ``name`` and write it under ``root`` (base/, vae/, controlnet-<kind>/); returns the bytes written."""
    from diffusers import DDPMScheduler

    from pgc_fast.guidance.models.builtin import build_builtin

    b = build_builtin(name, control_types=controlnets, device=device, dtype=dtype)
    r = Path(root)
    variant = "fp16" if dtype != torch.float32 else None
    base = r / "base"
    b.unet.save_pretrained(base / "unet", variant=variant)
    for i, (enc, tok) in enumerate(zip(b.text_encoders, b.tokenizers, strict=True)):
        suffix = f"_{i + 1}" if i else ""
        enc.save_pretrained(base / f"text_encoder{suffix}", variant=variant)
        tok.save_pretrained(base / f"tokenizer{suffix}")
    DDPMScheduler(**b.scheduler_config).save_pretrained(base / "scheduler")
    pipeline = "StableDiffusionXLPipeline" if b.is_sdxl else "StableDiffusionPipeline"
    (base / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    b.vae.save_pretrained(r / "vae", variant=variant)
    nets = [] if b.controlnet is None else getattr(b.controlnet, "nets", [b.controlnet])
    for kind, net in zip(controlnets, nets, strict=True):
        net.save_pretrained(r / f"controlnet-{kind}", variant=variant)
    return sum(_flush(p) for p in r.rglob("*") if p.is_file())


def _flush(path: Path) -> int:
    """fsync ``path`` and drop its pages from the page cache (Linux honours DONTNEED for clean pages); its size."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sdxl-random")
    ap.add_argument("--controlnets", default="depth", help="comma-separated kinds ('' for none)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    ap.add_argument("--out", required=True, help="directory to write (base/, vae/, controlnet-<kind>/)")
    a = ap.parse_args(argv)
    kinds = [k for k in a.controlnets.split(",") if k]
    if os.path.exists(a.out) and (not os.path.isdir(a.out) or os.listdir(a.out)):
        raise SystemExit(f"save_builtin_weights.py: --out must be a new or empty directory, got {a.out!r}")
    t0 = time.perf_counter()
    partial = tempfile.mkdtemp(prefix=".partial_", dir=os.path.dirname(os.path.abspath(a.out)))
    try:  # written beside --out, renamed into place when complete: a failed run leaves no half-written model
        n = save_builtin(a.model, partial, controlnets=kinds, device=a.device, dtype=DTYPES[a.dtype])
        if os.path.isdir(a.out):
            os.rmdir(a.out)
        os.replace(partial, a.out)
    except ValueError as e:  # an unknown built-in name: build_builtin's one-line message
        raise SystemExit(f"save_builtin_weights.py: {e}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    print(f"wrote {n / 2**30:.2f} GiB of {a.model} to {a.out} in {time.perf_counter() - t0:.1f} s (pages dropped)")
    print("generate flags: " + " ".join(local_flags(a.out, kinds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
