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

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast import distributed as D

__all__ = [
    "RunResult",
    "WorkspaceExistsError",
    "Objective",
    "GuidanceObjective",
    "MSEObjective",
    "LossOutput",
    "run",
    "prepare_workspace",
]


class WorkspaceExistsError(FileExistsError):
    """The workspace already holds a run and neither --force nor --resume was given."""


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


@dataclass
class LossOutput:
    """One objective evaluation: a scalar loss to back-propagate and float diagnostics for the log."""

    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """A pluggable loss. The loop renders ``cameras(step, gen)`` and asks the objective for a loss.

    ``gen`` is the step's camera generator, the same on every rank: draw ``ctx.global_views`` views and keep
    ``ctx.local_views`` of them (see :class:`RunContext`), so a view does not depend on the process count."""

    def setup(self, ctx: "RunContext") -> None: ...

    def cameras(self, step: int, generator: torch.Generator, ctx: "RunContext") -> Any: ...

    def loss(self, step: int, render: Any, cameras: Any, ctx: "RunContext") -> LossOutput: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class RunContext:
    """Everything an objective may need from the loop."""

    cfg: C.RunConfig
    device: torch.device
    autocast_dtype: torch.dtype | None
    scaler: Any
    scene: Any
    workspace: Path
    dist: D.DistInfo = D.SINGLE
    """This process's place in a torchrun job (SINGLE in one process)."""

    @property
    def global_views(self) -> int:
        """Views per step over all ranks: ``views_per_step`` × world size. ``Objective.cameras`` gets a generator
        shared by all ranks; it draws this many views and keeps ``local_views`` of them, so view g of a step
        is the same whatever the number of processes."""
        return self.cfg.views_per_step * self.dist.world_size

    @property
    def local_views(self) -> slice:
        """This rank's slice of the step's global views."""
        return self.dist.view_slice(self.cfg.views_per_step)


# --------------------------------------------------------------------------------------------- objectives


class _OrbitCameras:
    """Training cameras as the original: orbit sampling with the 3-stage zoom-in focal schedule (§4.6)."""

    def cameras(self, step: int, generator: torch.Generator, ctx: RunContext) -> Any:
        from pgc_fast.render import OrbitSampler

        r = ctx.cfg.render
        sampler = OrbitSampler(
            height=r.resolution,
            radius_range=r.radius_range,
            theta_range=r.polar_range,
            focal_range=r.focal_range,
            uniform_sphere_rate=r.uniform_sphere_rate,
            jitter=r.jitter_pose,
        )
        cams = sampler.sample(ctx.global_views, generator=generator, focal_range=focal_stage_range(ctx.cfg, step))
        return cams[ctx.local_views].to(ctx.device)


def focal_stage_range(cfg: C.RunConfig, step: int) -> tuple[float, float]:
    """The original's zoom-in schedule: stages s0/s1/s2 take 30/30/40 % of the steps (§5), focal ranges
    focal_range → midpoint → focal_range_fine. Without ``render.zoom_stages`` every step is s0."""
    r = cfg.render
    if not r.zoom_stages:
        return r.focal_range
    frac = step / max(1, cfg.optim.iters)
    if frac < 0.3:
        return r.focal_range
    if frac < 0.6:
        return tuple((a + b) / 2 for a, b in zip(r.focal_range, r.focal_range_fine))  # type: ignore[return-value]
    return r.focal_range_fine


