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

from bench_step import build_config


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def session(cfg, device: str, objective=None):
    """Everything run() sets up before its loop (the guidance objective shared when given): (step, scene,
    objective, autocast dtype)."""
    from pgc_fast.train.geometry import Scene
    from pgc_fast.train.objectives import GuidanceObjective, RunContext
    from pgc_fast.train.runtime import resolve_precision, seed_everything
    from pgc_fast.train.step import make_optimizer, train_step
    from pgc_fast.train.workspace import prepare_workspace

    dev = torch.device(device)
    seed_everything(cfg.optim.seed)
    autocast_dtype, use_scaler = resolve_precision(cfg, dev)
    scaler = torch.amp.GradScaler(dev.type, init_scale=2.0**10, enabled=use_scaler)
    scene = Scene.from_config(cfg, dev)
    ctx = RunContext(cfg, dev, autocast_dtype, scaler, scene, prepare_workspace(cfg))
    if objective is None:
        objective = GuidanceObjective()
        objective.setup(ctx)
    optimizer = make_optimizer(cfg, scene)
    state = {"step": 0}

    def step() -> None:
        train_step(state["step"], ctx, objective, optimizer)
        state["step"] += 1

    return step, scene, objective, autocast_dtype


def timed(fn, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
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
    step_a, scene_a, objective, dtype = session(cfg_a, a.device)
    step_b, scene_b, _, _ = session(cfg_b, a.device, objective)
    t0 = time.perf_counter()
    scene_b.texture.light.ensure_built(scene_b.renderer.backend.cube_texture)  # the one-off prefilter
    _sync(a.device)
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", default=os.environ.get("PGC_PANDA", "../shared/data/panda_spear_shield.obj"))
    ap.add_argument("--bg", default=os.environ.get("PGC_BG", "../shared/data/background.png"))
    ap.add_argument("--views", type=int, default=2, help="command B's batch on one GPU (the original's SDXL rule)")
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--model", default="sdxl-random", help="tiny-sdxl with --device cpu: a smoke run")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--compile", action="store_true", help="guidance.compile on (UNet + ControlNet blocks)")
    ap.add_argument("--env-res", type=int, default=512, help="pbr.env_resolution (the original's 512; 64 on a CPU)")
    ap.add_argument("--results", default=None)
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
    print(text, flush=True)
    if a.results:
        with open(a.results, "a") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
