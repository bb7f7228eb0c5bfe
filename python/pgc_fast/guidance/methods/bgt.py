"""BGT+ (HiFA, arXiv 2305.18766) with the original's bugs fixed (a bug of the original).

At step k the noise level is t_k = init_time - (init_time - 0.25) sqrt((k - 1) / iters). The latents are noised
to T = int(1000 t_k) and denoised to 0 deterministically under CFG along the listed timesteps
(e.g. [681, 431, 181, 0]) with explicit DDIM steps between consecutive entries — every view in one UNet call per
step — giving z0 (the last step takes the x0 prediction). The loss is

    L = mean((z - sg(z0))^2) + w_rgb mean((x - sg(decode(z0)))^2)

with both terms (the SDXL original overwrote the latent term and used a sum; it also wrote a PNG every step).
The latent term is returned as a gradient, 2 (z - z0) / numel(z), injected like SDS; the RGB term (one VAE
decode per step, skipped when w_rgb = 0 or in latent mode) is returned as an extra loss on the images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from pgc_fast.guidance import schedule

if TYPE_CHECKING:
    from pgc_fast.guidance.engine import Batch, Guidance, MethodOutput
    from pgc_fast.guidance.zero123 import Zero123Guidance


@torch.no_grad()
def denoise_target(
    g: Guidance | Zero123Guidance,
    z: torch.Tensor,
    timesteps: list[int],
    predict: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    scale: float,
    convention: str,
) -> torch.Tensor:
    """Noise ``z`` to timesteps[0] and walk the chain down to 0 with DDIM steps; returns z0 (float32).
    ``predict(z_t, t)`` gives (eps_cond, eps_uncond) for the batch (one model call); ``g`` supplies the noise
    generator and the schedule (``g.alphas``)."""
    b = z.shape[0]
    t0 = timesteps[0]
    noise = torch.randn(z.shape, device=g.device, generator=g.generator)
    a = g.alphas
    zc = schedule.add_noise(z.float(), noise, a[torch.full((b,), t0, device=g.device)])
    z0 = zc
    for i in range(len(timesteps) - 1):
        tc = torch.full((b,), timesteps[i], device=g.device, dtype=torch.long)
        tn = torch.full((b,), timesteps[i + 1], device=g.device, dtype=torch.long)
        eps_c, eps_u = predict(zc, tc)
        eps = schedule.cfg_combine(eps_c.float(), eps_u.float(), scale, convention)  # type: ignore[arg-type]
        if timesteps[i + 1] == 0:
            z0 = schedule.predict_x0(zc, eps, a[tc])
        else:
            zc = schedule.ddim_step(zc, eps, a[tc], a[tn])
            z0 = zc
    return z0


def run(g: Guidance, batch: Batch) -> MethodOutput:
    from pgc_fast.guidance.engine import MethodOutput

    cfg = g.cfg
    b = batch.z.shape[0]
    tf = schedule.bgt_time(batch.step, g.iters, cfg.init_time, cfg.bgt_end_time)
    ts = schedule.bgt_timesteps(tf, cfg.bgt_r, g.num_train_timesteps)

    def predict(z_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return g.predict_cfg(z_t, t, batch.ids, batch.controls, batch.orig_hw)

    z0 = denoise_target(g, batch.z.detach(), ts, predict, cfg.guidance_scale, g.convention)
    zf = batch.z.detach().float()
    grad = (2.0 / zf.numel()) * (zf - z0) * cfg.grad_scale
    grad = torch.nan_to_num(grad)
    stats = {"t": torch.full((b,), ts[0], device=g.device, dtype=torch.long), "latent_mse": ((zf - z0) ** 2).mean()}
    extra = None
    if cfg.bgt_rgb_weight > 0 and batch.x is not None:
        img0 = g.decode(z0)
        rgb_mse = ((batch.x.float() - img0) ** 2).mean()
        extra = cfg.bgt_rgb_weight * cfg.grad_scale * rgb_mse
        stats["rgb_mse"] = rgb_mse.detach()
    return MethodOutput(grad=grad, extra_loss=extra, stats=stats)
