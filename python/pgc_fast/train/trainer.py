"""``run(cfg) -> RunResult``: the library entry point of a pgc-fast generation (the CLI calls exactly this).

Data flow (one process, one device)::

    RunConfig ──► mesh (load, normalise; transform kept)      ──► Scene (renderer + texture)
              ──► objective (guidance SDS/VSD/… or MSE)        ──► loss
              ──► Adam per parameter group (grids ×10 lr)     ──► optimiser step (AMP, GradScaler)
              ──► exporter (mesh.obj/mtl/png + glb in the input's frame, turntable, report)

The loop follows the original's per-step order (the original's main.py training loop, fudan-zvg/PGC-3D): zero_grad →
autocast forward → PGC hook
on the rendered image → ``scaler.scale(loss).backward()`` → ``unscale_`` → optional ``clip_grad_value_`` →
``scaler.step`` → ``update``. The PGC threshold is scale-aware under fp16: the hook clips with τ·S where S is
the GradScaler's current scale, read without a host sync.

Determinism and resume: cameras and render randomness come from per-step CPU generators keyed by
(seed, step, stream) (:func:`pgc_fast.train.distributed.step_generator`), the rest from the torch / numpy / python
global RNGs and the objective's own generators; a checkpoint stores those states (every rank's, under torchrun)
with the step, the texture, the optimiser, the scaler, the objective's state and the metric history, so
``--resume`` continues exactly as if the run had never stopped (tests/pipeline/test_resume.py checks bit equality;
tests/pipeline/test_kill_resume.py kills runs at any moment, inside checkpoint writes and exports included).
Checkpoints are safetensors + JSON, checksummed, no pickle (:mod:`pgc_fast.train.state_file`); every file a run
writes goes through :mod:`pgc_fast.export.files` (temporary file, fsync, rename), so a kill leaves no cut file.

Several processes (torchrun, or ``--gpus 0,1`` which relaunches through it): see :mod:`pgc_fast.train.distributed`.
Each rank renders its own ``batch_size`` views of the step's global batch, gradients are averaged after
backward, rank 0 alone writes files and shows the progress bar.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pgc_fast import config as C
from pgc_fast.export import report as R
from pgc_fast.export.files import write_text_atomic
from pgc_fast.export.views import write_turntable, write_validation
from pgc_fast.train import distributed as D
from pgc_fast.train.checkpoint import (
    CheckpointError,
    load_resume_state,
    save_checkpoint,
    this_rank_state,
)
from pgc_fast.train.geometry import Scene
from pgc_fast.train.latent import attach_decoder
from pgc_fast.train.metrics import (
    GEOMETRY_STATS,
    PARAMS_FINITE,
    STATS_EVERY,
    Progress,
    Timer,
    clip_summary,
    geometry_summary,
    grouped_phases,
    json_default,
    materialise_stats,
    params_finite,
    peak_memory_mib,
    process_age_s,
    raise_if_non_finite,
    steady_s_per_it,
)
from pgc_fast.train.objectives import GuidanceObjective, Objective, RunContext
from pgc_fast.train.preflight import preflight
from pgc_fast.train.runtime import (
    resolve_device,
    resolve_precision,
    seed_everything,
    set_rng_state,
)
from pgc_fast.train.step import make_optimizer, train_step
from pgc_fast.train.workspace import prepare_workspace, write_config_yaml

__all__ = ["RunResult", "run"]


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
    geometry: Any = None
    """The trained geometry (train/geometry.py Geometry: the fixed mesh, or DMTet's shape), on the run's device."""


@dataclass
class _Session:
    """The loop's state between the named steps of :func:`run`."""

    ctx: RunContext
    objective: Objective
    timer: Timer
    t_start: float
    quiet: bool
    optimizer: torch.optim.Optimizer | None = None
    history: dict[str, list] = field(default_factory=lambda: {"step": [], "loss": [], "clip_frac": [], "time": []})
    start_step: int = 0
    resumed_from: int | None = None
    steps_run: int = 0
    train_time: float = 0.0
    startup_s: float | None = None


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
    preflight(cfg)  # device, GPU ids and a mesh that loads: refused before the workspace is created
    if objective is None:
        if cfg.optim.objective != "guidance":
            raise ValueError("run(): optim.objective=mse needs objective=MSEObjective(targets, cameras)")
        objective = GuidanceObjective()
    s = restore_or_init(cfg, objective, quiet)
    fit(s, cfg.optim.iters if stop_after is None else min(cfg.optim.iters, stop_after))
    return finish(s)


def _start(cfg: C.RunConfig, objective: Objective, quiet: bool) -> tuple[_Session, dict[str, Any] | None]:
    """Device, process group, workspace, precision and seeds; the checkpoint to resume from (checked before any
    model is loaded; rank 0 reads it, every rank gets its own part)."""
    t_start, startup_s = time.perf_counter(), process_age_s()
    device = resolve_device(cfg)
    dist = D.init(cuda=device.type == "cuda")
    ws = D.rank0_call(lambda: prepare_workspace(cfg), dist)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(cfg.optim.seed)  # the same on every rank: identical texture init (then broadcast anyway)
    autocast_dtype, use_scaler = resolve_precision(cfg, device)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10, enabled=use_scaler)
    state = None
    if cfg.output.resume:  # None when the workspace has no checkpoint yet (prepare_workspace said so)
        state = D.rank0_call(lambda: load_resume_state(ws / "checkpoints", cfg, dist), dist)
    if state is not None:
        state = this_rank_state(state, dist)
    schedule_iters = state["schedule_iters"] if state is not None else cfg.optim.iters
    ctx = RunContext(cfg, device, autocast_dtype, scaler, None, ws, dist, schedule_iters=schedule_iters)
    s = _Session(ctx, objective, Timer(device), t_start, quiet or not dist.is_main, startup_s=startup_s)
    return s, state