class GuidanceObjective(_OrbitCameras):
    """Score distillation from a diffusion model (:mod:`pgc_fast.guidance`) on the rendered image.

    The guidance attaches the (GradScaler-aware) PGC hook to the image itself, so the loop does not
    (``handles_pgc``). With ``guidance.ref_path`` the reference view (the original's pose_0: r = 2.5, θ = 60°,
    φ = 0, focal 1.025·H) is rendered too and matched to the reference image by a masked MSE weighted by
    ``lambda_ref`` — a mean over the masked pixels rather than the original's resolution-dependent sum (§8.22);
    its gradient is not clipped, as in the original.
    """

    handles_pgc = True

    def __init__(self) -> None:
        self.guidance: Any = None
        self.ref: torch.Tensor | None = None
        self.ref_mask: torch.Tensor | None = None

    def setup(self, ctx: RunContext) -> None:
        from pgc_fast import guidance as G

        self.scaler = ctx.scaler if ctx.scaler.is_enabled() else None
        self.guidance = G.load_guidance(guidance_config(ctx.cfg, ctx.device))
        if ctx.dist.rank and getattr(self.guidance, "generator", None) is not None:
            # Same model weights on every rank (seeded init), own noise stream: the original's seed + global_rank.
            self.guidance.generator.manual_seed(ctx.cfg.optim.seed + ctx.dist.rank)
        if ctx.cfg.guidance.ref_path:
            self._load_reference(ctx)

    def _load_reference(self, ctx: RunContext) -> None:
        from PIL import Image

        path = ctx.cfg.guidance.ref_path
        assert path is not None
        if os.path.isdir(path):
            path = sorted(p for p in Path(path).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[0]
        res = ctx.cfg.render.resolution
        im = Image.open(path).convert("RGBA").resize((res, res), Image.BICUBIC)
        a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        self.ref = a[:3].to(ctx.device)
        self.ref_mask = (a[3:] > 0.5).float().to(ctx.device)

    def loss(self, step: int, render: Any, cameras: Any, ctx: RunContext) -> LossOutput:
        phi = torch.rad2deg(cameras.phi) if cameras.phi is not None else None
        theta = torch.rad2deg(cameras.theta) if cameras.theta is not None else None
        out = self.guidance.step(render.image, step=step + 1, azimuth_deg=phi, polar_deg=theta, c2w=cameras.c2w,
                                 depth=render.depth, mask=render.mask, scaler=self.scaler)
        loss = out.loss
        stats: dict[str, float] = {}
        gn = out.stats.get("grad_norm") if isinstance(out.stats, dict) else None
        if gn is not None:
            stats["grad_norm"] = gn.float().mean()  # device tensor: the loop reads stats back in batches
        if self.ref is not None:
            from pgc_fast.render import orbit_cameras

            r = ctx.cfg.render.resolution
            cam = orbit_cameras(2.5, 60.0, 0.0, 1.025 * r, r, device=ctx.device)
            ref_render = ctx.scene.render(cam, train=False)
            m = self.ref_mask * ref_render.mask
            ref_loss = ((ref_render.image - self.ref) ** 2 * m).sum() / (3 * m.sum()).clamp_min(1.0)
            loss = loss + ctx.cfg.guidance.lambda_ref * ref_loss
            stats["ref_mse"] = float(ref_loss.detach())
        return LossOutput(loss, stats)

    def after_backward(self) -> dict[str, Any]:
        """PGC statistics of this step as 0-d tensors (no host sync; the loop reads them back in batches)."""
        st = self.guidance.pgc_stats.get("rgb") if self.guidance is not None else None
        if st is None:
            return {}
        out = {"clip_frac": st.fraction_clipped, "grad_max": st.max_norm, "grad_mean": st.mean_norm}
        if self.scaler is not None:  # stats are in GradScaler-scaled units
            s = self.scaler._get_scale_async()
            out["grad_max"] = out["grad_max"] / s
            out["grad_mean"] = out["grad_mean"] / s
        return out

    def state_dict(self) -> dict[str, Any]:
        sd = getattr(self.guidance, "state_dict", None)
        return {"guidance": sd()} if callable(sd) else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "guidance" in state and hasattr(self.guidance, "load_state_dict"):
            self.guidance.load_state_dict(state["guidance"])


def guidance_config(cfg: C.RunConfig, device: torch.device) -> Any:
    """Map the run's guidance section onto :class:`pgc_fast.guidance.GuidanceConfig`."""
    from pgc_fast.guidance import GuidanceConfig

    g = cfg.guidance
    dtype = {"fp32": "fp32", "auto": "auto", "bf16": "bf16", "fp16": "fp16"}[cfg.optim.precision]
    return GuidanceConfig(
        model=C.resolved_model(g),
        vae=g.vae or "auto",
        controlnets=tuple(g.controlnets),
        control_scales=tuple(g.control_scales),
        device=str(device),
        dtype=dtype,
        seed=cfg.optim.seed,
        text=g.text,
        negative=g.negative,
        dir_text=g.dir_text,
        suppress_face=g.suppress_face,
        method=g.loss,
        guidance_scale=g.guidance_scale,
        guidance_scale_normal=g.normal_guidance_scale,
        cfg_convention=g.cfg_convention,
        cfg_rescale=g.cfg_rescale,
        weighting=g.weighting,
        t_range=tuple(g.t_range),
        dreamtime=g.dreamtime,
        init_time=g.init_time,
        iters=cfg.optim.iters,
        latent_clamp=g.latent_clamp,
        pgc_tau=-1.0 if g.pgc_tau is None else g.pgc_tau,
        pgc_variant=g.pgc_variant,
        pgc_norm=g.pgc_norm,
        reference_image=g.ref_path,
        fast_vae=g.fast_vae,
        compile_unet=g.compile and device.type == "cuda",  # inductor on the CPU: slow compile, little gain
        compile_scope=g.compile_scope,
    )


class MSEObjective:
    """Mean squared error of the render to target images seen by known cameras (reconstruction / tests).

    Args:
        targets: float32 [N, 3, H, W] in [0, 1], the images to match.
        cameras: pgc_fast.render.Cameras with N views, H×W matching the targets.
        background: the background the targets were rendered over (a grey level).
    Each step permutes the N views with the step's camera generator; global view g of the step (over all ranks)
    is view ``perm[g mod N]``, so views are distinct within a step while the global batch is at most N, and a
    resumed or re-sharded run draws the same views.
    """

    def __init__(self, targets: torch.Tensor, cameras: Any, background: float = 1.0) -> None:
        if targets.dim() != 4 or targets.shape[1] != 3:
            raise ValueError(f"MSEObjective(): targets must be float [N,3,H,W], got {list(targets.shape)}")
        if len(cameras) != targets.shape[0]:
            raise ValueError(f"MSEObjective(): {len(cameras)} cameras for {targets.shape[0]} targets")
        self.targets = targets.float()
        self.all_cameras = cameras
        self.background = background
        self._idx: torch.Tensor | None = None

    def setup(self, ctx: RunContext) -> None:
        self.targets = self.targets.to(ctx.device)
        self.all_cameras = self.all_cameras.to(ctx.device)

    def cameras(self, step: int, generator: torch.Generator, ctx: RunContext) -> Any:
        n = self.targets.shape[0]
        perm = torch.randperm(n, generator=generator)
        g = torch.arange(ctx.global_views)[ctx.local_views]
        self._idx = perm[g % n].to(ctx.device)
        return self.all_cameras[self._idx]

    def loss(self, step: int, render: Any, cameras: Any, ctx: RunContext) -> LossOutput:
        assert self._idx is not None
        img = render.image.float()
        mse = torch.mean((img - self.targets[self._idx]) ** 2)
        return LossOutput(mse, {"mse": float(mse.detach()), "psnr": float(-10 * torch.log10(mse.detach() + 1e-12))})

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1)


