"""2D mode: optimise one image (or one latent) directly with score distillation + PGC (the original's 2d.py).

    pgc-fast image --text "a panda" --size 1024 --model sdxl --iters 500 --device cuda --workspace out/panda2d

Writes ``image_NNNNN.png`` every ``--save-every`` steps and ``image.png`` at the end, ``clip_stats.csv`` (per step:
fraction of pixels clipped, max and mean pixel gradient norm before clipping, latent gradient norm, t) and
``clip_stats.png`` (a plot drawn with PIL). With ``--latent`` the optimised variable is the SD latent itself
(Latent-NeRF style, no VAE encode; previews are VAE-decoded). PGC clips the gradient of the image (or latent)
pixel by pixel with threshold ``--pgc-tau`` (negative disables it; the statistics are still recorded).

Optimiser: AdamW (lr 0.01 by default), linear warm-up (min(100, iters/10) steps) then cosine decay to 0.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

import torch


def _to_pil(img_chw: torch.Tensor):
    import numpy as np
    from PIL import Image

    arr = (img_chw.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def plot_series(
    path: Path, panels: list[tuple[str, dict[str, list[float]], float | None]], width: int = 900, panel_h: int = 260
) -> None:
    """Minimal line plot with PIL: one panel per (title, {label: values}, horizontal reference line or None)."""
    from PIL import Image, ImageDraw

    colors = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]
    img = Image.new("RGB", (width, panel_h * len(panels)), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 70, 20, 28, 30
    for k, (title, series, ref) in enumerate(panels):
        y0 = k * panel_h
        vals = [v for s in series.values() for v in s if math.isfinite(v)] + ([ref] if ref is not None else [])
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
        if hi - lo < 1e-12:
            hi = lo + 1.0
        x_a, x_b, y_a, y_b = left, width - right, y0 + top, y0 + panel_h - bottom
        d.rectangle([x_a, y_a, x_b, y_b], outline=(0, 0, 0))
        d.text((x_a, y0 + 6), title, fill=(0, 0, 0))
        d.text((4, y_a - 4), f"{hi:.3g}", fill=(0, 0, 0))
        d.text((4, y_b - 8), f"{lo:.3g}", fill=(0, 0, 0))

        def to_xy(i: int, v: float, n: int, box=(x_a, x_b, y_a, y_b, lo, hi)) -> tuple[float, float]:
            xa, xb, ya, yb, v0, v1 = box  # this panel's box, bound at definition
            return xa + (xb - xa) * (i / max(n - 1, 1)), yb - (yb - ya) * ((v - v0) / (v1 - v0))

        if ref is not None:
            _, yr = to_xy(0, ref, 2)
            d.line([(x_a, yr), (x_b, yr)], fill=(150, 150, 150), width=1)
        for j, (label, s) in enumerate(series.items()):
            pts = [to_xy(i, v, len(s)) for i, v in enumerate(s) if math.isfinite(v)]
            c = colors[j % len(colors)]
            if len(pts) > 1:
                d.line(pts, fill=c, width=2)
            d.text((x_b - 220, y_a + 4 + 12 * j), label, fill=c)
        n = max((len(s) for s in series.values()), default=0)
        d.text((x_a, y_b + 6), "step 1", fill=(0, 0, 0))
        d.text((x_b - 60, y_b + 6), f"step {n}", fill=(0, 0, 0))
    img.save(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pgc-fast image", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--text", required=True, help="prompt")
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument("--size", type=int, default=1024, help="image size (pixels; latent = size / 8)")
    p.add_argument(
        "--model",
        default="sdxl",
        help="sdxl | sdxl-0.9 | sdxl-turbo | sd15 | sd21 | sd21-base | "
        "toy-sd | tiny-sdxl | tiny-sd | sdxl-random | sd15-random | hub id | local dir",
    )
    p.add_argument("--vae", default="auto", help="VAE override (auto: SDXL fp16-fix VAE)")
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"])
    p.add_argument("--workspace", default="workspace/image2d")
    p.add_argument("--method", default="sds", choices=["sds", "csd", "ssd", "bgt", "vsd"])
    p.add_argument("--guidance-scale", type=float, default=100.0)
    p.add_argument("--cfg-convention", default="auto", choices=["auto", "pgc", "diffusers"])
    p.add_argument("--t-range", type=float, nargs=2, default=(0.02, 0.98))
    p.add_argument("--t-range-end", type=float, nargs=2, default=None, help="anneal t-range to this")
    p.add_argument("--dreamtime", action="store_true")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--latent", action="store_true", help="optimise the latent instead of the image")
    p.add_argument("--pgc-tau", type=float, default=0.1, help="PGC threshold (< 0 disables)")
    p.add_argument(
        "--pgc-variant", default="clip", choices=["clip", "value", "global", "sigmoid", "soft", "soft_pixel"]
    )
    p.add_argument("--pgc-norm", default="linf", choices=["linf", "l2"])
    p.add_argument("--latent-clamp", type=float, default=None)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    return p


def run(a: argparse.Namespace) -> Path:
    """Optimise one image (or latent) with the guidance's SDS + PGC; write snapshots, image.png and clip stats."""
    ws = Path(a.workspace)
    ws.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(a.seed)
    g = _load(a)
    dev = g.device
    gen = torch.Generator(dev).manual_seed(a.seed)
    if a.latent:
        var = (torch.randn(1, 4, g.latent_size, g.latent_size, device=dev, generator=gen) * 0.5).requires_grad_(True)
    else:
        var = (
            (0.5 + 0.1 * torch.randn(1, 3, a.size, a.size, device=dev, generator=gen)).clamp(0, 1).requires_grad_(True)
        )
    opt = torch.optim.AdamW([var], lr=a.lr, betas=(0.9, 0.99), eps=1e-15, weight_decay=0.0)
    warm = max(1, min(100, a.iters // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: (i + 1) / warm if i < warm else 0.5 * (1 + math.cos(math.pi * (i - warm) / max(a.iters - warm, 1))),
    )
    scaler = torch.amp.GradScaler(
        dev.type, init_scale=2.0**10, enabled=(g.dtype == torch.float16 and dev.type == "cuda")
    )
    rows: list[torch.Tensor] = []

    def preview() -> torch.Tensor:
        with torch.no_grad():
            return g.decode(var.detach())[0] if a.latent else var.detach()[0]

    for step in range(1, a.iters + 1):
        opt.zero_grad(set_to_none=True)
        out = g.step(var, step=step, scaler=scaler if scaler.is_enabled() else None)
        scaler.scale(out.loss).backward()
        rows.append(_stats_row(g, var, out, scaler, a.pgc_tau))
        scaler.step(opt)
        scaler.update()
        sched.step()
        if not a.latent:
            with torch.no_grad():
                var.clamp_(0, 1)
        if a.save_every > 0 and (step % a.save_every == 0 or step == a.iters):
            _to_pil(preview()).save(ws / f"image_{step:05d}.png")
    _to_pil(preview()).save(ws / "image.png")
    _write_stats(ws, rows, a.pgc_tau)
    return ws


def _load(a: argparse.Namespace) -> Any:
    from pgc_fast.config import GuidanceConfig
    from pgc_fast.guidance import load_guidance

    cfg = GuidanceConfig(
        model=a.model,
        vae=None if a.vae == "auto" else a.vae,
        text=a.text,
        negative=a.negative,
        dir_text=False,
        loss=a.method,
        guidance_scale=a.guidance_scale,
        cfg_convention=a.cfg_convention,
        t_range=tuple(a.t_range),
        t_range_end=tuple(a.t_range_end) if a.t_range_end else None,
        dreamtime=a.dreamtime,
        latent=a.latent,
        pgc_tau=a.pgc_tau if a.pgc_tau >= 0 else None,
        pgc_variant=a.pgc_variant,
        pgc_norm=a.pgc_norm,
        latent_clamp=a.latent_clamp,
        resolution=a.size,
        compile=False,
    )  # eager UNet, as this mode always ran (the run's default compiles on CUDA)
    return load_guidance(cfg, device=a.device, dtype=a.dtype, seed=a.seed, iters=a.iters)


def _stats_row(g: Any, var: torch.Tensor, out: Any, scaler: Any, tau: float) -> torch.Tensor:
    """[fraction clipped, max and mean pixel gradient norm (unscaled), latent gradient norm, t] on the device."""
    st = g.pgc_stats.get("rgb")
    if st is not None:
        s = scaler._get_scale_async() if scaler.is_enabled() else 1.0  # device tensor: no host sync
        row = torch.stack([st.fraction_clipped, st.max_norm / s, st.mean_norm / s])
    else:  # PGC off: the same statistics from the (unclipped) gradient
        assert var.grad is not None  # the step's backward filled it
        n = var.grad.abs().amax(dim=1)
        row = torch.stack(
            [(n > tau).float().mean() if tau >= 0 else torch.zeros((), device=var.device), n.max(), n.mean()]
        )
    return torch.cat([row.float(), out.stats["grad_norm"].float()[:1], out.t[:1].float()])


def _write_stats(ws: Path, rows: list[torch.Tensor], tau: float) -> None:
    table = torch.stack(rows).cpu().tolist() if rows else []
    with open(ws / "clip_stats.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "fraction_clipped", "max_pixel_grad_norm", "mean_pixel_grad_norm", "latent_grad_norm", "t"])
        for i, r in enumerate(table, 1):
            w.writerow([i, *[f"{v:.6g}" for v in r]])
    cols = list(zip(*table, strict=False)) if table else [()] * 5
    plot_series(
        ws / "clip_stats.png",
        [
            (f"fraction of pixels clipped (tau = {tau})", {"fraction clipped": list(cols[0])}, None),
            (
                "pixel gradient norm before clipping (unscaled)",
                {"max": list(cols[1]), "mean": list(cols[2])},
                tau if tau >= 0 else None,
            ),
            ("latent SDS gradient norm", {"||grad_z||": list(cols[3])}, None),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    from pgc_fast.guidance import GuidanceLoadError

    a = build_parser().parse_args(argv)
    try:
        ws = run(a)
    except GuidanceLoadError as e:
        print(f"pgc-fast image: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {ws / 'image.png'}, {ws / 'clip_stats.png'}, {ws / 'clip_stats.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
