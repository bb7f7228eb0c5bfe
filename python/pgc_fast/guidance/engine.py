"""The ``Guidance`` object: holds the frozen diffusion model, encodes images, runs the UNet (+ ControlNet) once
per step for all views and both CFG halves, and dispatches to the method files (sds, csd, ssd, vsd, bgt).

See the package docstring (``pgc_fast.guidance``) for the interface the training loop uses.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from pgc_fast.config.schema import CfgForm, GuidanceConfig
from pgc_fast.guidance import conditions, prompts, schedule
from pgc_fast.guidance.methods import bgt, csd, sds, ssd, vsd
from pgc_fast.guidance.methods.vsd import VSDState
from pgc_fast.guidance.models.builtin import ModelBundle
from pgc_fast.guidance.text import TextEmbeddings
from pgc_kernels import attach_pgc, sds_loss

_GRAD_FNS = {"sds": sds.grad, "csd": csd.grad, "ssd": ssd.grad}


def resolved_convention(cfg: GuidanceConfig) -> CfgForm:
    """The CFG form in use: ``cfg.cfg_convention``, where ``auto`` = diffusers for VSD, pgc otherwise (the original)."""
    if cfg.cfg_convention != "auto":
        return cfg.cfg_convention
    return "diffusers" if cfg.loss == "vsd" else "pgc"


@dataclass
class MethodOutput:
    """What one method computes for one batch (before injection).

    grad: float32 [B, 4, h, w], the gradient w.r.t. the latents (detached).
    extra_loss: 0-d tensor with its own autograd graph into the image (BGT+'s RGB term) or None.
    stats: diagnostics, device tensors ([B] or 0-d), never synchronised.
    """

    grad: torch.Tensor
    extra_loss: torch.Tensor | None = None
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class GuidanceOutput:
    """Result of :meth:`Guidance.step`.

    loss: 0-d float32; add it to the training loss and back-propagate: its gradient w.r.t. the latents is
        exactly ``grad`` (and ``normal_grad``), which then flows through the VAE encoder into the images.
        Its value is 0.5·||grad||²/B (+ BGT+'s RGB MSE), a meaningful number to log.
    grad: float32 [B, 4, h, w] latent gradient of the RGB term (detached); of the normal term when ``rgb_sds`` is
        off.
    latents: [B, 4, h, w] the encoded latents (detached).
    t: int64 [B] timesteps used for the RGB term.
    stats: device tensors (no host sync): 'grad_norm' [B], 'weight' [B], 'view_id' [B], method-specific
        entries, and 'normal_grad_norm' when normal-SDS ran.
    normal_grad: float32 latent gradient of the normal-map term, or None.
    """

    loss: torch.Tensor
    grad: torch.Tensor
    latents: torch.Tensor
    t: torch.Tensor
    stats: dict[str, torch.Tensor]
    normal_grad: torch.Tensor | None = None


@dataclass
class Batch:
    """One step's inputs after encoding, handed to the method files."""

    z: torch.Tensor  # [B, 4, h, w] latents, carrying the autograd graph to the images
    x: torch.Tensor | None  # [B, 3, R, R] images at model resolution in [0, 1] (None in latent mode)
    ids: torch.Tensor  # [B] prompt row (0 plain, 1 + view id)
    controls: list[torch.Tensor]  # per ControlNet: [B, 3, R, R] condition images
    orig_hw: tuple[int, int]
    step: int
    c2w: torch.Tensor | None


class EngineBase:
    """What both engines share (this module's :class:`Guidance` and the image one,
    guidance/zero123.py::Zero123Guidance): the frozen VAE's encode and decode, the diffusion schedule and its
    t-range, autocast off around half-precision models, and the PGC hooks. The subclass adds the rest.

    Args:
        cfg: the guidance configuration; models: the (sped-up) modules, with ``vae`` and ``scheduler_config``.
        weights: the module whose parameters give the models' device and dtype.
        generator: the noise RNG, on the models' device; iters: the run length (the t-range schedule).
        vae_channels_last: feed the VAE channels_last inputs (its weights were converted).
    """

    def __init__(
        self,
        cfg: GuidanceConfig,
        models: Any,
        *,
        weights: torch.nn.Module,
        generator: torch.Generator,
        iters: int,
        vae_channels_last: bool,
    ):
        self.cfg, self.models, self.iters = cfg, models, iters
        self.vae = models.vae
        self.generator = generator
        self.vae_channels_last = vae_channels_last
        self.device = next(weights.parameters()).device
        self.dtype = next(weights.parameters()).dtype
        self.scaling_factor = float(models.vae.config.scaling_factor)
        self.alphas = schedule.alphas_cumprod(models.scheduler_config, self.device)
        self.num_train_timesteps = int(self.alphas.numel())
        self.pgc_hooks: dict[str, Any] = {}

    def timestep_range(self, step: int) -> tuple[int, int]:
        """Integer [t_min, t_max] at ``step`` (t-range annealing applied)."""
        rng = schedule.annealed_t_range(step, self.iters, self.cfg.t_range, self.cfg.t_range_end)
        return schedule.t_bounds(rng, self.num_train_timesteps)

    def vae_latents(self, vae_in: torch.Tensor) -> torch.Tensor:
        """VAE inputs [B, 3, R, R] in [-1, 1] (with grad) → scaled latents [B, 4, h, w]: the posterior's sample
        (``cfg.vae_sample``) or its mean."""
        vae_in = vae_in.to(self.vae.dtype)
        if self.vae_channels_last:
            vae_in = vae_in.contiguous(memory_format=torch.channels_last)
        with self._no_autocast():
            post = self.vae.encode(vae_in).latent_dist
        z = post.sample(generator=self.generator) if self.cfg.vae_sample else post.mean
        return z * self.scaling_factor

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents → images [B, 3, R, R] in [0, 1] (for BGT+ targets, evaluation and latent-mode previews)."""
        img = self.vae.decode((z / self.scaling_factor).to(self.vae.dtype), return_dict=False)[0]
        return (img.float() / 2 + 0.5).clamp(0, 1)

    def _no_autocast(self):
        """Autocast off around the frozen models when their weights are already half precision: every input is
        cast to ``self.dtype`` explicitly, and under an outer autocast (the training loop's) each GroupNorm /
        LayerNorm would be upcast to float32 with extra cast kernels around it — eager SDXL UNet + ControlNet
        run measurably slower inside the loop's autocast than outside (benches/RESULTS.md, issue 8)."""
        if self.dtype in (torch.float16, torch.bfloat16) and self.device.type == "cuda":
            return torch.autocast(self.device.type, enabled=False)
        return contextlib.nullcontext()

    def _attach_pgc(self, name: str, tensor: torch.Tensor, scaler: Any) -> None:
        """Hook PGC onto ``tensor`` as ``name`` (replacing that name's previous hook), when PGC is on."""
        if self.cfg.pgc_tau is None or not tensor.requires_grad:
            return
        old = self.pgc_hooks.pop(name, None)
        if old is not None:
            old.remove()
        self.pgc_hooks[name] = attach_pgc(
            tensor, self.cfg.pgc_tau, scaler, return_stats=True, variant=self.cfg.pgc_variant, norm=self.cfg.pgc_norm
        )

    @property
    def pgc_stats(self) -> dict[str, Any]:
        """Latest PGC statistics per input ('rgb', 'normal'): ``pgc_kernels.PixelClipStats`` of 0-d device
        tensors (fraction clipped, max and mean pixel norm — in GradScaler-scaled units when a scaler is used),
        filled in during backward."""
        return {k: h.stats for k, h in self.pgc_hooks.items() if h.stats is not None}


class Guidance(EngineBase):
    """Score-distillation guidance from a frozen SD/SDXL model (+ ControlNets). Build with :func:`load_guidance`
    (from the configuration) or :func:`build_guidance` (over already-loaded models): they load the models, apply
    the speed levers and compile, encode the prompts, read the reference image and set up VSD; this only stores
    the parts.

    Args:
        cfg: the run configuration's guidance section.
        models: the (sped-up) modules; ``models.unet`` / ``models.controlnet`` may be compiled wrappers.
        text: the encoded prompts (:func:`pgc_fast.guidance.text.build_text_embeddings`).
        generator: the noise RNG, on the models' device.
        iters: length of the run (DreamTime, BGT+ and t-range annealing schedules).
        reference: the shuffle ControlNet's condition image [1, 3, R, R] or None.
        vsd: VSD's LoRA state when ``cfg.loss == "vsd"``, else None.
        vae_channels_last: feed the VAE channels_last inputs (its weights were converted).
    """

    def __init__(
        self,
        cfg: GuidanceConfig,
        models: ModelBundle,
        *,
        text: TextEmbeddings,
        generator: torch.Generator,
        iters: int,
        reference: torch.Tensor | None = None,
        vsd: VSDState | None = None,
        vae_channels_last: bool = False,
    ):
        super().__init__(
            cfg, models, weights=models.unet, generator=generator, iters=iters, vae_channels_last=vae_channels_last
        )
        self.unet = models.unet
        self.controlnet = models.controlnet
        self.text = text
        self.reference = reference
        self.vsd = vsd
        self.is_sdxl = models.is_sdxl
        self.resolution = int(cfg.resolution or models.resolution)
        self.latent_size = self.resolution // models.vae_factor
        self.prediction_type = models.scheduler_config.get("prediction_type", "epsilon")
        self.convention = resolved_convention(cfg)
        self.control_types = list(models.control_types)
        self.control_scales = [float(s) for s in cfg.control_scales] or [1.0] * len(self.control_types)
        self._time_ids: dict[tuple[int, ...], torch.Tensor] = {}

    # ------------------------------------------------------------------------------------------ helpers
    def sample_t(self, batch: int, step: int, *, dreamtime: bool) -> torch.Tensor:
        if dreamtime:
            t = schedule.dreamtime_t(step, self.iters, self.cfg.init_time)
            return torch.full((batch,), t, device=self.device, dtype=torch.long)
        lo, hi = self.timestep_range(step)
        return schedule.sample_timesteps(batch, lo, hi, self.device, self.generator)

    def encode(self, images: torch.Tensor, *, rgb: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images [B, 3, H, W] in [0, 1] → (latents [B, 4, h, w] with grad, images at model res); latent mode:
        [B, 4, h', w'] → resized latents, None — unless ``rgb`` (the normal map is an image in latent mode too)."""
        if self.cfg.latent and not rgb:
            return conditions.resize(images, self.latent_size), None
        x = conditions.resize(images, self.resolution)
        return self.vae_latents(2 * x - 1), x

    def prompt_rows(self, batch: int, azimuth_deg: torch.Tensor | None, polar_deg: torch.Tensor | None) -> torch.Tensor:
        if not self.cfg.dir_text or azimuth_deg is None:
            return torch.zeros(batch, dtype=torch.long, device=self.device)
        az = torch.as_tensor(azimuth_deg, device=self.device).reshape(-1).expand(batch) - self.cfg.front_azimuth
        po = (
            torch.as_tensor(polar_deg, device=self.device).reshape(-1).expand(batch)
            if polar_deg is not None
            else torch.full((batch,), 90.0, device=self.device)
        )
        return 1 + prompts.view_ids(az, po, self.cfg.angle_front, self.cfg.angle_overhead)

    def control_images(
        self,
        images: torch.Tensor,
        depth: torch.Tensor | None,
        mask: torch.Tensor | None,
        normals: torch.Tensor | None,
        c2w: torch.Tensor | None = None,
        surface_normals: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Condition image per ControlNet, [B, 3, R, R] float32 in [0, 1] (diffusers' convention). The normal
        ControlNet's is built from ``surface_normals`` and ``c2w`` (conditions.normal_condition) when given, else
        ``normals`` (the normal-SDS map) is used as is."""
        b = images.shape[0]
        out = []
        for kind in self.control_types:
            if kind == "depth":
                if depth is None:
                    raise ValueError("Guidance.step(): depth must be given when a depth ControlNet is loaded, got None")
                out.append(
                    conditions.depth_condition(
                        depth, mask, self.resolution, self.cfg.depth_convention, self.cfg.depth_floor
                    )
                )
            elif kind == "normal":
                if surface_normals is not None and c2w is not None:
                    out.append(conditions.normal_condition(surface_normals, c2w, mask, self.resolution))
                elif normals is not None:
                    out.append(conditions.resize(normals.detach().float(), self.resolution))
                else:
                    raise ValueError(
                        "Guidance.step(): the normal ControlNet needs surface_normals and c2w (or normals), got None"
                    )
            elif kind == "tile":
                src = images.detach().float()
                if self.cfg.latent:
                    src = self.decode(conditions.resize(src, self.latent_size))
                out.append(conditions.resize(src, self.resolution))
            elif kind == "shuffle":
                assert self.reference is not None
                out.append(self.reference.expand(b, -1, -1, -1))
        return out

    def embeddings(
        self, ids: torch.Tensor, orig_hw: tuple[int, int], *, cfg: bool = True, invariant: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Encoder hidden states ([2B or B, 77, D]: uncond rows first) and SDXL added conditions."""
        tx = self.text
        rows = torch.zeros_like(ids) if invariant else ids
        if cfg:
            hidden = torch.cat([tx.uncond[rows], tx.cond[rows]])
        else:
            hidden = tx.cond[rows]
        if not self.is_sdxl:
            return hidden, None
        assert tx.pooled is not None and tx.uncond_pooled is not None  # SDXL's second text encoder pools
        pooled = torch.cat([tx.uncond_pooled[rows], tx.pooled[rows]]) if cfg else tx.pooled[rows]
        # SDXL micro-conditioning: (original size, crop top-left, target size) of the real input. Cached per
        # size: building it from a Python list each step is a host-to-device copy, i.e. a sync.
        key = tuple(orig_hw)
        if key not in self._time_ids:
            self._time_ids[key] = torch.tensor([*orig_hw, 0, 0, self.resolution, self.resolution], dtype=self.dtype).to(
                self.device
            )
        time_ids = self._time_ids[key].expand(hidden.shape[0], 6)
        return hidden, {"text_embeds": pooled, "time_ids": time_ids}

    def unet_eps(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        hidden: torch.Tensor,
        added: dict | None,
        controls: list[torch.Tensor],
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One UNet (+ ControlNet) call on the whole batch; returns eps predictions in the UNet dtype."""
        x = z_t.to(self.dtype)
        down = mid = None
        if self.controlnet is not None and controls:
            reps = x.shape[0] // controls[0].shape[0]
            cimgs = [c.to(self.dtype).repeat(reps, 1, 1, 1) for c in controls]
            multi = len(cimgs) > 1
            down, mid = self.controlnet(
                x,
                t,
                encoder_hidden_states=hidden,
                controlnet_cond=cimgs if multi else cimgs[0],
                conditioning_scale=self.control_scales if multi else self.control_scales[0],
                added_cond_kwargs=added,
                return_dict=False,
            )
        out = self.unet(
            x,
            t,
            encoder_hidden_states=hidden,
            added_cond_kwargs=added,
            class_labels=class_labels,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]
        return schedule.eps_from_output(out, x, self.alphas[t], self.prediction_type)

    @torch.no_grad()
    def predict_cfg(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        ids: torch.Tensor,
        controls: list[torch.Tensor],
        orig_hw: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_cond, eps_uncond) for all samples in ONE UNet call on [z_t; z_t] (uncond half first)."""
        hidden, added = self.embeddings(ids, orig_hw, cfg=True)
        with self._pretrained_unet(), self._no_autocast():
            eps = self.unet_eps(torch.cat([z_t, z_t]), torch.cat([t, t]), hidden, added, controls)
        eps_u, eps_c = eps.chunk(2)
        return eps_c, eps_u

    @contextlib.contextmanager
    def _pretrained_unet(self):
        """The frozen UNet: VSD's LoRA adapter and camera embedding switched off for the call."""
        if self.vsd is None:
            yield
            return
        with self.vsd.disabled():
            yield

    def state_dict(self) -> dict:
        """Trainable guidance state for checkpoints: VSD's LoRA + camera MLP + optimiser, the RNG; {} otherwise."""
        out: dict = {"generator": self.generator.get_state()}
        if self.vsd is not None:
            out["vsd"] = self.vsd.state_dict()
        return out

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
        if "vsd" in state:
            if self.vsd is None:
                raise ValueError(
                    f"Guidance.load_state_dict(): state holds VSD weights but cfg.loss is {self.cfg.loss!r}"
                )
            self.vsd.load_state_dict(state["vsd"])

    # ------------------------------------------------------------------------------------------ step
    def step(
        self,
        images: torch.Tensor,
        *,
        step: int,
        azimuth_deg: torch.Tensor | None = None,
        polar_deg: torch.Tensor | None = None,
        c2w: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        normals: torch.Tensor | None = None,
        scaler: Any = None,
        surface_normals: torch.Tensor | None = None,
    ) -> GuidanceOutput:
        """One guidance evaluation for a batch of views. See the package docstring for the contract."""
        cfg = self.cfg
        if images.dim() != 4:
            raise ValueError(f"Guidance.step(): images must be [B, C, H, W], got shape {tuple(images.shape)}")
        want_c = 4 if cfg.latent else 3
        if images.shape[1] != want_c:
            raise ValueError(
                f"Guidance.step(): images must have {want_c} channels "
                f"({'latent mode' if cfg.latent else 'RGB in [0, 1]'}), got {images.shape[1]}"
            )
        b = images.shape[0]
        if normals is not None and cfg.pgc_normals:
            self._attach_pgc("normal", normals, scaler)
        orig_hw = (self.resolution, self.resolution) if cfg.latent else (int(images.shape[-2]), int(images.shape[-1]))
        ids = self.prompt_rows(b, azimuth_deg, polar_deg)
        controls = self.control_images(images, depth, mask, normals, c2w=c2w, surface_normals=surface_normals)
        if not cfg.rgb_sds:
            return self._normal_only(normals, ids, controls, orig_hw, step, c2w)
        self._attach_pgc("rgb", images, scaler)
        z, x = self.encode(images)
        batch = Batch(z=z, x=x, ids=ids, controls=controls, orig_hw=orig_hw, step=step, c2w=c2w)
        stats: dict[str, torch.Tensor] = {"view_id": ids - 1}
        normal_grad = zn = None
        if cfg.loss in _GRAD_FNS:
            grads, t, wstats, zn = self._single_call(batch, normals)
            grad = grads[0]
            normal_grad = grads[1] if len(grads) > 1 else None
            stats.update(wstats)
            extra = None
        else:
            mod = vsd if cfg.loss == "vsd" else bgt
            res = mod.run(self, batch)
            grad, extra, t = res.grad, res.extra_loss, res.stats.pop("t")
            stats.update(res.stats)
            if normals is not None:
                zn = self.encode(normals, rgb=True)[0]
                nb = Batch(z=zn, x=None, ids=ids, controls=controls, orig_hw=orig_hw, step=step, c2w=c2w)
                (normal_grad,), _, nstats, _ = self._single_call(
                    nb, None, method="sds", rgb_scale=cfg.normal_guidance_scale, dreamtime=False
                )
                stats["normal_grad_norm"] = nstats["grad_norm"]
        loss = sds_loss(z, grad)
        if normal_grad is not None:
            assert zn is not None  # the normal batch's latents come with its gradient (both branches above)
            loss = loss + sds_loss(zn, normal_grad)
        if extra is not None:
            loss = loss + extra
        stats["grad_norm"] = grad.flatten(1).norm(dim=1)
        return GuidanceOutput(loss=loss, grad=grad, latents=z.detach(), t=t, stats=stats, normal_grad=normal_grad)

    def _normal_only(
        self,
        normals: torch.Tensor | None,
        ids: torch.Tensor,
        controls: list[torch.Tensor],
        orig_hw: tuple[int, int],
        step: int,
        c2w: torch.Tensor | None,
    ) -> GuidanceOutput:
        """``rgb_sds`` off (the original's --only_normal): normal-map SDS alone, with the RGB method when it is a
        single-call one (SDS, CSD, SSD; the original's normal step was its guidance's train_step), else SDS."""
        if normals is None:
            raise ValueError("Guidance.step(): rgb_sds is off, so normals must be given (the normal-SDS input)")
        zn, _ = self.encode(normals)
        nb = Batch(z=zn, x=None, ids=ids, controls=controls, orig_hw=orig_hw, step=step, c2w=c2w)
        method = self.cfg.loss if self.cfg.loss in _GRAD_FNS else "sds"
        (g,), t, stats, _ = self._single_call(
            nb, None, method=method, rgb_scale=self.cfg.normal_guidance_scale, dreamtime=False
        )
        stats["view_id"] = ids - 1
        stats["normal_grad_norm"] = stats["grad_norm"]
        return GuidanceOutput(loss=sds_loss(zn, g), grad=g, latents=zn.detach(), t=t, stats=stats, normal_grad=g)

    def _single_call(
        self,
        batch: Batch,
        normals: torch.Tensor | None,
        *,
        method: str | None = None,
        rgb_scale: float | None = None,
        dreamtime: bool | None = None,
    ):
        """SDS/CSD/SSD for the RGB batch and (optionally) the normal batch in one UNet call."""
        cfg = self.cfg
        method = method or cfg.loss
        fn = _GRAD_FNS[method]
        b = batch.z.shape[0]
        dt = cfg.dreamtime if dreamtime is None else dreamtime
        t = self.sample_t(b, batch.step, dreamtime=dt)
        z_all, ids, ctrls, t_all, zn = batch.z, batch.ids, batch.controls, t, None
        if normals is not None:
            zn, _ = self.encode(normals, rgb=True)
            z_all = torch.cat([batch.z, zn])
            ids = torch.cat([ids, ids])
            ctrls = [torch.cat([c, c]) for c in ctrls]
            t_all = torch.cat([t, self.sample_t(b, batch.step, dreamtime=False)])
        noise = torch.randn(z_all.shape, device=self.device, generator=self.generator, dtype=torch.float32)
        abar = self.alphas[t_all]
        z_t = schedule.add_noise(z_all.detach().float(), noise, abar)
        eps_c, eps_u = self.predict_cfg(z_t, t_all, ids, ctrls, batch.orig_hw)
        w = schedule.sds_weight(abar, cfg.weighting) * cfg.grad_scale
        scale = cfg.guidance_scale if rgb_scale is None else rgb_scale
        g_rgb = fn(eps_c[:b], eps_u[:b], noise[:b], w[:b], t_all[:b], scale, cfg, self.convention)
        grads = [g_rgb]
        stats = {"weight": w[:b], "t": t}
        if normals is not None:
            fn_n = _GRAD_FNS[method if method in ("sds", "csd", "ssd") else "sds"]
            g_n = fn_n(
                eps_c[b:], eps_u[b:], noise[b:], w[b:], t_all[b:], cfg.normal_guidance_scale, cfg, self.convention
            )
            grads.append(g_n)
            stats["normal_t"] = t_all[b:]
            stats["normal_grad_norm"] = g_n.flatten(1).norm(dim=1)
        stats["grad_norm"] = g_rgb.flatten(1).norm(dim=1)
        return grads, stats.pop("t"), stats, zn