# --------------------------------------------------------------------------------------------- setup helpers


def resolve_device(cfg: C.RunConfig) -> torch.device:
    """cuda:gpus[0] (or cpu). Under torchrun the process's GPU is cuda:LOCAL_RANK (see run())."""
    want = cfg.runtime.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("run(): runtime.device=cuda but torch sees no CUDA device")
        if D.launched_by_torchrun() and D.env_info().enabled:
            return torch.device("cuda", D.env_info().local_rank)
        first = cfg.runtime.gpus.split(",")[0].strip() or "0"
        idx = int(first) if int(first) < torch.cuda.device_count() else 0
        return torch.device("cuda", idx)
    return torch.device("cpu")


def resolve_precision(cfg: C.RunConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, use GradScaler). auto = bf16 where supported, else fp16 + scaler;
    on the CPU auto means fp32 (CPU autocast is slower than fp32 there)."""
    p = cfg.optim.precision
    if p == "fp32" or (p == "auto" and device.type == "cpu"):
        return None, False
    if p == "auto":
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if p == "bf16":
        return torch.bfloat16, False
    return torch.float16, True


def check_workspace(cfg: C.RunConfig) -> None:
    """The checks of :func:`prepare_workspace` without touching anything (a launcher runs them first)."""
    ws = Path(cfg.workspace_path)
    if ws.exists() and any(ws.iterdir()) and not cfg.output.resume and not cfg.output.force:
        raise WorkspaceExistsError(
            f"workspace {str(ws)!r} already exists and is not empty; pass --force to overwrite it "
            f"or --resume to continue its run"
        )
    if cfg.output.resume and not (ws / "checkpoints").is_dir():
        raise FileNotFoundError(f"run(): --resume given but {str(ws / 'checkpoints')!r} has no checkpoint")


def prepare_workspace(cfg: C.RunConfig) -> Path:
    """Create the workspace; refuse to overwrite an existing run unless ``output.force`` (or resume)."""
    ws = Path(cfg.workspace_path)
    if ws.exists() and any(ws.iterdir()):
        if cfg.output.resume:
            return ws
        if not cfg.output.force:
            raise WorkspaceExistsError(
                f"workspace {str(ws)!r} already exists and is not empty; pass --force to overwrite it "
                f"or --resume to continue its run"
            )
        shutil.rmtree(ws)
    if cfg.output.resume and not (ws / "checkpoints").is_dir():
        raise FileNotFoundError(f"run(): --resume given but {str(ws / 'checkpoints')!r} has no checkpoint")
    ws.mkdir(parents=True, exist_ok=True)
    return ws


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states (cameras and render draws are per-step generators: nothing to save). CUDA: the
    run's device only (touching every GPU would create a context on each from every rank)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda_device": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda_device") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"].cpu(), device)


class _Timer:
    """Per-phase wall-clock timings (CUDA-synchronised at phase boundaries)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - t0


