"""The original PGC-3D SDXL + depth-ControlNet texture step, reproduced the way the original computes it.

This is the baseline ``benches/bench_step.py`` times our step against (same mesh, views, resolution and
weights, one process). It follows the original's nerf/utils.py Trainer (train_one_epoch, train_step) for ``-O0 -O2 -O4
--guidance controlnet``:

* fp16 autocast around render + guidance, ``GradScaler(init_scale=2**10)``;
* the hash-grid texture field queried at the rasterised world position of **every** pixel (the original
  does not mask the query), unlit albedo, ``antialias`` of the coverage mask, composited over the
  background image;
* depth condition = camera z with background ``1.2·max(z)``, per-image min-max normalised, 3 channels;
* ``x1024 = bilinear(render, 1024)``, ``z = 0.13025 · VAE.encode(2x − 1).sample()`` (stock diffusers VAE,
  stock SDPA attention, NCHW);
* ``t ~ U{20..500}`` per view, ``z_t = √ᾱ z + √(1−ᾱ) ε``; ControlNet + UNet once on ``[z_t; z_t]`` with
  ``[uncond; cond]`` text; ``ε̂ = ε_c + s(ε_c − ε_u)`` (s = 100); ``g = nan_to_num((1 − ᾱ)(ε̂ − ε))``;
* ``SpecifyGradient``: the loss's gradient w.r.t. z is g (sum convention), scaled by the GradScaler;
* the PGC hook on the render, in the original's eager arithmetic with threshold τ·S (τ = 0.1);
* ``scaler.unscale_``, ``scaler.step(Adam(β=(0.9, 0.99), eps=1e-15))``, ``scaler.update``.

The only departure: the hash-grid encoding is ours (:func:`pgc_kernels.hash_grid_encode`), because the
original's compiled CUDA extension is not available here; both steps use the same one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["OriginalStep", "SpecifyGradient", "original_pgc_hook"]


class SpecifyGradient(torch.autograd.Function):
    """The original's loss surrogate: forward returns ones([1]); backward injects ``grad`` times the
    incoming (GradScaler) scale."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, latents, grad):
        ctx.save_for_backward(grad)
        return torch.ones([1], device=latents.device, dtype=latents.dtype)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_scale):
        (grad,) = ctx.saved_tensors
        return grad * grad_scale, None


def original_pgc_hook(tau: float, scaler: torch.amp.GradScaler | None):
    """The original's tensor hook (grad_suppress_type 0), eager arithmetic as written in its trainer."""

    def hook(grad):
        clip = tau * scaler._get_scale_async() if scaler is not None and scaler.is_enabled() else tau
        grad = grad * 1.0  # grad_scale_rgb (always 1.0)
        ratio = 1.0 / grad.abs() * clip
        ratio[ratio > 1.0] = 1.0
        return grad * torch.amin(ratio, dim=[1], keepdim=True)

    return hook


@dataclass
class _Inputs:
    prompt_embeds: torch.Tensor  # [2, 77, 2048]: uncond, cond
    pooled: torch.Tensor  # [2, 1280]


