"""Zero-1-to-3 (Liu et al., ICCV 2023, arXiv 2303.11328, eq. 2) as 3D guidance, as PGC-3D's ``-O3`` uses it (the
original's guidance/zero123_utils.py: train_step, train_step_BGT), with the original's bugs fixed.

Zero123 predicts the noise of a view at relative camera (R, T) of a reference image x_r:
eps_theta(z_t, t, c(x_r, R, T)), where x_r enters twice — its VAE latent E(x_r) (posterior mode, unscaled)
concatenated to z_t (8 input channels) and its CLIP image embedding joined with the relative camera

    dT = [theta - theta_r, sin(phi - phi_r), cos(phi - phi_r), r - r_r]

(polar angle from the up axis, azimuth counter-clockwise about it seen from above, radius) by the linear
``cc_projection`` 772 → 768 into the single cross-attention token. The unconditional branch zeros both (the token
and the concatenated latent), as the original. One UNet call runs [uncond; cond] for every view.

* SDS (DreamFusion eq. 3 under this condition): g_z = w(t) [eps_hat - eps], eps_hat = eps_u + s (eps_c - eps_u)
  (the diffusers form, the original's), t ~ U[t_range], injected into z as every SDS gradient.
* BGT+ (HiFA, arXiv 2305.18766; methods/bgt.py): L = mean((z - sg(z0))^2) + w_rgb mean((x - sg(D(z0)))^2),
  z0 from an explicit DDIM chain with the Zero123 UNet under CFG eps_c + s (eps_c - eps_u) (the original's form).

Bugs of the original fixed here, each with a parity switch in ``GuidanceConfig``:

* ``zero123_double_norm``: the original mapped the render to 2x - 1 and its encoder mapped it again, so the VAE
  saw 4x - 3 (in [-3, 1]); here it sees 2x - 1.
* ``zero123_rgb_range_bug``: its BGT+ image term compared 2x - 1 (in [-1, 1]) with D(z0) (in [0, 1]); here both
  are in [0, 1].
* ``zero123_mirrored``: its cameras mirrored every render (render/camera.py), so Zero123 saw the mirror image of
  the scene at each view, next to the reference as given, with the relative camera of the unmirrored positions:
  the azimuth it was told had the wrong sign for what it saw. Here Zero123 sees our (true) renders and the
  mirrored reference (guidance/reference.py), for which the same numbers are right. The relative camera is
  computed exactly as the original (its nerf/provider.py, get_T on camera centres permuted to (z, x, y)), so the
  same physical pair of cameras gives the same four numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from pgc_fast.guidance import schedule
from pgc_fast.guidance.methods import bgt as bgt_method
from pgc_kernels import sds_grad

if TYPE_CHECKING:
    from pgc_fast.guidance.engine import MethodOutput
    from pgc_fast.guidance.zero123 import Zero123Guidance


def spherical(positions: torch.Tensor) -> torch.Tensor:
    """[..., 3] camera centres in our Y-up world → [..., 3] (polar angle from +Y, azimuth atan2(x, z), radius):
    the original's cartesian_to_spherical after its (z, x, y) permutation, radians."""
    x, y, z = positions.unbind(-1)
    horizontal = torch.sqrt(x * x + z * z)
    return torch.stack([torch.atan2(horizontal, y), torch.atan2(x, z), torch.sqrt(horizontal**2 + y * y)], dim=-1)


