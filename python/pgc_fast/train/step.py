"""One optimisation step (render → objective → backward → PGC → optimiser) and the optimiser it steps."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from pgc_fast import config as C
from pgc_fast.train import distributed as D
from pgc_fast.train.metrics import materialise_stats
from pgc_fast.train.objectives import Objective, RunContext
from pgc_kernels import PGCHook, attach_pgc


def make_optimizer(cfg: C.RunConfig, scene: Any) -> torch.optim.Optimizer:
    """Adam per parameter group as the original (the original's Trainer): grids / UV pyramids at grid_lr_scale × lr,
    MLPs at lr."""
    o = cfg.optim
    groups = scene.param_groups(o.lr_texture, o.grid_lr_scale)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, betas=o.betas, eps=o.eps)
    return torch.optim.AdamW(groups, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)


def attach_image_pgc(image: torch.Tensor, g: C.GuidanceConfig, scaler: Any) -> PGCHook | None:
    """PGC on the rendered image's gradient for objectives that do not clip it themselves (the paper's method),
    with clip statistics from the same pass. Under fp16 the threshold is τ·S with S the GradScaler's scale (read
    as a device tensor, no host sync), so the clip acts on the unscaled gradient and the output stays scaled."""
    if g.pgc_tau is None or not image.requires_grad:
        return None
    return attach_pgc(
        image, g.pgc_tau, scaler, return_stats=True, variant=g.pgc_variant, norm=g.pgc_norm, channel_dim=1
    )


def _pgc_stats(hook: PGCHook | None) -> dict[str, torch.Tensor]:
    if hook is None or hook.stats is None:
        return {}
    st = hook.stats
    return {
        "clip_frac": st.fraction_clipped.float(),
        "grad_max": st.max_norm.float(),
        "grad_mean": st.mean_norm.float(),
    }


def train_step(step: int, ctx: RunContext, objective: Objective, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """One step; returns its statistics as 0-d device tensors (read back later: no host sync here)."""
    cfg, scene, scaler = ctx.cfg, ctx.scene, ctx.scaler
    seed = cfg.optim.seed
    optimizer.zero_grad(set_to_none=True)
    cams = objective.cameras(step, D.step_generator(seed, step, D.STREAM_CAMERAS), ctx)
    ac = (
        torch.autocast(ctx.device.type, dtype=ctx.autocast_dtype)
        if ctx.autocast_dtype is not None
        else contextlib.nullcontext()
    )
    hook = None
    with ac:
        render = scene.render(
            cams, train=True, step=step, generator=D.step_generator(seed, step, D.STREAM_RENDER, ctx.dist.rank)
        )
        if not getattr(objective, "handles_pgc", False):
            hook = attach_image_pgc(render.image, cfg.guidance, scaler if scaler.is_enabled() else None)
        out = objective.loss(step, render, cams, ctx)
        reg = scene.regularizer(step, ctx.run_length)  # DMTet's smoothing in its window, else None
        reg_gen = D.step_generator(seed, step, D.STREAM_REGULARIZER, ctx.dist.rank)
        regs = scene.texture_regularizers(step, render, ctx.run_length, reg_gen)  # the PBR kd smoothness
    loss = out.loss.float() if reg is None else out.loss.float() + reg.float()
    loss = loss + sum((v.float() for v in regs.values()), torch.zeros((), device=ctx.device))
    scaler.scale(loss).backward()
    # Data parallel: average before unscale_ so every rank sees the same (possibly inf) gradients and the
    # GradScalers stay in step (the original's DDP averaged the same way; PGC hooks ran per rank before it).
    D.all_reduce_grads((p for g in optimizer.param_groups for p in g["params"]), ctx.dist)
    scaler.unscale_(optimizer)
    if cfg.optim.grad_clip is not None:
        # every trained parameter, as the original's clip_grad_value_(model.parameters())
        torch.nn.utils.clip_grad_value_([p for g in optimizer.param_groups for p in g["params"]], cfg.optim.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    stats: dict[str, Any] = {"loss": loss.detach()}
    stats.update(out.stats)
    stats.update({k: v.detach() for k, v in regs.items()})
    stats.update(_pgc_stats(hook))
    stats.update(scene.geometry.step_stats())
    after = getattr(objective, "after_backward", None)
    if after is not None:
        stats.update(after())
    if ctx.dist.enabled:  # the log shows the mean over all ranks' views (a collective, so read back now)
        return D.average_floats(dict(materialise_stats([(0, stats)])[0][1]), ctx.dist)
    return stats
