"""Objectives the loop optimises: score distillation (GuidanceObjective) and MSE to known views (MSEObjective),
behind one Objective protocol, with the RunContext they see. May import guidance (lazily) and render.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pgc_fast import config as C
from pgc_fast.train import distributed as D


@dataclass
class LossOutput:
    """One objective evaluation: a scalar loss to back-propagate and float diagnostics for the log."""

    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """A pluggable loss. The loop renders ``cameras(step, gen)`` and asks the objective for a loss.

    ``gen`` is the step's camera generator, the same on every rank: draw ``ctx.global_views`` views and keep
    ``ctx.local_views`` of them (see :class:`RunContext`), so a view does not depend on the process count."""

    def setup(self, ctx: RunContext) -> None: ...

    def cameras(self, step: int, generator: torch.Generator, ctx: RunContext) -> Any: ...

    def loss(self, step: int, render: Any, cameras: Any, ctx: RunContext) -> LossOutput: ...

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
    schedule_iters: int | None = None
    """The run length the schedules use (zoom stages, DreamTime/BGT+ timesteps, t-range annealing): the
    optim.iters the run was started with, kept when ``--resume`` extends it (None = ``cfg.optim.iters``)."""

    @property
    def run_length(self) -> int:
        """:attr:`schedule_iters`, or ``cfg.optim.iters`` when unset."""
        return self.schedule_iters if self.schedule_iters is not None else self.cfg.optim.iters

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


class _OrbitCameras:
    """Training cameras as the original: orbit sampling with the 3-stage zoom-in focal schedule."""

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
        cams = sampler.sample(
            ctx.global_views, generator=generator, focal_range=focal_stage_range(ctx.cfg, step, ctx.run_length)
        )
        return cams[ctx.local_views].to(ctx.device)


def focal_stage_range(cfg: C.RunConfig, step: int, iters: int | None = None) -> tuple[float, float]:
    """The original's zoom-in schedule: stages s0/s1/s2 take 30/30/40 % of the ``iters`` steps (default
    ``cfg.optim.iters``; the original's Trainer), focal ranges focal_range → midpoint → focal_range_fine; steps
    past ``iters`` (an extended run) stay in s2. Without ``render.zoom_stages`` every step is s0."""
    r = cfg.render
    if not r.zoom_stages:
        return r.focal_range
    frac = step / max(1, cfg.optim.iters if iters is None else iters)
    if frac < 0.3:
        return r.focal_range
    if frac < 0.6:
        return tuple((a + b) / 2 for a, b in zip(r.focal_range, r.focal_range_fine, strict=False))  # type: ignore[return-value]
    return r.focal_range_fine


class GuidanceObjective(_OrbitCameras):
    """Score distillation from a diffusion model (:mod:`pgc_fast.guidance`) on the rendered image and, with
    ``guidance.normal_sds`` (DMTet), on its outward normal map (Fantasia3D's normal-SDS).

    The guidance attaches the (GradScaler-aware) PGC hook to the image itself, so the loop does not
    (``handles_pgc``). With ``guidance.ref_path`` the reference view (the original's pose_0: r = 2.5, θ = 60°,
    φ = 0, focal 1.025·H) is rendered too and matched to the reference image by a masked MSE weighted by
    ``lambda_ref`` — a mean over the masked pixels rather than the original's resolution-dependent sum (a bug of the
    original);
    its gradient is not clipped, as in the original. With ``guidance.clip_reference`` the CLIP reference loss is
    added on the same render (the original's ``--guidance_o clip``). With ``guidance.zero123`` (``-O3``) the
    guidance is :class:`pgc_fast.guidance.ImageGuidance`: Zero123 on every view relative to the reference camera,
    plus the text term.
    """

    handles_pgc = True

    def __init__(self) -> None:
        self.guidance: Any = None
        self.ref: torch.Tensor | None = None
        self.ref_mask: torch.Tensor | None = None
        self.clip: Any = None

    def setup(self, ctx: RunContext) -> None:
        from pgc_fast import guidance as G

        self.scaler = ctx.scaler if ctx.scaler.is_enabled() else None
        self.normal_control = any(c.split("=", 1)[0] == "normal" for c in ctx.cfg.guidance.controlnets)
        # The run's guidance section as is; the weights take the run's autocast dtype (train.runtime.resolve_precision).
        g, dtype, seed = ctx.cfg.guidance, guidance_dtype(ctx), ctx.cfg.optim.seed
        if g.zero123:  # -O3: Zero123 on every view (relative to the reference camera) + the text term
            centre = reference_camera(ctx.cfg.render.resolution, "cpu").position[0]
            self.guidance = G.load_image_guidance(
                g, device=ctx.device, dtype=dtype, seed=seed, iters=ctx.run_length, reference_position=centre
            )
        else:
            self.guidance = G.load_guidance(g, device=ctx.device, dtype=dtype, seed=seed, iters=ctx.run_length)
        if ctx.dist.rank and getattr(self.guidance, "generator", None) is not None:
            # Same model weights on every rank (seeded init), own noise stream: the original's seed + global_rank.
            self.guidance.generator.manual_seed(ctx.cfg.optim.seed + ctx.dist.rank)
        if ctx.cfg.guidance.ref_path:
            self._load_reference(ctx)

    def _load_reference(self, ctx: RunContext) -> None:
        g = ctx.cfg.guidance
        assert g.ref_path is not None
        self.ref, self.ref_mask = load_reference(g.ref_path, ctx.cfg.render.resolution, ctx.device)
        if g.clip_reference:  # --guidance_o clip: the reference composited on white, as the original
            from pgc_fast.guidance.models.clip_image import load_clip_image_encoder
            from pgc_fast.guidance.reference import ClipSimilarity

            enc = load_clip_image_encoder(
                g.clip_model,
                device=ctx.device,
                dtype=guidance_dtype(ctx),
                cache_dir=g.cache_dir,
                token_file=g.token_file,
                seed=ctx.cfg.optim.seed,
            )
            white = self.ref * self.ref_mask + (1 - self.ref_mask)
            self.clip = ClipSimilarity(enc, white[None])

    def loss(self, step: int, render: Any, cameras: Any, ctx: RunContext) -> LossOutput:
        phi = torch.rad2deg(cameras.phi) if cameras.phi is not None else None
        theta = torch.rad2deg(cameras.theta) if cameras.theta is not None else None
        # Normal-SDS (shape optimisation): the outward world normals (n + 1)/2 of the same views, scored by the same
        # guidance (scale normal_guidance_scale, PGC on them too); without rgb_sds it is the only term.
        normals = ctx.scene.normal_map(render) if ctx.cfg.guidance.normal_sds else None
        out = self.guidance.step(
            render.image,
            step=step + 1,
            azimuth_deg=phi,
            polar_deg=theta,
            c2w=cameras.c2w,
            depth=render.depth,
            mask=render.mask,
            normals=normals,
            scaler=self.scaler,
            surface_normals=render.normal if self.normal_control else None,
        )
        loss = out.loss
        stats: dict[str, Any] = {}
        gn = out.stats.get("grad_norm") if isinstance(out.stats, dict) else None
        if gn is not None:
            stats["grad_norm"] = gn.float().mean()  # device tensor: the loop reads stats back in batches
        lam_sat = ctx.cfg.guidance.lambda_saturation
        if lam_sat > 0:  # clipped by the PGC hook with the rest of the image's gradient, as in the original
            from pgc_fast.train.regularizers import saturation_penalty

            sat = saturation_penalty(render.image, render.mask)
            loss = loss + lam_sat * sat
            stats["saturation_loss"] = sat.detach()
        if self.ref is not None:
            ref_render = ctx.scene.render(reference_camera(ctx.cfg.render.resolution, ctx.device), train=False)
            m = self.ref_mask * ref_render.mask
            ref_loss = ((ref_render.image - self.ref) ** 2 * m).sum() / (3 * m.sum()).clamp_min(1.0)
            loss = loss + ctx.cfg.guidance.lambda_ref * ref_loss
            stats["ref_mse"] = float(ref_loss.detach())
            if self.clip is not None:
                clip_loss = self.clip.loss(ref_render.image)
                loss = loss + ctx.cfg.guidance.clip_reference * clip_loss
                stats["clip_ref"] = clip_loss.detach()
        return LossOutput(loss, stats)

    def after_backward(self) -> dict[str, Any]:
        """PGC statistics of this step as 0-d tensors (no host sync; the loop reads them back in batches)."""
        if self.guidance is None:
            return {}
        st = self.guidance.pgc_stats.get("rgb" if self.guidance.cfg.rgb_sds else "normal")
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


REFERENCE_POSE = (2.5, 60.0, 0.0)
"""The original's reference camera pose_0: radius, polar angle and azimuth in degrees (its nerf/provider.py)."""
REFERENCE_FOCAL = 1.025
"""Its focal length, times the render height."""


def reference_camera(resolution: int, device: torch.device | str) -> Any:
    """The reference view's camera (:data:`REFERENCE_POSE`, focal :data:`REFERENCE_FOCAL` · H) at ``resolution``."""
    from pgc_fast.render import orbit_cameras

    return orbit_cameras(*REFERENCE_POSE, REFERENCE_FOCAL * resolution, resolution, device=device)


def guidance_dtype(ctx: RunContext) -> torch.dtype:
    """The guidance weights' dtype for this run: the autocast dtype that train.runtime.resolve_precision chose
    (float32 without autocast), so weights and activations agree."""
    return ctx.autocast_dtype or torch.float32


def load_reference(path: str, resolution: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The reference image as the reference-view loss compares it with our render at :data:`REFERENCE_POSE`:
    (rgb float32 [3, R, R], mask float32 [1, R, R]), bicubically resized to ``resolution``; the mask is the
    alpha channel (> 0.5), all ones for an image without one. A directory means its first .png/.jpg by name.

    The image is mirrored left-right. The original's cameras are mirrored (det R = -1, render/camera.py), ours
    are not: at pose_0 its render is the mirror image of ours, and its reference-view loss matched the reference
    to that mirror image. Mirroring the reference gives our render the same target, so a reference shows the
    spear where the original put it (tests/pipeline/test_reference_view.py checks it on the seed's panda)."""
    from PIL import Image, ImageOps

    if os.path.isdir(path):
        path = str(sorted(p for p in Path(path).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[0])
    with Image.open(path, formats=C.IMAGE_FORMATS) as im:  # plain raster decoders only (EPS runs Ghostscript)
        rgba = ImageOps.mirror(im.convert("RGBA")).resize((resolution, resolution), Image.Resampling.BICUBIC)
    a = torch.from_numpy(np.asarray(rgba, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return a[:3].contiguous().to(device), (a[3:] > 0.5).float().to(device)


class MSEObjective:
    """Mean squared error of the render to target images seen by known cameras (reconstruction / tests).

    Args:
        targets: float32 [N, 3, H, W] in [0, 1], the images to match.
        cameras: pgc_fast.render.Cameras with N views, H×W matching the targets.
        background: the background the targets were rendered over (a grey level).
        masks: optional float32 [N, 1, H, W] silhouettes (coverage in [0, 1]); the loss then adds
            ``mask_weight`` × the MSE of the render's (antialiased) coverage to them. A silhouette term cannot be
            met by colour alone: a surface where the target is empty cannot hide by taking the background's colour.
    Each step permutes the N views with the step's camera generator; global view g of the step (over all ranks)
    is view ``perm[g mod N]``, so views are distinct within a step while the global batch is at most N, and a
    resumed or re-sharded run draws the same views.
    """

    def __init__(
        self,
        targets: torch.Tensor,
        cameras: Any,
        background: float = 1.0,
        masks: torch.Tensor | None = None,
        mask_weight: float = 1.0,
    ) -> None:
        if targets.dim() != 4 or targets.shape[1] != 3:
            raise ValueError(f"MSEObjective(): targets must be float [N,3,H,W], got {list(targets.shape)}")
        if len(cameras) != targets.shape[0]:
            raise ValueError(f"MSEObjective(): {len(cameras)} cameras for {targets.shape[0]} targets")
        if masks is not None and tuple(masks.shape) != (targets.shape[0], 1, *targets.shape[2:]):
            raise ValueError(
                f"MSEObjective(): masks must be float [N,1,H,W] = {[targets.shape[0], 1, *targets.shape[2:]]}, "
                f"got {list(masks.shape)}"
            )
        self.masks = None if masks is None else masks.float()
        self.mask_weight = float(mask_weight)
        self.targets = targets.float()
        self.all_cameras = cameras
        self.background = background
        self._idx: torch.Tensor | None = None

    def setup(self, ctx: RunContext) -> None:
        self.targets = self.targets.to(ctx.device)
        self.masks = None if self.masks is None else self.masks.to(ctx.device)
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
        stats = {"mse": float(mse.detach()), "psnr": float(-10 * torch.log10(mse.detach() + 1e-12))}
        if self.masks is None:
            return LossOutput(mse, stats)
        sil = torch.mean((render.mask.float() - self.masks[self._idx]) ** 2)
        stats["silhouette_mse"] = float(sil.detach())
        return LossOutput(mse + self.mask_weight * sil, stats)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) or (isinstance(v, torch.Tensor) and v.numel() == 1)
