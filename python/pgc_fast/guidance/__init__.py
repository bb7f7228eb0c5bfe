"""Diffusion guidance for PGC-3D: SDXL / SD 1.5 / SD 2.1 (+ ControlNets) score distillation with every loss of
the original (SDS, VSD, BGT+, CSD, SSD, DreamTime, latent mode, normal-SDS, CFG rescale) and pixel-wise
gradient clipping (PGC) on the image input. Spec: reference_spec.md §3 (PGC-3D, arXiv 2310.12474,
https://github.com/fudan-zvg/PGC-3D @14b9653), with the bugs of §8 fixed.

Interface (what the training loop calls)::

    from pgc_fast.guidance import GuidanceConfig, load_guidance, GuidanceLoadError

    guidance = load_guidance(GuidanceConfig(model="sdxl", controlnets=("depth",), text="a panda",
                                            pgc_tau=0.1, iters=1200))        # GuidanceLoadError if weights missing
    for step in range(1, iters + 1):                                         # steps are 1-based
        rgb = render(...)                                  # [B, 3, H, W] float in [0, 1], requires grad
        out = guidance.step(rgb, step=step,
                            azimuth_deg=az, polar_deg=polar,   # [B] (view-dependent prompts; None = plain prompt)
                            c2w=c2w,                          # [B, 4, 4] camera-to-world (VSD camera embedding)
                            depth=z_cam, mask=alpha,          # [B, 1, H, W] (depth ControlNet)
                            normals=None,                     # [B, 3, H, W] in [0, 1] → normal-SDS term
                            scaler=grad_scaler)               # GradScaler or None (PGC threshold τ·S)
        (out.loss + other_losses).backward()                  # or scaler.scale(...).backward()
        log(out.stats, guidance.pgc_stats)                    # device tensors; .item() only when logging

* ``step`` attaches the PGC hook (``pgc_kernels.attach_pgc``, GradScaler-aware) to ``rgb`` (and ``normals``)
  when ``pgc_tau >= 0``: it clips the *total* gradient reaching that tensor, as the original's hook did. Do not
  attach another one.
* ``out.loss``'s gradient w.r.t. the latents is exactly ``out.grad`` (the original's sum convention: per view,
  no 1/B, for every method); its value is 0.5·||grad||²/B (+ BGT+'s RGB MSE).
* Per step: one VAE encode (with grad), one UNet (+ ControlNet) call on [uncond; cond] × all views (× RGB and
  normal maps), the fused ``pgc_kernels.sds_grad`` kernel, no VAE decode (except BGT+'s RGB target), no host
  synchronisation (VSD in fp16 syncs once in its LoRA GradScaler). Text encoders are run once and offloaded.
* Checkpoints: ``guidance.state_dict()`` / ``load_state_dict()`` hold the trainable guidance state (VSD's
  LoRA, camera MLP and optimiser; the noise RNG) — the original never saved its LoRA.
* Inputs should already live on the guidance device (a CPU tensor for the angles costs a copy per step).
* Methods: one file each — :mod:`.sds`, :mod:`.csd`, :mod:`.ssd` (pure gradient functions of the UNet
  outputs), :mod:`.vsd` (LoRA via peft, trained inside ``step``), :mod:`.bgt` (multi-step DDIM target);
  :mod:`.common` holds the pure functions (timesteps, weights, DreamTime, view bins, DDIM, condition images).
* Models (:mod:`.loading`): aliases sdxl (= base 1.0, default), sdxl-0.9, sdxl-turbo, sd15, sd21, sd21-base,
  any hub id or local directory; VAE override (SDXL: madebyollin/sdxl-vae-fp16-fix); ControlNets
  depth|normal|shuffle|tile or 'kind=repo', several → MultiControlNetModel with per-control scales.
  Built-in (:mod:`.builtin`): tiny-sdxl, tiny-sd (tests), sdxl-random, sd15-random (benchmarks).
* Depth ControlNet condition: near = bright (MiDaS-like normalised disparity, background black), which is what
  the depth ControlNets were trained on; ``depth_convention="original"`` reproduces PGC-3D's inverted map.
"""
from __future__ import annotations

from pgc_fast.guidance.config import GuidanceConfig
from pgc_fast.guidance.engine import Guidance, GuidanceOutput, MethodOutput, load_guidance
from pgc_fast.guidance.models.builtin import BUILTIN_MODELS, ModelBundle, build_builtin
from pgc_fast.guidance.models.loading import MODEL_ALIASES, GuidanceLoadError, load_models

__all__ = [
    "BUILTIN_MODELS",
    "MODEL_ALIASES",
    "Guidance",
    "GuidanceConfig",
    "GuidanceLoadError",
    "GuidanceOutput",
    "MethodOutput",
    "ModelBundle",
    "build_builtin",
    "load_guidance",
    "load_models",
]
