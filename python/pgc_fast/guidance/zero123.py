"""Image-conditioned guidance: the Zero123 engine (:class:`Zero123Guidance`) and what ``-O3`` runs
(:class:`ImageGuidance`: Zero123 on every view plus the text guidance, scaled by ``grad_scale``).

Interface: the same ``step`` as :class:`pgc_fast.guidance.Guidance` (images [B, 3, H, W] in [0, 1] requiring grad,
``c2w`` [B, 4, 4] camera-to-world, a GradScaler) returning a :class:`GuidanceOutput` whose loss injects the
gradient into the images; the PGC hook is attached once, to the images, clipping the total gradient as the
original's hook did::

    guidance = load_image_guidance(cfg.guidance, device="cuda", dtype="auto", seed=0, iters=2000,
                                   reference_position=ref_c2w[0, :3, 3])
    out = guidance.step(rgb, step=k, c2w=c2w, azimuth_deg=az, polar_deg=polar, scaler=scaler)

The reference (``cfg.ref_path``) is read once: composited on grey 0.8 at Zero123's 256², its CLIP embedding and VAE
latent computed once (guidance/reference.py); the CLIP encoder then leaves the GPU. Per step: one VAE encode (with
grad), one UNet call on [uncond; cond] for all views (SDS) or one per BGT+ chain step, the fused SDS kernel.
Maths and the original's bugs: :mod:`pgc_fast.guidance.methods.zero123`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pgc_fast.config.schema import ZERO123_BUILTINS, CfgForm, GuidanceConfig, Precision
from pgc_fast.guidance import conditions, schedule
from pgc_fast.guidance.build import apply_speed_levers, compile_models, load_guidance
from pgc_fast.guidance.engine import EngineBase, Guidance, GuidanceOutput
from pgc_fast.guidance.methods import zero123 as M
from pgc_fast.guidance.models.loading import GuidanceLoadError, hf_token, resolve_dtype
from pgc_fast.guidance.models.zero123 import (
    Zero123Bundle,
    is_checkpoint_file,
    load_diffusers_dir,
    load_zero123,
    locate_zero123,
)
from pgc_fast.guidance.reference import downsample, zero123_reference
from pgc_kernels import sds_loss

# The original's reference camera pose_0 (its nerf/provider.py): radius 2.5, polar 60°, azimuth 0 → its centre.
REFERENCE_CENTRE = (0.0, 1.25, 2.1650635)


def zero123_convention(cfg: GuidanceConfig) -> CfgForm:
    """Zero123's CFG form: ``cfg.zero123_cfg_convention``; auto = the original's: pgc for bgt, diffusers for sds."""
    if cfg.zero123_cfg_convention != "auto":
        return cfg.zero123_cfg_convention
    return "pgc" if cfg.zero123_loss == "bgt" else "diffusers"


class Zero123Guidance(EngineBase):
    """Score distillation from a frozen Zero123 given a reference image. Build with :func:`build_zero123_guidance`.

    Args:
        cfg: the guidance configuration (the ``zero123_*`` fields, t_range, weighting, BGT+ and PGC settings).
        models: the (sped-up) Zero123 modules.
        embedding: [1, 1, D] the reference's CLIP image embedding; ref_latent: [1, 4, h, w] its VAE latent (mode).
        reference_position: [3] the reference camera's centre (relative cameras are taken to it).
        generator: the noise RNG on the models' device; iters: the run length (BGT+ and t-range schedules).
    """

    def __init__(
        self,
        cfg: GuidanceConfig,
        models: Zero123Bundle,
        *,
        embedding: torch.Tensor,
        ref_latent: torch.Tensor,
        reference_position: torch.Tensor,
        generator: torch.Generator,
        iters: int,
        vae_channels_last: bool = False,
    ):
        super().__init__(
            cfg,
            models,
            weights=models.projection,
            generator=generator,
            iters=iters,
            vae_channels_last=vae_channels_last,
        )
        self.unet, self.projection = models.unet, models.projection
        self.embedding, self.ref_latent = embedding, ref_latent
        self.reference_position = reference_position.to(self.device, torch.float32).reshape(3)
        self.resolution = int(models.resolution)
        self.convention = zero123_convention(cfg)

    def sample_t(self, batch: int, step: int) -> torch.Tensor:
        lo, hi = self.timestep_range(step)
        return schedule.sample_timesteps(batch, lo, hi, self.device, self.generator)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [B, 3, H, W] in [0, 1] → (latents [B, 4, h, w] with grad, images at 256² in [0, 1]). The VAE sees
        2x - 1 (4x - 3 with the ``zero123_double_norm`` parity switch, as the original)."""
        x = conditions.resize(images, self.resolution)
        if self.cfg.zero123_mirrored:
            x = x.flip(-1)
        vae_in = 2 * x - 1
        if self.cfg.zero123_double_norm:
            vae_in = 2 * vae_in - 1
        return self.vae_latents(vae_in), x

    def conditioning(self, c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens [2B, 1, D], concatenated latents [2B, 4, h, w], dT [B, 4]) for cameras ``c2w`` [B, 4, 4]."""
        dT = M.relative_camera(c2w[:, :3, 3].to(self.device), self.reference_position)
        with torch.no_grad():
            hidden, concat = M.condition(self.projection, self.embedding, self.ref_latent, dT)
        return hidden, concat, dT

    @torch.no_grad()
    def predict_cfg(
        self, z_t: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, concat: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_cond, eps_uncond) for all samples in ONE UNet call on [z_t; z_t] ⊕ [0; E(x_r)] (uncond first)."""
        x = torch.cat([torch.cat([z_t, z_t]).to(self.dtype), concat.to(self.dtype)], dim=1)
        with self._no_autocast():
            eps = self.unet(x, torch.cat([t, t]), encoder_hidden_states=hidden.to(self.dtype), return_dict=False)[0]
        eps_u, eps_c = eps.chunk(2)
        return eps_c, eps_u

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])

    def step(
        self,
        images: torch.Tensor,
        *,
        step: int,
        c2w: torch.Tensor | None = None,
        scaler: Any = None,
        attach_pgc: bool = True,
        azimuth_deg: torch.Tensor | None = None,
        polar_deg: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        surface_normals: torch.Tensor | None = None,
    ) -> GuidanceOutput:
        """One Zero123 evaluation for a batch of views (SDS or BGT+ per ``cfg.zero123_loss``). ``c2w`` is required
        (the relative cameras); the angles, depth, masks and normals of the common interface are not used."""
        del azimuth_deg, polar_deg, depth, mask, normals, surface_normals
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Zero123Guidance.step(): images must be [B, 3, H, W] RGB, got {tuple(images.shape)}")
        b = images.shape[0]
        if c2w is None or tuple(c2w.shape) != (b, 4, 4):
            got = None if c2w is None else tuple(c2w.shape)
            raise ValueError(f"Zero123Guidance.step(): c2w must be [{b}, 4, 4] (one camera per view), got {got}")
        if attach_pgc:
            self._attach_pgc("rgb", images, scaler)
        z, x = self.encode(images)
        hidden, concat, dT = self.conditioning(c2w)
        batch = M.Zero123Batch(z=z, x=x, hidden=hidden, concat=concat, step=step)
        res = (M.bgt if self.cfg.zero123_loss == "bgt" else M.sds)(self, batch)
        loss = sds_loss(z, res.grad)
        if res.extra_loss is not None:
            loss = loss + res.extra_loss
        t = res.stats.pop("t")
        stats = {**res.stats, "grad_norm": res.grad.flatten(1).norm(dim=1), "relative_camera": dT}
        return GuidanceOutput(loss=loss, grad=res.grad, latents=z.detach(), t=t, stats=stats)


