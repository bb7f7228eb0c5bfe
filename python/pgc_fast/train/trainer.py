"""``run(cfg) -> RunResult``: the library entry point of a pgc-fast generation (the CLI calls exactly this).

Data flow (one process, one device)::

    RunConfig ──► mesh (load, normalise; transform kept)      ──► Scene (renderer + texture)
              ──► objective (guidance SDS/VSD/… or MSE)        ──► loss
              ──► Adam per parameter group (grids ×10 lr)     ──► optimiser step (AMP, GradScaler)
              ──► exporter (mesh.obj/mtl/png + glb in the input's frame, turntable, report)

The loop follows the original's per-step order (reference_spec.md §5): zero_grad → autocast forward → PGC hook
on the rendered image → ``scaler.scale(loss).backward()`` → ``unscale_`` → optional ``clip_grad_value_`` →
``scaler.step`` → ``update``. The PGC threshold is scale-aware under fp16: the hook clips with τ·S where S is
the GradScaler's current scale, read without a host sync (reference_spec.md §2.2).

Determinism and resume: cameras and render randomness come from per-step CPU generators keyed by
(seed, step, stream) (:func:`pgc_fast.distributed.step_generator`), the rest from the torch / numpy / python
global RNGs and the objective's own generators; a checkpoint stores those states (every rank's, under torchrun)
with the step, the texture, the optimiser, the scaler, the objective's state and the metric history, so
``--resume`` continues exactly as if the run had never stopped (tests/pipeline/test_resume.py checks bit equality).

Several processes (torchrun, or ``--gpus 0,1`` which relaunches through it): see :mod:`pgc_fast.distributed`.
Each rank renders its own ``batch_size`` views of the step's global batch, gradients are averaged after
backward, rank 0 alone writes files and shows the progress bar.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pgc_fast import config as C
from pgc_fast.export.views import _write_turntable, _write_validation
from pgc_fast.train import distributed as D
from pgc_fast.train.checkpoint import _load_resume_state, _save_checkpoint, _this_rank_state
from pgc_fast.train.metrics import (
    _STATS_EVERY,
    _clip_summary,
    _json_default,
    _materialise_stats,
    _peak_memory_mib,
    _Progress,
    _steady_s_per_it,
    _Timer,
)
from pgc_fast.train.objectives import GuidanceObjective, Objective, RunContext
from pgc_fast.train.runtime import _set_rng_state, resolve_device, resolve_precision, seed_everything
from pgc_fast.train.step import _make_optimizer, _PGCHook, _train_step
from pgc_fast.train.workspace import _config_yaml, prepare_workspace


@dataclass
class RunResult:
    """What a run produced. ``files`` maps output names (mesh_obj, mesh_glb, texture, turntable_mp4, …) to paths."""

    workspace: Path
    config: C.RunConfig
    step: int
    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    texture: Any = None
    """The trained texture module (pgc_fast.render texture), on the run's device."""


