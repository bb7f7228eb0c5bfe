"""The README's main job: ``pgc-fast demo``.

It builds the project's own demo mesh (a procedural vase of revolution with vertex colours, written through
:mod:`pgc_fast.mesh`), then runs the full generation pipeline on it — guidance from ``toy-sd``, the small prior the
project trains itself and ships (no download; it knows "a <colour> <pattern> object"), PGC, the training loop,
exports, a 256² turntable and the report — on the CPU, in about a minute on two cores (the ``demo`` preset in
:mod:`pgc_fast.config.presets`). At the end it says what toy-sd's own colour and pattern classifier reads on the
textured vase, so the prompt's effect is measured, not only shown. ``pgc-fast demo --kernels`` instead prints
what pixel-wise gradient clipping does to a synthetic gradient.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pgc_fast.mesh import Mesh

__all__ = ["make_demo_mesh", "run_demo", "kernel_demo"]


def make_demo_mesh(segments: int = 48, rings: int = 32) -> Mesh:
    """A closed vase (surface of revolution about +Y, height 2, radius ≤ 0.65) with vertex colours.

    Returns a :class:`pgc_fast.mesh.Mesh`: float32 vertices [V,3], int64 faces [F,3] (counter-clockwise seen
    from outside), float32 colours [V,3] in [0,1] — a warm-to-cool gradient with height and six painted stripes.
    F = 2·segments·(rings − 1) + 2·segments.
    """
    from pgc_fast.mesh import Mesh

    ys = np.linspace(-1.0, 1.0, rings)
    t = (ys + 1) / 2
    radius = 0.38 + 0.22 * np.sin(math.pi * t * 1.3 + 0.2) + 0.05 * np.cos(6 * math.pi * t)
    ang = np.linspace(0, 2 * math.pi, segments, endpoint=False)
    # Side vertices: ring-major.
    X = radius[:, None] * np.sin(ang)[None, :]
    Z = radius[:, None] * np.cos(ang)[None, :]
    Y = np.broadcast_to(ys[:, None], X.shape)
    side = np.stack([X, Y, Z], -1).reshape(-1, 3)
    bottom_c, top_c = np.array([[0, -1.0, 0]]), np.array([[0, 1.0, 0]])
    verts = np.concatenate([side, bottom_c, top_c]).astype(np.float32)
    ib, it = len(side), len(side) + 1
    faces = []
    for r in range(rings - 1):
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            c, d = a + segments, b + segments
            faces += [[a, b, d], [a, d, c]]  # outward (CCW from outside)
    last = (rings - 1) * segments
    for s in range(segments):
        faces.append([ib, (s + 1) % segments, s])
        faces.append([it, last + s, last + (s + 1) % segments])
    faces_np = np.asarray(faces, dtype=np.int64)
    # Colours: height gradient (terracotta → teal) with six vertical stripes.
    h = (verts[:, 1] + 1) / 2
    warm, cool = np.array([0.80, 0.42, 0.25]), np.array([0.15, 0.55, 0.60])
    col = warm[None] * (1 - h[:, None]) + cool[None] * h[:, None]
    phi = np.arctan2(verts[:, 0], verts[:, 2])
    stripe = (np.cos(6 * phi) > 0.85) & (np.abs(verts[:, 1]) < 0.7)
    col[stripe] = np.array([0.95, 0.85, 0.35])
    return Mesh(vertices=verts, faces=faces_np, colors=col.astype(np.float32))


def run_demo(
    workspace: str = "exp/demo",
    iters: int | None = None,
    device: str = "cpu",
    texture: str | None = None,
    text: str | None = None,
) -> int:
    """Texture the demo vase with toy-sd (prompt ``text``, default the preset's) and write every output into
    ``workspace``."""
    from pgc_fast import config as C
    from pgc_fast.mesh import save_mesh
    from pgc_fast.train.trainer import run

    ws = Path(workspace)
    mesh_path = ws.parent / f"{ws.name}_input" / "vase.ply"
    mesh_path.parent.mkdir(parents=True, exist_ok=True)
    save_mesh(make_demo_mesh(), mesh_path)
    over = {
        "mesh.path": str(mesh_path),
        "output.workspace": str(ws),
        "output.root": "",
        "output.force": True,
        "runtime.device": device,
    }
    if iters is not None:
        over["optim.iters"] = iters
    if texture is not None:
        over["texture.kind"] = texture
    if text is not None:
        over["guidance.text"] = text
    cfg = C.override(C.PRESETS["demo"], **over)
    unknown = _unknown_words(cfg.guidance.text)
    if unknown:
        print(
            f"pgc-fast demo: toy-sd does not know {unknown} (it reads them as one unknown token); its words: "
            f"colours {', '.join(_toy().COLOURS)}; patterns {', '.join(_toy().PATTERNS)}"
        )
    t0 = time.perf_counter()
    with _one_thread(device == "cpu" and "OMP_NUM_THREADS" not in os.environ):
        result = run(cfg)
    m = result.metrics
    clip = m.get("clip", {})
    print(
        f"pgc-fast demo: {m['steps']} steps in {time.perf_counter() - t0:.1f} s "
        f"({m['it_per_s']:.2f} it/s on {m['device']}); PGC clipped "
        f"{100 * clip.get('mean_clip_frac', 0):.1f}% of pixels on average"
    )
    _print_reading(result.workspace / "mesh.glb")
    print(f"open {result.workspace / 'report.html'}")
    return 0


@contextlib.contextmanager
def _one_thread(on: bool) -> Iterator[None]:
    """Run the CPU demo on one torch thread (``on``), then restore the thread count. Its operations are small
    (64² renders, a 10 MB model): on an idle 2-core machine one thread is about as fast as two (67 s against 61 s
    for the whole demo), and beside one other busy process two threads spin on each other's barriers and crawl
    (0.78 s per step against 0.09; benches/RESULTS.md)."""
    import torch

    n = torch.get_num_threads()
    if on:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _toy():
    from pgc_fast.guidance.models import toy

    return toy


def _unknown_words(text: str) -> list[str]:
    """Words of ``text`` outside toy-sd's vocabulary (its tokenizer: lower case, punctuation split off)."""
    import re

    known = set(_toy().VOCAB)
    return [w for w in re.findall(r"\w+|[^\w\s]", text.lower()) if w not in known]


def _print_reading(mesh_glb: Path) -> None:
    """What toy-sd's quality classifier (apps/toy_prior.py: mean colour, frequency test) reads on the exported
    vase from six sides."""
    from collections import Counter

    from pgc_fast.apps.toy_prior import classify_textured_mesh

    if not mesh_glb.is_file():
        return
    r = classify_textured_mesh(mesh_glb)
    words = [
        f"{w} ({n} of {len(r[k])} side views)"
        for k in ("colour", "pattern")
        for w, n in [Counter(r[k]).most_common(1)[0]]
    ]
    print(f"toy-sd's classifier reads the textured vase as {' and '.join(words)}")


def kernel_demo(seed: int = 0, tau: float = 0.1) -> int:
    """Show what pixel-wise gradient clipping (PGC) does to a synthetic rendered-image gradient.

    Builds a [4, 3, 256, 256] float32 gradient of ordinary magnitude (σ = 0.02 per channel) with a dozen
    huge outlier pixels (|g| ~ 50, like the silhouette-edge spikes SDS produces at high resolution), clips it
    with :func:`pgc_kernels.pixel_clip` (τ = ``tau``, L∞ over channels, the paper's method) and prints what
    changed. Runs on the CPU (the torch reference) or on CUDA (the Triton kernel). Returns 0.
    """
    import torch

    import pgc_kernels as pk

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(seed)
    b, c, h, w = 4, 3, 256, 256
    g = torch.randn(b, c, h, w, generator=gen) * 0.02
    n_out = 12
    bi = torch.randint(0, b, (n_out,), generator=gen)
    yi = torch.randint(0, h, (n_out,), generator=gen)
    xi = torch.randint(0, w, (n_out,), generator=gen)
    g[bi, :, yi, xi] = torch.randn(n_out, c, generator=gen) * 50
    g = g.to(dev)

    out, stats = pk.pixel_clip(g, tau, return_stats=True)
    norm_before = g.abs().amax(dim=1)  # per-pixel L∞ norm, [B, H, W]
    norm_after = out.abs().amax(dim=1)
    clipped = norm_before > tau
    cos = torch.nn.functional.cosine_similarity(out, g, dim=1)[clipped]
    keep = ~clipped.unsqueeze(1).expand_as(g)
    untouched = torch.equal(out[keep], g[keep])
    global_factor = tau / norm_before.max()  # what scaling the whole image to max ≤ τ would do

    backend = "Triton kernel" if dev == "cuda" else "torch reference (CPU; the Triton kernel runs on CUDA)"
    print(f"pgc-kernels {pk.__version__} demo: pixel-wise gradient clipping of a [{b},{c},{h},{w}] image gradient")
    print(f"  backend                : {backend}")
    print(f"  threshold τ            : {tau} (per pixel, max over channels, as PGC-3D)")
    print(
        f"  pixels clipped         : {int(clipped.sum())} of {clipped.numel()} "
        f"({100 * stats.fraction_clipped.item():.4f} %), the {n_out} injected outliers included"
    )
    print(f"  max pixel norm         : {stats.max_norm.item():.3f} before -> {norm_after.max().item():.3f} after")
    print(f"  mean pixel norm        : {stats.mean_norm.item():.5f} before -> {norm_after.mean().item():.5f} after")
    print(
        f"  direction preserved    : cosine(clipped, original) over clipped pixels = "
        f"{cos.min().item():.6f} .. {cos.max().item():.6f}"
    )
    print(f"  other pixels untouched : {untouched} (bit-identical)")
    print(
        f"  for contrast, one global rescale to the same bound would shrink every ordinary pixel "
        f"{1 / global_factor.item():.0f}x; PGC leaves them alone."
    )
    return 0
