"""The original's Zero123 guidance (its guidance/zero123_utils.py: ``Zero123.get_img_embeds``, ``train_step``,
``train_step_BGT``), written its way over the same diffusers modules: the eager twin ``benches/gpu_zero123.py``
times ours against, and the parity tests' reference (tests/guidance/test_zero123.py).

Kept as the original computes it, bugs included:

* ``pred_rgb * 2 - 1``, bilinear resize to 256², then ``encode_imgs`` maps to ``2x - 1`` again (the VAE sees
  ``4x - 3``); latents = ``0.18215 · posterior.sample()``;
* the condition: ``cc_projection(cat(c, dT))`` for the cross-attention, the reference latent (mode) concatenated;
  zeros for both in the unconditional half; UNet once on the doubled batch;
* SDS: ``eps_u + s (eps_c - eps_u)``, ``w = 1 - abar_t``, ``SpecifyGradient`` (sum convention);
* BGT+: a DDIM scheduler (its config: scaled_linear betas, ``set_alpha_to_one=False``, ``steps_offset=1``) whose
  ``timesteps`` and ``num_inference_steps`` are set by hand and then stepped with ``scheduler.step`` (which goes
  to ``t - 1000 // n``, not to the next listed timestep), CFG ``eps_c + s (eps_c - eps_u)``, and the loss
  ``mean((z - z0)^2) + w_rgb mean((2x - 1 - D(z0))^2)`` (the [-1, 1] vs [0, 1] mismatch).

Where the original drew from the global RNG (posterior sample, t, noise), this takes an optional generator and
draws in the same order, so a test can give both implementations the same draws.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pgc_fast.parity.original_step import SpecifyGradient

__all__ = ["OriginalZero123"]


class OriginalZero123:
    """The original's ``Zero123`` class over a :class:`pgc_fast.guidance.Zero123Bundle` (any dtype; the original ran
    fp32).

    Args:
        bundle: the Zero123 modules (their ``projection`` plays ``cc_projection``).
        generator: RNG for the posterior sample, t and the noise (None: the global RNG, as the original).
    """

    def __init__(self, bundle, generator: torch.Generator | None = None) -> None:
        from diffusers import DDIMScheduler

        self.unet, self.vae, self.clip = bundle.unet, bundle.vae, bundle.image_encoder
        self.cc_projection = bundle.projection
        self.bundle = bundle
        self.device = next(bundle.unet.parameters()).device
        self.dtype = next(bundle.unet.parameters()).dtype
        self.generator = generator
        self.num_train_timesteps = 1000
        sched: Any = DDIMScheduler(
            1000,
            0.00085,
            0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
        self.scheduler = sched
        self.alphas = sched.alphas_cumprod.to(self.device)
        self.sf = float(bundle.vae.config.scaling_factor)
        self.res = int(bundle.resolution)
        self.lat = self.res // 2 ** (len(bundle.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def get_img_embeds(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [1, 3, 256, 256] in [0, 1] → (CLIP embedding [1, 1, 768], VAE latent mode [1, 4, 32, 32])."""
        x = (x * 2 - 1).to(self.device, self.dtype)
        s = self.bundle.clip_size
        clip_in = F.interpolate(x.float(), (s, s), mode="bicubic", align_corners=True)  # ldm's kornia resize
        clip_in = (clip_in + 1.0) / 2.0
        mean = torch.tensor(self.bundle.image_mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.bundle.image_std, device=self.device).view(1, 3, 1, 1)
        c = self.clip(pixel_values=((clip_in - mean) / std).to(self.dtype)).image_embeds.float()[:, None, :]
        v = self.vae.encode(x).latent_dist.mode()
        return c, v

    def _randn(self, shape, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def encode_imgs(self, imgs: torch.Tensor) -> torch.Tensor:
        imgs = imgs * 2 - 1
        post = self.vae.encode(imgs.to(self.dtype)).latent_dist
        return (post.mean + post.std * self._randn(post.mean.shape, post.mean)) * self.sf

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        imgs = self.vae.decode((latents / self.sf).to(self.dtype)).sample
        return (imgs / 2 + 0.5).clamp(0, 1)

    def apply_model(self, x_in: torch.Tensor, t_in: torch.Tensor, cond: dict) -> torch.Tensor:
        """ldm's hybrid conditioning: concat along channels, cross-attention on c_crossattn."""
        x = torch.cat([x_in, cond["c_concat"][0]], dim=1).to(self.dtype)
        return self.unet(x, t_in, encoder_hidden_states=cond["c_crossattn"][0].to(self.dtype)).sample

    def _cond(self, embeddings, dT: torch.Tensor, b: int) -> dict:
        w = next(self.cc_projection.parameters())
        clip_emb = self.cc_projection(torch.cat([embeddings[0].expand(b, -1, -1), dT[:, None, :]], dim=-1).to(w.dtype))
        vae_emb = embeddings[1].expand(b, -1, -1, -1)
        return {
            "c_crossattn": [torch.cat([torch.zeros_like(clip_emb), clip_emb], dim=0)],
            "c_concat": [torch.cat([torch.zeros_like(vae_emb), vae_emb], dim=0)],
        }

    def train_step(
        self,
        embeddings,
        pred_rgb: torch.Tensor,
        dT: torch.Tensor,
        guidance_scale: float = 100,
        grad_scale: float = 1,
        t_range=(0.02, 0.98),
    ) -> torch.Tensor:
        """The original's Zero123 SDS (double normalisation included); returns the SpecifyGradient loss."""
        b = pred_rgb.size(0)
        pred_rgb = pred_rgb * 2 - 1
        pred_rgb_256 = F.interpolate(pred_rgb, (self.res, self.res), mode="bilinear", align_corners=False)
        latents = self.encode_imgs(pred_rgb_256)
        min_step = int(self.num_train_timesteps * t_range[0])
        max_step = int(self.num_train_timesteps * t_range[1])
        t = torch.randint(min_step, max_step + 1, [b], dtype=torch.long, device=self.device, generator=self.generator)
        with torch.no_grad():
            noise = self._randn(latents.shape, latents.float())
            latents_noisy = self.scheduler.add_noise(latents.float(), noise, t)
            cond = self._cond(embeddings, dT, b)
            noise_pred = self.apply_model(torch.cat([latents_noisy] * 2), torch.cat([t] * 2), cond).float()
        noise_pred_uncond, noise_pred_cond = noise_pred.chunk(2)
        noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_cond - noise_pred_uncond)
        w = (1 - self.alphas[t])[:, None, None, None]
        grad = torch.nan_to_num(grad_scale * w * (noise_pred - noise))
        return SpecifyGradient.apply(latents, grad)

    def _bgt_timesteps(self, t: float, r: float) -> torch.Tensor:
        n = math.ceil(t / r)
        self.scheduler.num_inference_steps = n
        step_ratio = self.num_train_timesteps * r
        timesteps = (np.arange(0, n) * step_ratio).round()[::-1].copy().astype(np.int64)
        dt = math.ceil(t * self.num_train_timesteps - (n - 1) * step_ratio)
        if dt > 0:
            timesteps += dt
        return torch.from_numpy(np.append(timesteps, [0])).to(self.device)

    def train_step_BGT(
        self,
        embeddings,
        pred_rgb: torch.Tensor,
        dT: torch.Tensor,
        guidance_scale: float = 100,
        t: float = 0.98,
        r: float = 0.25,
        w_rgb: float = 0.1,
    ) -> torch.Tensor:
        """The original's Zero123 BGT+ loss (its scheduler stepping and both bugs included)."""
        b = pred_rgb.size(0)
        pred_rgb = pred_rgb * 2 - 1
        pred_rgb_256 = F.interpolate(pred_rgb, (self.res, self.res), mode="bilinear", align_corners=False)
        latents = self.encode_imgs(pred_rgb_256)
        with torch.no_grad():
            noise = self._randn(latents.shape, latents.float())
            timestep = torch.tensor([t * self.num_train_timesteps] * b, dtype=torch.long, device=self.device)
            latents_noisy = self.scheduler.add_noise(latents.float(), noise, timestep)
            cond = self._cond(embeddings, dT, b)
            self.scheduler.timesteps = self._bgt_timesteps(t, r)
            for ts in self.scheduler.timesteps:
                x_in = torch.cat([latents_noisy] * 2)
                noise_pred = self.apply_model(x_in, torch.cat([ts.expand(b)] * 2), cond).float()
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_text + guidance_scale * (noise_pred_text - noise_pred_uncond)
                # int(ts): the same index the original's 0-d device tensor gave the scheduler's CPU tables
                latents_noisy = self.scheduler.step(noise_pred, int(ts), latents_noisy)["prev_sample"]
            img_gt = self.decode_latents(latents_noisy).float() if w_rgb > 0 else None
        loss = torch.square(latents.float() - latents_noisy).mean()
        if img_gt is not None:
            loss = loss + w_rgb * torch.square(pred_rgb_256.float() - img_gt).mean()
        return loss