def relative_camera(positions: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Zero123's relative camera dT [B, 4] (float32) of camera centres [B, 3] to the reference centre [3]:
    [d polar, sin d azimuth, cos d azimuth, d radius] (radians, world units)."""
    if positions.dim() != 2 or positions.shape[-1] != 3:
        raise ValueError(f"relative_camera(): positions must be [B, 3], got {tuple(positions.shape)}")
    target = spherical(positions.float())
    ref = spherical(reference.float().reshape(1, 3).to(positions.device))
    d = target - ref
    return torch.stack([d[:, 0], torch.sin(d[:, 1]), torch.cos(d[:, 1]), d[:, 2]], dim=-1)


def condition(
    projection: torch.nn.Module, embedding: torch.Tensor, ref_latent: torch.Tensor, dT: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention tokens [2B, 1, D] and concatenated latents [2B, 4, h, w], unconditional rows (zeros) first.

    embedding: [1, 1, D] CLIP image embedding of the reference; ref_latent: [1, 4, h, w] its VAE latent (mode,
    unscaled); dT: [B, 4] relative cameras."""
    b = dT.shape[0]
    w = next(projection.parameters())
    tokens = torch.cat([embedding.expand(b, 1, -1).to(w.dtype), dT[:, None, :].to(w.dtype)], dim=-1)
    emb = projection(tokens)
    concat = ref_latent.expand(b, -1, -1, -1)
    return torch.cat([torch.zeros_like(emb), emb]), torch.cat([torch.zeros_like(concat), concat])


@dataclass
class Zero123Batch:
    """One step's Zero123 inputs after encoding."""

    z: torch.Tensor  # [B, 4, h, w] latents with the autograd graph to the images
    x: torch.Tensor  # [B, 3, R, R] the images at Zero123's resolution, in [0, 1] (what the VAE encoded)
    hidden: torch.Tensor  # [2B, 1, D] cross-attention tokens, unconditional first
    concat: torch.Tensor  # [2B, 4, h, w] concatenated reference latents, unconditional (zeros) first
    step: int


def sds(g: Zero123Guidance, batch: Zero123Batch) -> MethodOutput:
    """Zero123 SDS gradient of the batch: one UNet call on [uncond; cond] for all views."""
    from pgc_fast.guidance.engine import MethodOutput

    cfg = g.cfg
    b = batch.z.shape[0]
    t = g.sample_t(b, batch.step)
    noise = torch.randn(batch.z.shape, device=g.device, generator=g.generator, dtype=torch.float32)
    abar = g.alphas[t]
    z_t = schedule.add_noise(batch.z.detach().float(), noise, abar)
    eps_c, eps_u = g.predict_cfg(z_t, t, batch.hidden, batch.concat)
    w = schedule.sds_weight(abar, cfg.weighting) * cfg.zero123_weight
    grad = sds_grad(eps_c, eps_u, noise, w, cfg.zero123_guidance_scale, convention=g.convention)
    return MethodOutput(grad=grad, stats={"t": t, "weight": w})


def bgt(g: Zero123Guidance, batch: Zero123Batch) -> MethodOutput:
    """Zero123 BGT+: the DDIM-chain target z0, the latent term as a gradient and the image term as a loss."""
    from pgc_fast.guidance.engine import MethodOutput

    cfg = g.cfg
    b = batch.z.shape[0]
    tf = schedule.bgt_time(batch.step, g.iters, cfg.init_time, cfg.bgt_end_time)
    ts = schedule.bgt_timesteps(tf, cfg.bgt_r, g.num_train_timesteps)

    def predict(z_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return g.predict_cfg(z_t, t, batch.hidden, batch.concat)

    z0 = bgt_method.denoise_target(g, batch.z.detach(), ts, predict, cfg.zero123_guidance_scale, g.convention)
    zf = batch.z.detach().float()
    grad = torch.nan_to_num((2.0 / zf.numel()) * (zf - z0) * cfg.zero123_weight)
    stats = {"t": torch.full((b,), ts[0], device=g.device, dtype=torch.long), "latent_mse": ((zf - z0) ** 2).mean()}
    extra = None
    if cfg.bgt_rgb_weight > 0:
        img0 = g.decode(z0)
        rgb_mse = rgb_term(batch.x, img0, range_bug=cfg.zero123_rgb_range_bug)
        extra = cfg.bgt_rgb_weight * cfg.zero123_weight * rgb_mse
        stats["rgb_mse"] = rgb_mse.detach()
    return MethodOutput(grad=grad, extra_loss=extra, stats=stats)


def rgb_term(x: torch.Tensor, target: torch.Tensor, *, range_bug: bool = False) -> torch.Tensor:
    """BGT+'s image term mean((x - target)^2), both in [0, 1]; ``range_bug`` compares 2x - 1 with the [0, 1]
    target instead, as the original did (a bug of the original, kept for parity)."""
    xs = 2 * x.float() - 1 if range_bug else x.float()
    return ((xs - target.float()) ** 2).mean()