def _peak_memory_mib(device: torch.device) -> dict[str, float]:
    out: dict[str, float] = {}
    if device.type == "cuda":
        out["gpu_peak_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["gpu_peak_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    try:
        import resource

        out["cpu_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except Exception:  # pragma: no cover - non-POSIX
        pass
    return out


# --------------------------------------------------------------------------------------------- PGC hook


class _PGCHook:
    """Pixel-wise gradient clipping on the rendered image's gradient (the paper's method, reference_spec.md §2),
    with clip statistics (fraction of pixels clipped, max / mean pixel norm) gathered in the same pass.

    Under fp16 the incoming gradient is S·(true gradient); the threshold becomes τ·S (S read as a device tensor,
    no host sync) so the clip acts on the unscaled gradient and the output stays scaled."""

    def __init__(self, cfg: C.GuidanceConfig, scaler: Any) -> None:
        self.tau = cfg.pgc_tau
        self.variant = cfg.pgc_variant
        self.norm = cfg.pgc_norm
        self.scaler = scaler
        self.stats: list[torch.Tensor] = []

    def attach(self, img: torch.Tensor) -> None:
        if self.tau is None or not img.requires_grad:
            return
        img.register_hook(self._hook)

    def _hook(self, grad: torch.Tensor) -> torch.Tensor:
        from pgc_kernels import pixel_clip

        scale = self.scaler._get_scale_async() if self.scaler is not None and self.scaler.is_enabled() else None
        out, stats = pixel_clip(grad, self.tau, variant=self.variant, norm=self.norm, channel_dim=1, scale=scale,
                                return_stats=True)
        self.stats.append(torch.stack([torch.as_tensor(s, device=grad.device, dtype=torch.float32).reshape(())
                                       for s in stats[:3]]))
        return out

    def pop(self) -> dict[str, torch.Tensor]:
        """Mean statistics since the last pop, as 0-d device tensors (read back with the other step stats)."""
        if not self.stats:
            return {}
        s = torch.stack(self.stats).float().mean(0)
        self.stats.clear()
        return {"clip_frac": s[0], "grad_max": s[1], "grad_mean": s[2]}


# --------------------------------------------------------------------------------------------- run


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

    from pgc_fast import scene as S

    with timer.phase("load_mesh"):
        scene = S.Scene.from_config(cfg, device)
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
    from pgc_fast import report as R

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


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, float) and math.isnan(o):
        return None
    return str(o)


def _clip_summary(history: dict[str, list]) -> dict[str, Any]:
    vals = [v for v in history["clip_frac"] if v == v]  # drop NaN (PGC off)
    if not vals:
        return {"enabled": False}
    return {"enabled": True, "mean_clip_frac": float(np.mean(vals)), "last_clip_frac": vals[-1],
            "max_clip_frac": float(np.max(vals))}


def _config_yaml(cfg: C.RunConfig) -> str:
    import yaml

    commit = None
    with contextlib.suppress(Exception):
        import subprocess

        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=os.path.dirname(__file__)).stdout.strip() or None
    import pgc_fast

    return yaml.safe_dump({"pgc_fast": pgc_fast.__version__, "commit": commit, "config": C.to_dict(cfg)},
                          sort_keys=False)