def run(
    cfg: C.RunConfig,
    *,
    objective: Objective | None = None,
    stop_after: int | None = None,
    quiet: bool = False,
    validate_files: bool = True,
) -> RunResult:
    """Run a generation described by ``cfg`` and write every output into its workspace.

    Args:
        cfg: the run configuration (validated here; a ConfigError lists every problem).
        objective: the loss; default from ``cfg.optim.objective`` (``guidance`` → :class:`GuidanceObjective`).
            ``mse`` needs an explicit :class:`MSEObjective`.
        stop_after: stop (with a checkpoint, no exports) once this many total steps are done, as if the process
            had been killed right after that checkpoint; continue later with ``output.resume``. For tests and
            time-boxed jobs.
        quiet: no progress bar.
        validate_files: check that input files exist during validation.

    Returns:
        RunResult with the workspace, final step, output files and metrics. Under torchrun every rank calls
        this; rank 0 writes the files, the other ranks return the trained texture with ``files`` empty.
    """
    C.validate(cfg, check_files=validate_files)
    if objective is None:
        if cfg.optim.objective != "guidance":
            raise ValueError("run(): optim.objective=mse needs objective=MSEObjective(targets, cameras)")
        objective = GuidanceObjective()
    t_start = time.perf_counter()
    device = resolve_device(cfg)
    dist = D.init(cuda=device.type == "cuda")
    quiet = quiet or not dist.is_main
    ws = D.rank0_call(lambda: prepare_workspace(cfg), dist)
    timer = _Timer(device)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(cfg.optim.seed)  # the same on every rank: identical texture init (then broadcast anyway)
    autocast_dtype, use_scaler = resolve_precision(cfg, device)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10, enabled=use_scaler)

    ckpt_dir = ws / "checkpoints"
    state: dict[str, Any] | None = None
    if cfg.output.resume:  # checked before any model is loaded; rank 0 reads, every rank gets it
        state = D.rank0_call(lambda: _load_resume_state(ckpt_dir, cfg, device, dist), dist)
        state = _this_rank_state(state, dist)

    from pgc_fast.train.geometry import Scene

    with timer.phase("load_mesh"):
        scene = Scene.from_config(cfg, device)
    ctx = RunContext(cfg, device, autocast_dtype, scaler, scene, ws, dist)
    with timer.phase("load_model"):
        objective.setup(ctx)

    history: dict[str, list] = {"step": [], "loss": [], "clip_frac": [], "time": []}
    start_step = 0
    resumed_from = None
    if state is not None:
        scene.texture.load_state_dict(state["texture"])
        start_step = state["step"]
        resumed_from = start_step
        history = state["history"]
    else:
        if cfg.texture.init_from_vertex_colors and scene.mesh_has_vertex_colors:
            with timer.phase("init_texture"):
                scene.fit_vertex_colors(cfg.texture.init_iters, seed=cfg.optim.seed)
        D.broadcast_module(scene.texture, dist)  # GPU pre-fits may differ in the last bit between ranks
        # Re-seed after the (optional) pre-fit so the training draws do not depend on it; one stream per rank
        # (the original's seed + global_rank).
        seed_everything(cfg.optim.seed + 1 + dist.rank)

    optimizer = _make_optimizer(cfg, scene)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        objective.load_state_dict(state.get("objective", {}))
        _set_rng_state(state["rng"], device)
        prev_phases = state.get("phases", {})
        for k, v in prev_phases.items():
            if k == "train":
                timer.phases[k] = v
    if dist.is_main:
        (ws / "config.yaml").write_text(_config_yaml(cfg))

    pgc = _PGCHook(cfg.guidance, scaler if use_scaler else None)
    iters = cfg.optim.iters
    end_step = iters if stop_after is None else min(iters, stop_after)
    val_dir = ws / "validation"
    files: dict[str, Path] = {}
    progress = _Progress(total=iters, start=start_step, device=device, quiet=quiet)
    train_t0 = time.perf_counter()
    steps_run = 0
    try:
        with progress, timer.phase("train"):
            # Step statistics stay on the device and are read back every _STATS_EVERY steps in one transfer:
            # a per-step read would stall the host each step until the GPU drains (a host sync), so the next
            # step could not be queued while this one runs.
            pending: list[tuple[int, dict[str, Any]]] = []

            def flush() -> None:
                for done_k, st in _materialise_stats(pending):
                    history["step"].append(done_k)
                    history["loss"].append(st.get("loss", float("nan")))
                    history["clip_frac"].append(st.get("clip_frac", float("nan")))
                    history["time"].append(time.perf_counter() - t_start)
                    progress.update(done_k, st)
                pending.clear()

            for step in range(start_step, end_step):
                stats = _train_step(step, cfg, ctx, scene, objective, optimizer, scaler, pgc)
                steps_run += 1
                done = step + 1
                pending.append((done, stats))
                val_now = bool(cfg.output.val_every and done % cfg.output.val_every == 0 and done < iters and dist.is_main)
                ckpt_now = bool((cfg.output.ckpt_every and done % cfg.output.ckpt_every == 0) or done == end_step)
                if done % _STATS_EVERY == 0 or val_now or ckpt_now:
                    flush()
                if val_now:
                    _write_validation(scene, cfg, val_dir, done)
                if ckpt_now:
                    _save_checkpoint(ckpt_dir, done, scene, optimizer, scaler, objective, history, timer, ctx)
    except KeyboardInterrupt:
        progress.stop()
        if dist.is_main:
            print(f"interrupted: resume with --resume (last checkpoint in {ckpt_dir})", file=sys.stderr)
        raise
    train_time = time.perf_counter() - train_t0
    final_step = history["step"][-1] if history["step"] else start_step
    result = RunResult(workspace=ws, config=cfg, step=final_step, texture=scene.texture)
    if final_step < iters:  # stopped early on purpose: checkpoint only
        return result
    per_rank = D.gather_object({"memory": _peak_memory_mib(device), "device": str(device),
                                "train_s": train_time, "steps": steps_run}, dist)
    if not dist.is_main:  # rank 0 alone exports; nothing below is collective
        return result

    scene.texture.eval()
    with torch.no_grad():
        files.update(_write_validation(scene, cfg, val_dir, final_step))
        if cfg.output.save_mesh:
            with timer.phase("export_mesh"):
                files.update(scene.export(ws, cfg))
        if cfg.output.turntable_frames:
            with timer.phase("turntable"):
                files.update(_write_turntable(scene, cfg, ws))
    from pgc_fast.export import report as R

    metrics = {
        "steps": final_step,
        "steps_this_session": steps_run,
        "resumed_from": resumed_from,
        "it_per_s": steps_run / train_time if train_time > 0 and steps_run else None,
        "s_per_it": train_time / steps_run if steps_run else None,
        "steady_s_per_it": _steady_s_per_it(history, steps_run),
        "views_per_step": cfg.views_per_step * dist.world_size,
        "views_per_rank": cfg.views_per_step,
        "world_size": dist.world_size,
        "ranks": per_rank if dist.enabled else None,
        "device": str(device),
        "render_backend": type(scene.renderer.backend).__name__,
        "texture": cfg.texture.kind,
        "precision": str(autocast_dtype).replace("torch.", "") if autocast_dtype else "float32",
        "grad_scaler": use_scaler,
        "phases_s": {k: round(v, 4) for k, v in timer.phases.items()},
        "memory": _peak_memory_mib(device),
        "clip": _clip_summary(history),
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "video": files.pop("_video_note", None),
        "history": history,
    }
    with timer.phase("report"):
        (ws / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_default))
        files["metrics"] = ws / "metrics.json"
        files["config"] = ws / "config.yaml"
        if cfg.output.report:
            files["report"] = R.write_report(ws, cfg, metrics, files)
    metrics["phases_s"] = {k: round(v, 4) for k, v in timer.phases.items()}
    metrics["total_s"] = time.perf_counter() - t_start
    (ws / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_default))
    result.files = {k: Path(v) for k, v in files.items() if not k.startswith("_")}
    result.metrics = metrics
    if not quiet:
        mem = metrics["memory"]
        peak = (f"peak GPU memory {mem['gpu_peak_allocated_mib'] / 1024:.2f} GiB" if "gpu_peak_allocated_mib" in mem
                else f"peak RSS {mem.get('cpu_peak_rss_mib', 0):.0f} MiB")
        if steps_run:
            steady = metrics["steady_s_per_it"]
            print(f"{steps_run} steps: {metrics['s_per_it']:.3f} s/it ({metrics['it_per_s']:.2f} it/s)"
                  + (f", {steady:.3f} s/it after the first {_STATS_EVERY} (compile, JIT)" if steady else "") + f", {peak}")
        print(f"outputs in {ws}: " + ", ".join(sorted(p.name for p in result.files.values() if isinstance(p, Path))))
    return result