def restore_or_init(cfg: C.RunConfig, objective: Objective, quiet: bool) -> _Session:
    """Everything before the first step: the scene, the guidance, then either the checkpoint's state (texture,
    optimiser, scaler, objective, RNG, history) or a fresh texture (vertex-colour pre-fit when asked)."""
    s, state = _start(cfg, objective, quiet)
    ctx = s.ctx
    with s.timer.phase("load_mesh"):
        ctx.scene = Scene.from_config(cfg, ctx.device)
    with s.timer.phase("load_model"):
        objective.setup(ctx)
    attach_decoder(ctx.scene, objective)  # latent mode: the guidance's VAE decodes what is shown and exported
    if state is None:
        _init_texture(s)
        s.optimizer = make_optimizer(cfg, ctx.scene)
    else:
        _restore(s, state)
    if ctx.dist.is_main:
        write_config_yaml(ctx.workspace, cfg)
    return s


def _restore(s: _Session, state: dict[str, Any]) -> None:
    """Load a checkpoint's state into the session. A state that does not fit this run (a checkpoint edited by
    hand, or written for another texture) is one CheckpointError, not a traceback from deep in torch."""
    ctx = s.ctx
    try:
        ctx.scene.texture.load_state_dict(state["texture"])
        ctx.scene.geometry.load_state_dict(state.get("geometry") or {})
        s.start_step = s.resumed_from = state["step"]
        s.history = state["history"]
        s.optimizer = make_optimizer(ctx.cfg, ctx.scene)
        s.optimizer.load_state_dict(state["optimizer"])
        ctx.scaler.load_state_dict(state["scaler"])
        s.objective.load_state_dict(state.get("objective") or {})
        set_rng_state(state["rng"], ctx.device)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise CheckpointError(
            f"the checkpoint of step {state.get('step')} does not fit this run ({type(e).__name__}: {msg}); "
            f"start again with --force"
        ) from None
    phases = state.get("phases")
    if isinstance(phases, dict) and isinstance(phases.get("train"), float):
        s.timer.phases["train"] = phases["train"]


def _init_texture(s: _Session) -> None:
    cfg, ctx = s.ctx.cfg, s.ctx
    fitted = False
    if cfg.mesh.shape != "fixed":  # DMTet: the shape from the mesh's signed distance (the texture too, jointly)
        with s.timer.phase("init_geometry"):
            fitted = ctx.scene.init_geometry(seed=cfg.optim.seed, show_progress=not s.quiet)
        D.broadcast_module(ctx.scene.geometry, ctx.dist)
    if cfg.texture.init_from_vertex_colors and ctx.scene.mesh_has_vertex_colors and not fitted:
        with s.timer.phase("init_texture"):
            ctx.scene.fit_vertex_colors(cfg.texture.init_iters, seed=cfg.optim.seed, show_progress=not s.quiet)
    D.broadcast_module(ctx.scene.texture, ctx.dist)  # GPU pre-fits may differ in the last bit between ranks
    # Re-seed after the (optional) pre-fit so the training draws do not depend on it; one stream per rank
    # (the original's seed + global_rank).
    seed_everything(cfg.optim.seed + 1 + ctx.dist.rank)