def _make_optimizer(cfg: C.RunConfig, scene: Any) -> torch.optim.Optimizer:
    """Adam per parameter group as the original (§5): grids / UV pyramids at grid_lr_scale × lr, MLPs at lr."""
    o = cfg.optim
    groups = scene.param_groups(o.lr_texture, o.grid_lr_scale)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, betas=o.betas, eps=o.eps)
    return torch.optim.AdamW(groups, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


def _train_step(step, cfg, ctx, scene, objective, optimizer, scaler, pgc) -> dict[str, float]:
    device = ctx.device
    seed = cfg.optim.seed
    optimizer.zero_grad(set_to_none=True)
    cams = objective.cameras(step, D.step_generator(seed, step, D.STREAM_CAMERAS), ctx)
    ac = (torch.autocast(device.type, dtype=ctx.autocast_dtype) if ctx.autocast_dtype is not None
          else contextlib.nullcontext())
    with ac:
        render = scene.render(cams, train=True, step=step,
                              generator=D.step_generator(seed, step, D.STREAM_RENDER, ctx.dist.rank))
        if not getattr(objective, "handles_pgc", False):
            pgc.attach(render.image)
        out = objective.loss(step, render, cams, ctx)
    loss = out.loss.float()
    scaler.scale(loss).backward()
    # Data parallel: average before unscale_ so every rank sees the same (possibly inf) gradients and the
    # GradScalers stay in step (the original's DDP averaged the same way; PGC hooks ran per rank before it).
    D.all_reduce_grads((p for g in optimizer.param_groups for p in g["params"]), ctx.dist)
    scaler.unscale_(optimizer)
    if cfg.optim.grad_clip is not None:
        torch.nn.utils.clip_grad_value_(scene.texture.parameters(), cfg.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    stats: dict[str, Any] = {"loss": loss.detach()}  # 0-d device tensors: read back later (no host sync here)
    stats.update(out.stats)
    stats.update(pgc.pop())
    after = getattr(objective, "after_backward", None)
    if after is not None:
        stats.update(after())
    if ctx.dist.enabled:  # the log shows the mean over all ranks' views (a collective, so read back now)
        return D.average_floats(dict(_materialise_stats([(0, stats)])[0][1]), ctx.dist)
    return stats


# Steps between read-backs of the step statistics (one device→host transfer for all of them).
_STATS_EVERY = 10


def _steady_s_per_it(history: dict[str, list], steps_run: int) -> float | None:
    """Seconds per step of this session after its first _STATS_EVERY steps (which pay torch.compile and Triton
    JIT), from the history times recorded at each stats read-back; None for runs too short to tell."""
    if steps_run <= 2 * _STATS_EVERY:
        return None
    steps, times = history["step"][-steps_run:], history["time"][-steps_run:]
    first = steps[0] + _STATS_EVERY - 1
    i = next((k for k, st in enumerate(steps) if st >= first and (k + 1 == len(steps) or times[k + 1] != times[k])), None)
    if i is None or steps[-1] <= steps[i]:
        return None
    return (times[-1] - times[i]) / (steps[-1] - steps[i])


def _materialise_stats(entries: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, float]]]:
    """[(step, {name: float or 0-d tensor})] → the same with floats, reading every tensor back in ONE transfer."""
    tensors = [v.detach().float().mean() for _, st in entries for v in st.values() if torch.is_tensor(v)]
    if len({t.device for t in tensors}) == 1:
        vals = iter(torch.stack(tensors).tolist())
    else:  # mixed devices (or none): one read each
        vals = iter([float(t) for t in tensors])
    return [(k, {n: (next(vals) if torch.is_tensor(v) else float(v)) for n, v in st.items()}) for k, st in entries]