class OriginalStep:
    """One training step of the original pipeline (see the module docstring).

    Args:
        bundle: a :class:`pgc_fast.guidance.ModelBundle` with an SDXL UNet, VAE and one depth ControlNet (fp16).
        mesh: :class:`pgc_fast.render.RenderMesh` on CUDA (canonicalised).
        backend: a render backend (nvdiffrast) with the ``rasterize/interpolate/antialias`` interface.
        field: :class:`pgc_fast.fields.TextureField` on CUDA.
        background: [3, H, W] float background image in [0, 1] at the render resolution.
        prompt_embeds, pooled: text conditioning [2, 77, 2048] and [2, 1280] (uncond first).
    """

    def __init__(
        self,
        bundle,
        mesh,
        backend,
        field,
        background,
        prompt_embeds,
        pooled,
        *,
        resolution=1024,
        guidance_scale=100.0,
        tau=0.1,
        lr=1e-3,
        alphas_cumprod=None,
        amp_dtype=torch.float16,
    ) -> None:
        self.unet, self.vae, self.controlnet = bundle.unet, bundle.vae, bundle.controlnet
        self.mesh, self.backend, self.field = mesh, backend, field
        self.background = background
        self.inp = _Inputs(prompt_embeds, pooled)
        self.res = resolution
        self.s = guidance_scale
        self.tau = tau
        self.opt = torch.optim.Adam(field.param_groups(lr), betas=(0.9, 0.99), eps=1e-15)
        self.dev = background.device.type
        # fp16 autocast + GradScaler on CUDA as the original; on a CPU (smoke runs) float32, no scaler.
        # ``amp_dtype`` exists for the parity check (benches/gpu_step_parity.py): None = float32 throughout (the
        # ground truth), torch.bfloat16 = the same recipe under bf16 autocast (no scaler, as bf16 needs none).
        self.amp_dtype = amp_dtype if amp_dtype is not None else torch.float32
        self.amp = self.dev == "cuda" and amp_dtype is not None
        self.scaler = torch.amp.GradScaler(
            self.dev, init_scale=2.0**10, enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.last_image_grad: torch.Tensor | None = None
        if alphas_cumprod is None:  # scaled_linear β 0.00085 → 0.012, 1000 steps (SD/SDXL)
            betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
            alphas_cumprod = torch.cumprod(1 - betas, 0)
        self.alphas = alphas_cumprod.to(device=background.device, dtype=torch.float32)
        self.sf = float(self.vae.config.scaling_factor)

    def render(self, cams):
        verts = self.mesh.vertices
        clip = cams.to_clip(verts)  # fp32, outside autocast (nvdiffrast needs float32 positions)
        faces = self.mesh.faces.int()
        h, w = cams.height, cams.width
        rast = self.backend.rasterize(clip, faces, (h, w))
        b = clip.shape[0]
        pos = self.backend.interpolate(verts[None].expand(b, -1, -1).contiguous(), rast, faces)
        z_cam = self.backend.interpolate(cams.to_camera(verts)[..., 2:3].contiguous(), rast, faces)
        cov = (rast[..., 3:] > 0).float()
        mask = self.backend.antialias(cov, rast, clip, faces)
        with torch.autocast(self.dev, dtype=self.amp_dtype, enabled=self.amp):
            albedo = self.field(pos.reshape(-1, 3)).reshape(pos.shape[0], h, w, 3)  # every pixel, as the original
        bg = self.background.permute(1, 2, 0)[None]
        img = albedo * mask + bg * (1 - mask)
        # camera-space depth for the ControlNet (background 1.2·max over the batch, as the original)
        d = z_cam * mask + 1.2 * z_cam.max() * (1 - mask)
        return img.permute(0, 3, 1, 2).contiguous(), d.permute(0, 3, 1, 2).contiguous()

    def __call__(self, cams, generator: torch.Generator) -> dict:
        """One full step: :meth:`forward_backward`, then the GradScaler'd Adam step."""
        out = self.forward_backward(cams, generator)
        self.scaler.step(self.opt)
        self.scaler.update()
        return out

    def forward_backward(
        self, cams, generator: torch.Generator, *, control: torch.Tensor | None = None, keep_image_grad: bool = False
    ) -> dict:
        """Render, guidance and backward, leaving the unscaled texture gradients in the field's ``.grad`` (the
        state the original's optimiser step sees). Returns {"loss", "z" (latents, detached), "grad" (the SDS
        latent gradient)}; with ``keep_image_grad`` the rendered image's gradient after the PGC hook (unscaled)
        is kept in ``last_image_grad`` (off in timed steps: the original does no such copy). ``control``: [B, 3, R, R]
        condition image replacing the depth map computed here
        (the parity check feeds both pipelines one condition; our default depth convention differs on purpose)."""
        self.opt.zero_grad(set_to_none=True)
        b = cams.c2w.shape[0]
        img, depth = self.render(cams)
        with torch.autocast(self.dev, dtype=self.amp_dtype, enabled=self.amp):
            z = self.encode(img, generator)
            t = torch.randint(20, 501, (b,), device=z.device, generator=generator)
            noise = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
            cond = self.depth_condition(depth) if control is None else control
            grad = self.latent_grad(z, t, noise, cond)
            loss = SpecifyGradient.apply(z, grad)
        img.register_hook(original_pgc_hook(self.tau, self.scaler))
        if keep_image_grad:
            img.register_hook(self._keep_image_grad)  # runs after the PGC hook: sees the clipped gradient
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        return {"loss": loss, "z": z.detach(), "grad": grad}

    def encode(self, img: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True) -> torch.Tensor:
        """``0.13025 · VAE.encode(2·bilinear(img, res) − 1)``: a posterior sample (or its mean), as the original.
        Called inside the step's autocast."""
        x = F.interpolate(img, (self.res, self.res), mode="bilinear", align_corners=False)
        post = self.vae.encode((2 * x - 1).to(self.vae.dtype)).latent_dist
        return (post.sample(generator=generator) if sample else post.mean) * self.sf

    def depth_condition(self, depth: torch.Tensor) -> torch.Tensor:
        """The original's depth condition: per-image min-max normalised camera depth, resized, 3 channels."""
        dmin = depth.amin(dim=(1, 2, 3), keepdim=True)
        dmax = depth.amax(dim=(1, 2, 3), keepdim=True)
        cond = (depth - dmin) / (dmax - dmin + 1e-8)
        return F.interpolate(cond, (self.res, self.res), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)

    @torch.no_grad()
    def latent_grad(self, z: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The SDS latent gradient ``nan_to_num((1 − ᾱ)(ε_c + s(ε_c − ε_u) − ε))`` for latents z [B, 4, h, w],
        timesteps t [B], noise ε (z's shape) and condition images [B, 3, R, R]: ControlNet + UNet once on
        ``[z_t; z_t]`` with ``[uncond; cond]`` text. Called inside the step's autocast."""
        b = z.shape[0]
        a = self.alphas[t].view(b, 1, 1, 1)
        z_t = (a.sqrt() * z + (1 - a).sqrt() * noise).to(z.dtype)
        zz = torch.cat([z_t, z_t])
        tt = torch.cat([t, t])
        hid = self.inp.prompt_embeds.repeat_interleave(b, dim=0).to(zz.dtype)
        pooled = self.inp.pooled.repeat_interleave(b, dim=0).to(zz.dtype)
        r = float(self.res)
        time_ids = torch.tensor([r, r, 0, 0, r, r], device=z.device).expand(2 * b, 6)
        added = {"text_embeds": pooled, "time_ids": time_ids.to(zz.dtype)}
        cond = torch.cat([cond, cond]).to(zz.dtype)
        down, mid = self.controlnet(
            zz, tt, encoder_hidden_states=hid, controlnet_cond=cond, added_cond_kwargs=added, return_dict=False
        )
        eps = self.unet(
            zz,
            tt,
            encoder_hidden_states=hid,
            added_cond_kwargs=added,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        eps_u, eps_c = eps.chunk(2)
        eps_hat = eps_c + self.s * (eps_c - eps_u)
        return torch.nan_to_num((1 - a) * (eps_hat - noise))

    def _keep_image_grad(self, g: torch.Tensor) -> None:
        s = self.scaler._get_scale_async() if self.scaler.is_enabled() else None
        self.last_image_grad = (g.float() / s) if s is not None else g.float()
