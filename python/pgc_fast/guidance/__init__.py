"""Diffusion guidance for PGC-3D: SDXL / SD 1.5 / SD 2.1 (+ ControlNets) score distillation with every loss of
the original (SDS, VSD, BGT+, CSD, SSD, DreamTime, latent mode, normal-SDS, CFG rescale) and pixel-wise
gradient clipping (PGC) on the image input. Spec: the original's guidance classes (StableDiffusion, StableDiffusionXL,
SDXLControlNet) (PGC-3D, arXiv 2310.12474,
https://github.com/fudan-zvg/PGC-3D @14b9653), with its bugs fixed (each noted where it is fixed).

Interface (what the training loop calls)::

    from pgc_fast.config import GuidanceConfig              # the run configuration's guidance section, as is
    from pgc_fast.guidance import load_guidance, GuidanceLoadError

    cfg = GuidanceConfig(model="sdxl", controlnets=("depth",), control_scales=(1.0,), text="a panda", pgc_tau=0.1)
    guidance = load_guidance(cfg, device="cuda", dtype="auto",  # weights dtype or a precision name (auto = fp16)
                             seed=0, iters=1200)             # GuidanceLoadError if weights are missing
    for step in range(1, iters + 1):                         # steps are 1-based
        rgb = render(...)                                  # [B, 3, H, W] float in [0, 1], requires grad
        out = guidance.step(rgb, step=step,
                            azimuth_deg=az, polar_deg=polar,   # [B] (view-dependent prompts; None = plain prompt)
                            c2w=c2w,                          # [B, 4, 4] camera-to-world (VSD camera embedding)
                            depth=z_cam, mask=alpha,          # [B, 1, H, W] (depth ControlNet)
                            normals=None,                     # [B, 3, H, W] in [0, 1] → normal-SDS term (the only
                                                              # one when cfg.rgb_sds is off: --only_normal)
                            surface_normals=n_world,          # [B, 3, H, W] unit world normals (normal ControlNet)
                            scaler=grad_scaler)               # GradScaler or None (PGC threshold τ·S)
        (out.loss + other_losses).backward()                  # or scaler.scale(...).backward()
        log(out.stats, guidance.pgc_stats)                    # device tensors; .item() only when logging

* ``step`` attaches the PGC hook (``pgc_kernels.attach_pgc``, GradScaler-aware) to ``rgb`` (and ``normals``)
  when ``pgc_tau`` is set: it clips the *total* gradient reaching that tensor, as the original's hook did. Do not
  attach another one.
* ``out.loss``'s gradient w.r.t. the latents is exactly ``out.grad`` (the original's sum convention: per view,
  no 1/B, for every method); its value is 0.5·||grad||²/B (+ BGT+'s RGB MSE).
* Per step: one VAE encode (with grad), one UNet (+ ControlNet) call on [uncond; cond] × all views (× RGB and
  normal maps), the fused ``pgc_kernels.sds_grad`` kernel, no VAE decode (except BGT+'s RGB target), no host
  synchronisation (VSD in fp16 syncs once in its LoRA GradScaler). Text encoders are run once and offloaded.
* Checkpoints: ``guidance.state_dict()`` / ``load_state_dict()`` hold the trainable guidance state (VSD's
  LoRA, camera MLP and optimiser; the noise RNG) — the original never saved its LoRA. Tensors, numbers, strings
  and containers only: checkpoints store them as safetensors + JSON (``pgc_fast.train.state_file``), no pickle.
* Inputs should already live on the guidance device (a CPU tensor for the angles costs a copy per step).
* Assembly (:mod:`.build`): ``load_guidance`` = ``load_models`` + ``build_guidance``; the latter composes
  ``check_models``, ``encode_text``, ``load_reference``, ``apply_speed_levers``, ``compile_models`` (CUDA
  only) and VSD's ``VSDState``, then ``Guidance(...)`` just stores the parts. Over models already in memory
  (tests, benchmarks): ``build_guidance(cfg, build_builtin("tiny-sd"), seed=0, iters=100)``.
* Methods: one file each — :mod:`.methods.sds`, :mod:`.methods.csd`, :mod:`.methods.ssd` (pure gradient
  functions of the UNet outputs), :mod:`.methods.vsd` (LoRA via peft, trained inside ``step``),
  :mod:`.methods.bgt` (multi-step DDIM target); :mod:`.schedule` (timesteps, weights, DreamTime, DDIM),
  :mod:`.prompts` (the one view-bin function, view prompts), :mod:`.conditions` (ControlNet condition images).
* Models (:mod:`.models.loading`): aliases sdxl (= base 1.0), sdxl-0.9, sdxl-turbo, sd15, sd21, sd21-base, any
  hub id or local directory (``model=None``: the family default); VAE override (SDXL:
  madebyollin/sdxl-vae-fp16-fix); ControlNets depth|normal|shuffle|tile or 'kind=repo', several →
  MultiControlNetModel with per-control scales. Built-in (:mod:`.models.builtin`): tiny-sdxl, tiny-sd (tests),
  sdxl-random, sd15-random (benchmarks), toy-sd (a trained toy prior).
* Image guidance (:mod:`.zero123`, ``-O3``): ``load_image_guidance(cfg, ..., reference_position=)`` → an
  :class:`ImageGuidance` with the same ``step``: Zero123 (:mod:`.models.zero123`: diffusers layout, the original's
  ldm checkpoint through :mod:`.models.ldm_convert`, built-ins tiny-zero123 and zero123-random;
  :mod:`.methods.zero123`: relative camera, SDS, BGT+) on every view plus the text guidance scaled by
  ``grad_scale``. The CLIP reference loss (``--guidance_o clip``): :class:`.reference.ClipSimilarity`.
* Depth ControlNet condition: near = bright (MiDaS-like normalised disparity, background black), which is what
  the depth ControlNets were trained on; ``depth_convention="original"`` reproduces PGC-3D's inverted map.
"""

from __future__ import annotations

from pgc_fast.guidance.build import build_guidance, load_guidance
from pgc_fast.guidance.engine import Guidance, GuidanceOutput, MethodOutput
from pgc_fast.guidance.models.builtin import ModelBundle, build_builtin
from pgc_fast.guidance.models.loading import MODEL_ALIASES, GuidanceLoadError, load_models, resolve_dtype
from pgc_fast.guidance.models.zero123 import Zero123Bundle, build_zero123_builtin, load_zero123
from pgc_fast.guidance.zero123 import ImageGuidance, Zero123Guidance, build_zero123_guidance, load_image_guidance

__all__ = [
    "MODEL_ALIASES",
    "Guidance",
    "GuidanceLoadError",
    "GuidanceOutput",
    "ImageGuidance",
    "MethodOutput",
    "ModelBundle",
    "Zero123Bundle",
    "Zero123Guidance",
    "build_builtin",
    "build_guidance",
    "build_zero123_builtin",
    "build_zero123_guidance",
    "load_guidance",
    "load_image_guidance",
    "load_models",
    "load_zero123",
    "resolve_dtype",
]
