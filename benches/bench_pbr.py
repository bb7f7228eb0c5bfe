"""What PBR shading costs the command-B step (issue 18, item 6): README command A (``-O0 -O2 -O4 --guidance
controlnet``, the albedo field) against command B (the same with ``--pbr``: material field, split-sum environment
light, tangent-space normal perturbation) as ``train.step.train_step``, in one process, on the same mesh, views,
resolution and guidance (one SDXL + depth-ControlNet model shared by both, random full-size weights
``sdxl-random``). Steps alternate A, B, A, B… so clock and thermal drift hit both alike.

Prints ms per step (median of synced steps, and pipelined), the render forward + backward alone, the one-off light
prefilter, and the added cost of PBR as a percentage of the command-B step (the issue's bar: ≤ 10 %). With
``--results FILE`` the table is appended.

    python benches/bench_pbr.py --views 2 --res 1024 --results benches/RESULTS.md     # H100
    python benches/bench_pbr.py --device cpu --model tiny-sdxl --res 64 --views 1 --iters 2 --warmup 1 \
        --env-res 64 --mesh /tmp/vase.ply --bg python/pgc_fast/render/assets/scenery.png    # CPU smoke

Not a pytest file (it needs a GPU and several GB of weights); tests/pipeline/test_pbr.py covers the code on the CPU.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time

import torch

from _gpu_common import add_panda_args, emit, script_parser, sync, train_session
from bench_step import build_config


def timed(fn, device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - t0) * 1e3


def render_ms(scene, views: int, res: int, device: str, dtype, reps: int) -> float:
    """Median ms of one training render forward + backward of ``views`` views."""
    from pgc_fast.render import OrbitSampler

    cams = OrbitSampler(height=res).sample(views, generator=torch.Generator().manual_seed(1), device=device)

    def once() -> None:
        ac = torch.autocast(device, dtype=dtype) if dtype is not None else torch.autocast(device, enabled=False)
        with ac:
            r = scene.render(cams, train=True, step=10**6, generator=torch.Generator().manual_seed(0))
        r.image.backward(torch.ones_like(r.image))

    once()
    return statistics.median(timed(once, device) for _ in range(reps))


def measure(a: argparse.Namespace) -> dict:
    from pgc_fast import config as C

    ws = tempfile.mkdtemp(prefix="bench_pbr_")
    cfg_a = build_config(a.mesh, a.views, a.res, 1000, os.path.join(ws, "a"), a.bg, a.model, a.device)
    cfg_a = C.override(cfg_a, **{"guidance.compile": a.compile})
    over = {"texture.material": "pbr", "pbr.env_resolution": a.env_res, "output.workspace": os.path.join(ws, "b")}
    cfg_b = C.override(cfg_a, **over)
    step_a, scene_a, objective, _, dtype = train_session(cfg_a, a.device)
    step_b, scene_b, *_ = train_session(cfg_b, a.device, objective)
    t0 = time.perf_counter()
    scene_b.texture.light.ensure_built(scene_b.renderer.backend.cube_texture)  # the one-off prefilter
    sync(a.device)
    light_s = time.perf_counter() - t0
    for _ in range(a.warmup):
        step_a(), step_b()
    ms_a, ms_b = [], []
    for _ in range(a.iters):
        ms_a.append(timed(step_a, a.device))
        ms_b.append(timed(step_b, a.device))
    pipe = {}
    for name, fn in (("a", step_a), ("b", step_b)):
        pipe[name] = timed(lambda fn=fn: [fn() for _ in range(a.iters)], a.device) / a.iters
    return {
        "a": statistics.median(ms_a),
        "b": statistics.median(ms_b),
        "pipe": pipe,
        "render_a": render_ms(scene_a, a.views, a.res, a.device, dtype, a.iters),
        "render_b": render_ms(scene_b, a.views, a.res, a.device, dtype, a.iters),
        "light_s": light_s,
        "peak": torch.cuda.max_memory_allocated() / 2**30 if a.device == "cuda" else float("nan"),
    }


def main(argv=None) -> None:
    ap = script_parser(__doc__)
    views_help = "command B's batch on one GPU (the original's SDXL rule)"
    add_panda_args(ap, views=2, views_help=views_help, iters=10, warmup=3)
    ap.add_argument("--compile", action="store_true", help="guidance.compile on (UNet + ControlNet blocks)")
    ap.add_argument("--env-res", type=int, default=512, help="pbr.env_resolution (the original's 512; 64 on a CPU)")
    a = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = True
    m = measure(a)
    dev = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    added = (m["b"] - m["a"]) / m["b"] * 100
    text = "\n".join(
        [
            f"### PBR in the command-B step (`{a.model}`), {a.views} views at {a.res}² — {dev}, torch "
            f"{torch.__version__}, commit {os.environ.get('PGC_COMMIT', 'unknown')}, {datetime.date.today()} "
            f"(`python benches/bench_pbr.py --views {a.views} --res {a.res} --env-res {a.env_res}"
            f"{' --compile' if a.compile else ''}`)",
            "",
            "| step | ms / step (synced) | ms / step (pipelined) | render fwd+bwd ms |",
            "|---|---|---|---|",
            f"| command A (albedo field) | {m['a']:.1f} | {m['pipe']['a']:.1f} | {m['render_a']:.2f} |",
            f"| command B (`--pbr`) | {m['b']:.1f} | {m['pipe']['b']:.1f} | {m['render_b']:.2f} |",
            "",
            f"PBR adds {m['b'] - m['a']:.1f} ms = {added:.1f} % of the command-B step (bar: ≤ 10 %); light prefilter "
            f"once {m['light_s']:.2f} s; peak {m['peak']:.1f} GiB (both pipelines, one guidance model). Median of "
            f"{a.iters} alternating synced steps after {a.warmup} warm-up pairs.",
            "",
        ]
    )
    emit(text, a.results)


if __name__ == "__main__":
    main()