class ImageGuidance:
    """What ``-O3`` optimises against: Zero123 on every view, plus (when a prompt is given) the text guidance with
    its own method and ``grad_scale`` (the original: SDS from SD 2.1 at 0.01). Both share one noise generator. The
    PGC hook is attached by the text guidance when there is one, else by Zero123: once, on the images."""

    def __init__(self, zero123: Zero123Guidance, text: Guidance | None = None):
        self.zero123, self.text = zero123, text
        self.generator = zero123.generator
        self.cfg = zero123.cfg

    def step(self, images: torch.Tensor, *, step: int, c2w: torch.Tensor | None = None, **kw: Any) -> GuidanceOutput:
        """Zero123 and text guidance on the same views; the losses add up. ``stats`` holds Zero123's entries (with
        its ``grad_norm``) and the text's prefixed ``text_``."""
        text_out = self.text.step(images, step=step, c2w=c2w, **kw) if self.text is not None else None
        out = self.zero123.step(images, step=step, c2w=c2w, scaler=kw.get("scaler"), attach_pgc=self.text is None)
        if text_out is None:
            return out
        stats = {**out.stats, **{f"text_{k}": v for k, v in text_out.stats.items()}}
        return dataclasses.replace(out, loss=out.loss + text_out.loss, stats=stats, normal_grad=text_out.normal_grad)

    @property
    def pgc_stats(self) -> dict[str, Any]:
        return (self.text or self.zero123).pgc_stats

    def state_dict(self) -> dict:
        out = {"zero123": self.zero123.state_dict()}
        if self.text is not None:
            out["text"] = self.text.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        if "text" in state and self.text is not None:
            self.text.load_state_dict(state["text"])
        self.zero123.load_state_dict(state.get("zero123", {}))