def fit(s: _Session, end_step: int) -> None:
    """Steps ``s.start_step`` … ``end_step − 1``, with validation images and checkpoints on their schedule.

    Step statistics stay on the device and are read back every STATS_EVERY steps in one transfer: a per-step
    read would stall the host each step until the GPU drains (a host sync), so the next step could not be
    queued while this one runs."""
    ctx, cfg = s.ctx, s.ctx.cfg
    assert s.optimizer is not None
    iters, out = cfg.optim.iters, cfg.output
    progress = Progress(total=iters, start=s.start_step, device=ctx.device, quiet=s.quiet)
    pending: list[tuple[int, dict[str, Any]]] = []
    before = {k: s.timer.phases.get(k, 0.0) for k in _IN_LOOP}
    train_t0 = time.perf_counter()
    try:
        with progress, s.timer.phase("train"):
            for step in range(s.start_step, end_step):
                # The session's first step pays torch.compile and the JIT: timed apart as "compile".
                with s.timer.phase("compile") if s.steps_run == 0 else contextlib.nullcontext():
                    pending.append((step + 1, train_step(step, ctx, s.objective, s.optimizer)))
                s.steps_run += 1
                done = step + 1
                val_now = bool(out.val_every and done % out.val_every == 0 and done < iters and ctx.dist.is_main)
                ckpt_now = bool((out.ckpt_every and done % out.ckpt_every == 0) or done == end_step)
                if done % STATS_EVERY == 0 or val_now or ckpt_now:
                    _flush_stats(s, pending, progress)
                if val_now:
                    with s.timer.phase("validation"):
                        write_validation(ctx.scene, cfg, ctx.workspace / "validation", done)
                if ckpt_now:
                    with s.timer.phase("checkpoint"):
                        _save_checkpoint(s, done)
    except KeyboardInterrupt:
        progress.stop()
        if ctx.dist.is_main:
            print(
                f"interrupted: resume with --resume (last checkpoint in {ctx.workspace / 'checkpoints'})",
                file=sys.stderr,
            )
        raise
    s.train_time = time.perf_counter() - train_t0
    ph = s.timer.phases
    ph["steps"] = ph.get("steps", 0.0) + s.train_time - sum(ph.get(k, 0.0) - before.get(k, 0.0) for k in _IN_LOOP)


# Phases timed inside the loop; "steps" is the loop's time less these.
_IN_LOOP = ("compile", "validation", "checkpoint")


def _save_checkpoint(s: _Session, done: int) -> None:
    ctx = s.ctx
    assert s.optimizer is not None
    save_checkpoint(
        ctx.workspace / "checkpoints", done, ctx.scene, s.optimizer, ctx.scaler, s.objective, s.history, s.timer, ctx
    )


def _flush_stats(s: _Session, pending: list[tuple[int, dict[str, Any]]], progress: Progress) -> None:
    """Read the pending step statistics back (one transfer) into the history and the progress bar; stop the run on
    a non-finite loss or parameter (the parameters' finiteness flag rides in the same transfer: no extra sync)."""
    if pending and s.optimizer is not None:
        params = (p for g in s.optimizer.param_groups for p in g["params"])
        pending[-1][1][PARAMS_FINITE] = params_finite(params)
    entries = materialise_stats(pending)
    raise_if_non_finite(entries, grad_scaler=s.ctx.scaler.is_enabled(), checkpoints=s.ctx.workspace / "checkpoints")
    for done_k, st in entries:
        s.history["step"].append(done_k)
        s.history["loss"].append(st.get("loss", float("nan")))
        s.history["clip_frac"].append(st.get("clip_frac", float("nan")))
        for k in GEOMETRY_STATS:  # DMTet: the extracted mesh's size and extraction time of each step
            if k in st:
                s.history.setdefault(k, []).append(st[k])
        s.history["time"].append(time.perf_counter() - s.t_start)
        progress.update(done_k, st)
    pending.clear()


