"""One optimisation step (render → objective → backward → PGC → optimiser) and the optimiser it steps."""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from pgc_fast import config as C
from pgc_fast.train import distributed as D
from pgc_fast.train.metrics import _materialise_stats


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

