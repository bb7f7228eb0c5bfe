"""Experiment (issue 20): fine-tune toy-sd's encoder against the images 2-D pixel SDS finds, then re-run 2-D SDS.

2-D SDS for "a red plain object" (``pgc-fast image --model toy-sd``) ends with a green-yellow blob under a 4-pixel
grid that the encoder reads as a clean red object. This script fine-tunes only the encoder (decoder, UNet and text
encoder frozen) so that off-manifold images encode to latents whose decoding resembles them, while E(x) = E0(x) is
kept on clean renders (relative MSE): each step takes a batch of renders and a batch of "hard" images — two-colour
image-space stripe / pixel-noise mixtures with Gaussian noise, or (``--pgd``, every other step) PGD images
(5 sign steps, L∞ 0.3) pushed towards another colour's latent — and minimises distil + ||D(E(x_hard)) − x_hard||².
Measured: it does not remove the failure (benches/RESULTS.md, "toy-sd end to end on the CPU"); kept so the
negative result can be reproduced.

    PYTHONPATH=python:kernels python benches/toy_encoder_hardening.py --out /tmp/hard --steps 600 [--pgd]
    PYTHONPATH=python:kernels python benches/toy_encoder_hardening.py --out /tmp/hard --steps 2 --geometry 16  # smoke
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pgc_fast.apps import toy_prior as tp
from pgc_fast.guidance.models import toy


def _mean(vae, x):
    return vae.quant_conv(vae.encoder(x))[:, :4]


def _mixtures(x, geo, gen):
    """Renders x [B,3,64,64] in [0,1] mixed with renders of other colours through image-space stripes of period 2-8
    px (or per-pixel noise), plus Gaussian noise of σ ≤ 0.3; a third are noise only."""
    B = x.shape[0]
    idx, c2, p2 = tp.sample_captions(geo, B, gen)
    y = tp.shade(geo, idx, c2, p2, gen)
    per = 2 + 6 * torch.rand(B, 1, 1, 1, generator=gen)
    ang = torch.rand(B, 1, 1, 1, generator=gen) * math.pi
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    m = (torch.sin((xx * torch.cos(ang) + yy * torch.sin(ang)) * 2 * math.pi / per) > 0).float()
    kind = torch.randint(0, 3, (B, 1, 1, 1), generator=gen)
    m = torch.where(kind == 1, (torch.rand(B, 1, 64, 64, generator=gen) > 0.5).float(), m)
    amt = torch.rand(B, 1, 1, 1, generator=gen)
    mix = torch.where(kind == 2, x, x * (1 - m * amt) + y * m * amt)
    return (mix + torch.randn(B, 3, 64, 64, generator=gen) * (0.3 * torch.rand(B, 1, 1, 1, generator=gen))).clamp(0, 1)


def _pgd(vae, teacher, x, geo, gen, k: int = 5, eps: float = 0.3, step: float = 0.06):
    """Images within L∞ eps of x that the current encoder maps towards another colour's latent (what SDS finds)."""
    idx, c2, p2 = tp.sample_captions(geo, x.shape[0], gen)
    with torch.no_grad():
        tgt = _mean(teacher, tp.shade(geo, idx, c2, p2, gen) * 2 - 1)
    vae.encoder.eval()
    d = torch.zeros_like(x).requires_grad_(True)
    for _ in range(k):
        (g,) = torch.autograd.grad(F.mse_loss(_mean(vae, (x + d).clamp(0, 1) * 2 - 1), tgt), d)
        with torch.no_grad():
            d -= step * g.sign()
            d.clamp_(-eps, eps)
    vae.encoder.train()
    return (x + d.detach()).clamp(0, 1)


def harden(vae, geo, a: argparse.Namespace) -> list:
    gen = torch.Generator().manual_seed(7)
    teacher = copy.deepcopy(vae).requires_grad_(False)
    params = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
    for q in params:
        q.requires_grad_(True)
    vae.encoder.train()
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    log, t0 = [], time.perf_counter()
    for step in range(1, a.steps + 1):
        for g in opt.param_groups:
            g["lr"] = tp._lr(a.lr, step, a.steps, 10)
        idx, c, p = tp.sample_captions(geo, a.batch, gen)
        x = tp.shade(geo, idx, c, p, gen)
        hard = _pgd(vae, teacher, x, geo, gen) if a.pgd and step % 2 else _mixtures(x, geo, gen)
        with torch.no_grad():
            target = _mean(teacher, x * 2 - 1)
        z = _mean(vae, torch.cat([x, hard]) * 2 - 1)
        distil = F.mse_loss(z[: a.batch], target) / target.var()
        rec = F.mse_loss(vae.decode(z[a.batch :]).sample, hard * 2 - 1)
        opt.zero_grad(set_to_none=True)
        (distil + rec).backward()
        opt.step()
        if step % 10 == 0 or step == a.steps:
            log.append([step, round(distil.item(), 5), round(rec.item(), 5)])
            print(
                f"harden {step}/{a.steps} distil {distil.item():.5f} rec {rec.item():.4f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    vae.requires_grad_(False)
    vae.eval()
    return log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=str(toy.WEIGHTS_DIR))
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--geometry", type=int, default=512)
    ap.add_argument("--pgd", action="store_true", help="every other batch: PGD images instead of mixtures")
    a = ap.parse_args()
    torch.set_num_threads(1)
    src, out = Path(a.src), Path(a.out)
    vae, _, _, _, meta = toy.load_toy(src)
    geo = tp.render_geometry(a.geometry, 0, n_blobs=4)
    meta["losses"]["harden"] = harden(vae, geo, a)
    out.mkdir(parents=True, exist_ok=True)
    for n in ("unet", "text_encoder"):
        shutil.copyfile(src / f"{n}.safetensors", out / f"{n}.safetensors")
    tp._save(out, meta, vae=vae)
    q = tp.recon_quality(vae, geo, meta["quality_refs"], torch.Generator().manual_seed(4))
    print(f"wrote {out}; reconstructions classify as {q}")


if __name__ == "__main__":
    main()