def finish(s: _Session) -> RunResult:
    """After the last step: exports, metrics and the report (rank 0), or just the result when stopped early."""
    ctx, cfg = s.ctx, s.ctx.cfg
    final_step = s.history["step"][-1] if s.history["step"] else s.start_step
    result = RunResult(
        workspace=ctx.workspace, config=cfg, step=final_step, texture=ctx.scene.texture, geometry=ctx.scene.geometry
    )
    if final_step < cfg.optim.iters:  # stopped early on purpose: checkpoint only
        return result
    per_rank = D.gather_object(
        {
            "memory": peak_memory_mib(ctx.device),
            "device": str(ctx.device),
            "train_s": s.train_time,
            "steps": s.steps_run,
        },
        ctx.dist,
    )
    if not ctx.dist.is_main:  # rank 0 alone exports; nothing below is collective
        return result
    files = _export(s, final_step)
    metrics = _metrics(s, final_step, per_rank, files)
    ws = ctx.workspace
    with s.timer.phase("report"):
        files["metrics"] = ws / "metrics.json"
        files["config"] = ws / "config.yaml"
        if cfg.output.report:
            files["report"] = R.write_report(ws, cfg, metrics, files)
    metrics["phases_s"] = {k: round(v, 4) for k, v in s.timer.phases.items()}
    metrics["phases_grouped_s"] = grouped_phases(s.timer.phases)
    metrics["total_s"] = time.perf_counter() - s.t_start
    metrics["startup_s"] = s.startup_s
    write_text_atomic(ws / "metrics.json", json.dumps(metrics, indent=1, default=json_default))
    result.files = {k: Path(v) for k, v in files.items() if not k.startswith("_")}
    result.metrics = metrics
    if not s.quiet:
        _print_summary(s, metrics, result)
    return result


def _export(s: _Session, final_step: int) -> dict[str, Any]:
    ctx, cfg = s.ctx, s.ctx.cfg
    files: dict[str, Any] = {}
    ctx.scene.texture.eval()
    with torch.no_grad():
        ctx.scene.geometry.finalize()  # DMTet: the final surface, floaters removed, for every output below
        with s.timer.phase("final_views"):
            files.update(write_validation(ctx.scene, cfg, ctx.workspace / "validation", final_step))
        if cfg.output.save_mesh:
            with s.timer.phase("export_mesh"):
                files.update(ctx.scene.export(ctx.workspace, cfg))
        if cfg.output.turntable_frames:
            with s.timer.phase("turntable"):
                files.update(write_turntable(ctx.scene, cfg, ctx.workspace))
    return files


def _metrics(s: _Session, final_step: int, per_rank: Any, files: dict[str, Any]) -> dict[str, Any]:
    ctx, cfg, steps_run, train_time = s.ctx, s.ctx.cfg, s.steps_run, s.train_time
    return {
        "steps": final_step,
        "steps_this_session": steps_run,
        "resumed_from": s.resumed_from,
        "it_per_s": steps_run / train_time if train_time > 0 and steps_run else None,
        "s_per_it": train_time / steps_run if steps_run else None,
        "steady_s_per_it": steady_s_per_it(s.history, steps_run),
        "views_per_step": cfg.views_per_step * ctx.dist.world_size,
        "views_per_rank": cfg.views_per_step,
        "world_size": ctx.dist.world_size,
        "ranks": per_rank if ctx.dist.enabled else None,
        "device": str(ctx.device),
        "render_backend": type(ctx.scene.renderer.backend).__name__,
        "texture": cfg.texture.kind,
        "precision": str(ctx.autocast_dtype).replace("torch.", "") if ctx.autocast_dtype else "float32",
        "grad_scaler": ctx.scaler.is_enabled(),
        "phases_s": {k: round(v, 4) for k, v in s.timer.phases.items()},
        "memory": peak_memory_mib(ctx.device),
        "clip": clip_summary(s.history),
        "geometry": geometry_summary(cfg, s.history),
        "final_loss": s.history["loss"][-1] if s.history["loss"] else None,
        "video": files.pop("_video_note", None),
        "history": s.history,
    }


def _print_summary(s: _Session, metrics: dict[str, Any], result: RunResult) -> None:
    mem = metrics["memory"]
    peak = (
        f"peak GPU memory {mem['gpu_peak_allocated_mib'] / 1024:.2f} GiB"
        if "gpu_peak_allocated_mib" in mem
        else f"peak RSS {mem.get('cpu_peak_rss_mib', 0):.0f} MiB"
    )
    if s.steps_run:
        steady = metrics["steady_s_per_it"]
        print(
            f"{s.steps_run} steps: {metrics['s_per_it']:.3f} s/it ({metrics['it_per_s']:.2f} it/s)"
            + (f", {steady:.3f} s/it after the first {STATS_EVERY} (compile, JIT)" if steady else "")
            + f", {peak}"
        )
    print(
        f"outputs in {result.workspace}: "
        + ", ".join(sorted(p.name for p in result.files.values() if isinstance(p, Path)))
    )