def _checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step{step:07d}.pth"


def _save_checkpoint(ckpt_dir, step, scene, optimizer, scaler, objective, history, timer, ctx) -> Path | None:
    """Write the full state atomically and keep only the latest checkpoint (as the original's max_keep_ckpt=1).

    Every rank calls this (a collective): the texture, optimiser and scaler are identical on all ranks; the RNG
    and objective states (guidance noise generator, …) differ, so all of them are gathered into ``ranks`` and
    rank 0 writes the file."""
    own = {"rng": _rng_state(ctx.device), "objective": objective.state_dict()}
    ranks = D.gather_object(own, ctx.dist)
    if not ctx.dist.is_main:
        return None
    assert ranks is not None
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "texture": scene.texture.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "objective": own["objective"],
        "rng": own["rng"],
        "world_size": ctx.dist.world_size,
        "ranks": ranks if ctx.dist.enabled else None,
        "history": history,
        "phases": dict(timer.phases),
        "config": C.to_dict(scene.cfg),
    }
    path = _checkpoint_path(ckpt_dir, step)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in ckpt_dir.glob("step*.pth"):
        if old != path:
            old.unlink()
    return path


def _check_resume_config(saved: dict[str, Any] | None, cfg: C.RunConfig) -> None:
    """A resumed run must use the configuration it was started with (resume/force aside)."""
    if saved is None:
        return
    now = C.to_dict(cfg)
    diff = [f"{sec}.{k}: {saved[sec][k]!r} -> {v!r}" for sec, vals in now.items() for k, v in vals.items()
            if (sec, k) not in (("output", "resume"), ("output", "force")) and saved.get(sec, {}).get(k) != v]
    if diff:
        raise C.ConfigError([f"--resume with a different configuration than the checkpoint's: {d}" for d in diff])


def _load_resume_state(ckpt_dir: Path, cfg: C.RunConfig, device: torch.device, dist: D.DistInfo) -> dict[str, Any]:
    """The latest checkpoint, checked against this run (configuration, number of processes). Under torchrun
    rank 0 loads it to the CPU and broadcasts it: no shared file system is needed between machines."""
    # To the CPU always: load_state_dict copies onto the run's device, and RNG states must be CPU tensors.
    state = _load_latest_checkpoint(ckpt_dir, torch.device("cpu"))
    if state is None:
        raise FileNotFoundError(f"run(): --resume given but {str(ckpt_dir)!r} has no checkpoint")
    _check_resume_config(state.get("config"), cfg)
    saved_world = state.get("world_size", 1)
    if saved_world != dist.world_size:
        raise C.ConfigError([f"--resume with {dist.world_size} process(es) but the checkpoint was written by "
                             f"{saved_world}: each rank's random streams are in it; resume with the same count"])
    return state


def _this_rank_state(state: dict[str, Any], dist: D.DistInfo) -> dict[str, Any]:
    """Swap in this rank's RNG and objective states (a checkpoint holds every rank's)."""
    ranks = state.get("ranks")
    if dist.enabled and ranks:
        state = dict(state, rng=ranks[dist.rank]["rng"], objective=ranks[dist.rank]["objective"])
    return state