# ----------------------------------------------------------------------------------------------- assembly
@torch.no_grad()
def encode_reference(models: Zero123Bundle, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLIP image embedding [1, 1, D], VAE latent [1, 4, h, w] (posterior mode, unscaled)) of the reference
    [1, 3, R, R] in [0, 1] (resized to the model's resolution first), as the original's get_img_embeds: the CLIP
    input is resized bicubically to its size (align_corners, as ldm's FrozenCLIPImageEmbedder) and normalised."""
    enc = models.image_encoder
    p = next(enc.parameters())
    x = downsample(image.to(p.device, torch.float32), models.resolution)
    mean = torch.tensor(models.image_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(models.image_std, device=x.device).view(1, 3, 1, 1)
    s = models.clip_size
    clip_in = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=True) if x.shape[-1] != s else x
    emb = enc(pixel_values=((clip_in - mean) / std).to(p.dtype)).image_embeds[:, None, :]
    vae = models.vae
    v = vae.encode((2 * x - 1).to(next(vae.parameters()).device, vae.dtype)).latent_dist.mode()
    return emb, v


def build_zero123_guidance(
    cfg: GuidanceConfig,
    models: Zero123Bundle,
    *,
    reference: torch.Tensor,
    reference_position: torch.Tensor | tuple[float, float, float] = REFERENCE_CENTRE,
    seed: int = 0,
    iters: int = 1000,
    generator: torch.Generator | None = None,
) -> Zero123Guidance:
    """A ready :class:`Zero123Guidance` over loaded ``models`` (patched in place by the speed levers).

    Args:
        reference: [1, 3, R, R] in [0, 1], already composited (:func:`pgc_fast.guidance.reference.zero123_reference`).
        reference_position: the reference camera's centre (default: the original's pose_0).
        generator: the noise RNG to share (the text guidance's); None = a new one seeded with ``seed``.
    """
    device = next(models.projection.parameters()).device
    if generator is None:
        generator = torch.Generator(device).manual_seed(seed)
    emb, latent = encode_reference(models, reference)
    if device.type == "cuda":
        models.image_encoder.to("cpu")  # used once
    plain = dataclasses.replace(cfg, loss="sds")  # the speed levers read loss for VSD's LoRA: none here
    # The levers and compile read .unet/.vae/.controlnet (and dataclasses.replace them): a Zero123Bundle has those.
    sped: Any
    sped, vae_cl = apply_speed_levers(plain, models, device)  # type: ignore[arg-type]
    sped = compile_models(plain, sped, device)
    return Zero123Guidance(
        cfg,
        sped,
        embedding=emb.to(device),
        ref_latent=latent.to(device),
        reference_position=torch.as_tensor(reference_position, dtype=torch.float32),
        generator=generator,
        iters=iters,
        vae_channels_last=vae_cl,
    )


def load_image_guidance(
    cfg: GuidanceConfig,
    *,
    device: str | torch.device,
    dtype: Precision | torch.dtype,
    seed: int,
    iters: int,
    reference_position: torch.Tensor | tuple[float, float, float] = REFERENCE_CENTRE,
) -> ImageGuidance:
    """Load Zero123 (``cfg.zero123_model``) and, with a prompt, the text guidance (``cfg.model``); every weight
    is located before any model is loaded (one :class:`GuidanceLoadError` if missing)."""
    if not cfg.ref_path:
        raise ValueError("load_image_guidance(): Zero123 needs a reference image, cfg.ref_path is None")
    device = torch.device(device)
    wdtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    src = cfg.zero123_model
    located: Path | None = None
    if is_checkpoint_file(src):
        if not Path(src).is_file():
            load_zero123(src, device=device)  # raises the missing-checkpoint GuidanceLoadError
    elif src not in ZERO123_BUILTINS:
        located = locate_zero123(src, cache_dir=cfg.cache_dir, token=hf_token(cfg.token_file))
    text = load_guidance(cfg, device=device, dtype=wdtype, seed=seed, iters=iters) if cfg.text.strip() else None
    if located is not None:
        models = load_diffusers_dir(located, device=device, dtype=wdtype, name=src)
    else:
        models = load_zero123(src, config=cfg.zero123_config, device=device, dtype=wdtype, seed=seed)
    try:
        ref = zero123_reference(cfg.ref_path, models.resolution, mirror=not cfg.zero123_mirrored)
    except (OSError, ValueError) as e:
        raise GuidanceLoadError(f"guidance.ref_path (--ref_path): cannot read {cfg.ref_path!r}: {e}") from e
    z123 = build_zero123_guidance(
        cfg,
        models,
        reference=ref,
        reference_position=reference_position,
        seed=seed,
        iters=iters,
        generator=text.generator if text is not None else None,
    )
    return ImageGuidance(z123, text)
