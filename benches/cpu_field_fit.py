"""The field texture's vertex-colour pre-fit: the original's schedule (fixed 2^16 surface points, every configured
step) against pgc-fast's CPU schedule (render/textures/field.py fit_schedule: 2^12 fresh points per step, half the
steps, lr 3e-2), timed in the same process, with the quality of each (surface PSNR against the vertex colours,
vertex_color_psnr) and the ratio.

    python benches/cpu_field_fit.py                  # demo vase, the demo's 100 steps; the original's timed on 3 steps
    python benches/cpu_field_fit.py --iters 500 --full --device cuda   # both schedules run in full (GPU: seconds)

Without --full the original schedule's time is its measured seconds per step times its steps (a full CPU run of
500 steps takes over half an hour on a 2-core machine), and its PSNR is not measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch

from pgc_fast.apps.demo import make_demo_mesh
from pgc_fast.mesh import Normalization
from pgc_fast.render.renderer import RenderMesh
from pgc_fast.render.textures import FieldTexture
from pgc_fast.render.textures.field import FitPlan, fit_field_to_vertex_colors, fit_schedule, vertex_color_psnr


def checker_mesh() -> object:
    """The vase at 192 x 128 with a 24 x 16 checkerboard of vertex colours: detail finer than the demo's."""
    m = make_demo_mesh(192, 128)
    v = np.asarray(m.vertices)
    phi = np.arctan2(v[:, 0], v[:, 2])
    c = ((np.floor(phi / (2 * math.pi) * 24) + np.floor((v[:, 1] + 1) * 8)) % 2)[:, None]
    m.colors = (c * np.array([0.9, 0.2, 0.1]) + (1 - c) * np.array([0.1, 0.3, 0.9])).astype(np.float32)
    return m


def render_mesh(m: object, device: torch.device) -> RenderMesh:
    norm = Normalization.fit(m.vertices)  # type: ignore[attr-defined]
    return RenderMesh(
        vertices=torch.from_numpy(norm.apply(np.asarray(m.vertices))).float(),  # type: ignore[attr-defined]
        faces=torch.from_numpy(np.asarray(m.faces)),  # type: ignore[attr-defined]
        colors=torch.from_numpy(np.asarray(m.colors)).float(),  # type: ignore[attr-defined]
    ).to(device)


def timed_fit(mesh: RenderMesh, plan: FitPlan, device: torch.device) -> tuple[float, float]:
    """(seconds, surface PSNR) of one fit from the same initial field."""
    torch.manual_seed(0)
    tex = FieldTexture(bound=1.0).to(device)
    gen = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit_field_to_vertex_colors(tex, mesh, **dataclasses.asdict(plan), generator=gen)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, vertex_color_psnr(tex, mesh, generator=torch.Generator().manual_seed(123))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=100, help="configured texture.init_iters (the demo's: 100)")
    ap.add_argument("--mesh", choices=("vase", "checker"), default="vase")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--full", action="store_true", help="run the original schedule in full (quality too)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    mesh = render_mesh(make_demo_mesh() if a.mesh == "vase" else checker_mesh(), dev)
    ours = fit_schedule(torch.device("cpu"), a.iters)
    ours_s, ours_psnr = timed_fit(mesh, ours, dev)
    original = fit_schedule(torch.device("cuda"), a.iters)  # the original's schedule, whatever device runs it
    probe = a.iters if a.full else 3
    orig_s, orig_psnr = timed_fit(mesh, dataclasses.replace(original, steps=probe), dev)
    orig_total = orig_s / probe * a.iters
    print(f"mesh {a.mesh}, device {dev}, {torch.get_num_threads()} threads, texture.init_iters {a.iters}")
    print(
        f"original schedule: {a.iters} steps x {original.n_points} points, lr {original.lr:g}: {orig_total:.1f} s"
        + (f", PSNR {orig_psnr:.2f} dB" if a.full else f" ({orig_s / probe:.2f} s/step over {probe} steps)")
    )
    print(
        f"CPU schedule:      {ours.steps} steps x {ours.n_points} fresh points, lr {ours.lr:g}: {ours_s:.1f} s, "
        f"PSNR {ours_psnr:.2f} dB"
    )
    print(f"speed-up: {orig_total / ours_s:.1f}x")


if __name__ == "__main__":
    main()