def _load_latest_checkpoint(ckpt_dir: Path, device: torch.device) -> dict[str, Any] | None:
    paths = sorted(ckpt_dir.glob("step*.pth"))
    if not paths:
        return None
    return torch.load(paths[-1], map_location=device, weights_only=False)


# --------------------------------------------------------------------------------------------- outputs


def _to_uint8(img_chw: torch.Tensor) -> np.ndarray:
    return (img_chw.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _write_validation(scene: Any, cfg: C.RunConfig, val_dir: Path, step: int) -> dict[str, Path]:
    """The original's validation view (θ = 60°, φ = 0, r = mean radius, focal = mean focal_range · H), white bg."""
    from PIL import Image

    from pgc_fast.render import orbit_cameras

    r = cfg.render
    val_dir.mkdir(parents=True, exist_ok=True)
    cams = orbit_cameras(sum(r.radius_range) / 2, 60.0, 0.0, sum(r.focal_range) / 2 * r.resolution, r.resolution,
                         device=scene.device)
    was_training = scene.texture.training
    scene.texture.eval()
    with torch.no_grad():
        img = scene.render(cams, train=False).image[0]
    scene.texture.train(was_training)
    path = val_dir / f"step{step:07d}_rgb.png"
    Image.fromarray(_to_uint8(img)).save(path)
    return {"validation_last": path}


def _write_turntable(scene: Any, cfg: C.RunConfig, ws: Path) -> dict[str, Any]:
    """Turntable of the final texture (the original's 100-view test path): turntable.mp4 and turntable.gif."""
    import imageio.v2 as imageio

    from pgc_fast.render import turntable

    o, r = cfg.output, cfg.render
    cams = turntable(o.turntable_frames, height=o.turntable_resolution, radius=sum(r.radius_range) / 2,
                     focal_ratio=sum(r.focal_range) / 2, device=scene.device)
    frames = []
    for i in range(0, len(cams), 8):
        frames.extend(_to_uint8(x) for x in scene.render(cams[i:i + 8], train=False).image)
    files: dict[str, Any] = {}
    gif = ws / "turntable.gif"
    imageio.mimsave(gif, frames, duration=1000 / o.fps, loop=0)
    files["turntable_gif"] = gif
    mp4 = ws / "turntable.mp4"
    try:
        imageio.mimsave(mp4, frames, fps=o.fps, quality=8, macro_block_size=1)
        files["turntable_mp4"] = mp4
        files["_video_note"] = "turntable.mp4 written with imageio-ffmpeg"
    except Exception as e:  # no ffmpeg backend: the gif is the turntable
        with contextlib.suppress(FileNotFoundError):
            mp4.unlink()
        files["_video_note"] = f"turntable.mp4 NOT written (no ffmpeg backend: {type(e).__name__}: {e}); see turntable.gif"
    return files


class _Progress:
    """A rich progress bar: step, it/s, ETA, GPU memory, loss and fraction of pixels clipped."""

    def __init__(self, total: int, start: int, device: torch.device, quiet: bool) -> None:
        self.total, self.start, self.device, self.quiet = total, start, device, quiet
        self._bar = None
        self._task = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> "_Progress":
        if self.quiet:
            return self
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]pgc-fast"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=self.total, completed=self.start, rate="", info="")
        return self

    def update(self, done: int, stats: dict[str, float]) -> None:
        if self._bar is None:
            return
        n = done - self.start
        el = time.perf_counter() - self._t0
        rate = f"{n / el:.2f} it/s" if el > 0 and n / el >= 1 else (f"{el / n:.2f} s/it" if n else "")
        info = [f"loss {stats.get('loss', float('nan')):.4g}"]
        if "clip_frac" in stats:
            info.append(f"clipped {100 * stats['clip_frac']:.1f}%")
        if "psnr" in stats:
            info.append(f"psnr {stats['psnr']:.1f}")
        if self.device.type == "cuda":
            info.append(f"mem {torch.cuda.max_memory_allocated(self.device) / 2**30:.1f} GiB")
        self._bar.update(self._task, completed=done, rate=rate, info=" ".join(info))

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __exit__(self, *exc: Any) -> None:
        self.stop()
