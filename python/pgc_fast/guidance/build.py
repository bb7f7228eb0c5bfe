"""Assembling a :class:`~pgc_fast.guidance.engine.Guidance`: load the models, check them against the
configuration, apply the exact speed levers and torch.compile, encode the prompts, read the shuffle reference
image and set up VSD — one named function each; :func:`load_guidance` and :func:`build_guidance` compose them.

The configuration is the run configuration's guidance section (:class:`pgc_fast.config.GuidanceConfig`), as is;
what is not guidance configuration (device, weights dtype, seed, run length) comes as arguments.
"""

from __future__ import annotations

import dataclasses
import typing

import torch

from pgc_fast.config.schema import IMAGE_FORMATS, GuidanceConfig, GuidanceLoss, Precision, resolved_model
from pgc_fast.guidance import conditions
from pgc_fast.guidance.engine import Guidance
from pgc_fast.guidance.methods import vsd
from pgc_fast.guidance.models.builtin import ModelBundle
from pgc_fast.guidance.models.fp8 import ConvScope
from pgc_fast.guidance.models.loading import load_models, resolve_dtype
from pgc_fast.guidance.text import TextEmbeddings, build_text_embeddings

LOSSES: tuple[str, ...] = typing.get_args(GuidanceLoss)


def load_guidance(
    cfg: GuidanceConfig, *, device: str | torch.device, dtype: Precision | torch.dtype, seed: int, iters: int
) -> Guidance:
    """Resolve and load the models ``cfg`` names (raising :class:`GuidanceLoadError` before any GPU work if
    weights are missing), then :func:`build_guidance` over them.

    Args:
        cfg: the guidance configuration; ``cfg.model`` None = the family default (:func:`resolved_model`),
            ``cfg.vae`` None = the family default VAE.
        device: where the models run.
        dtype: weights dtype, or a precision name (auto = fp16 on CUDA, fp32 on the CPU; a run passes its
            autocast dtype, see ``train.runtime.resolve_precision``).
        seed: seed of the guidance's noise RNG and of the built-in models' initialisation.
        iters: length of the run (DreamTime, BGT+ and t-range annealing schedules).
    """
    device = torch.device(device)
    wdtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, device)
    models = load_models(
        resolved_model(cfg),
        vae=cfg.vae or "auto",
        controlnets=cfg.controlnets,
        device=device,
        dtype=wdtype,
        cache_dir=cfg.cache_dir,
        token_file=cfg.token_file,
        seed=seed,
    )
    return build_guidance(cfg, models, seed=seed, iters=iters)


def build_guidance(cfg: GuidanceConfig, models: ModelBundle, *, seed: int, iters: int) -> Guidance:
    """A ready :class:`Guidance` over loaded ``models`` (which the speed levers patch in place): checks, prompts
    encoded once, shuffle reference read, speed levers and compile applied, VSD's LoRA attached.

    Args:
        seed: the noise RNG's seed (the reference image's content shuffle uses seed + 1).
        iters: length of the run.
    """
    check_models(cfg, models)
    device = next(models.unet.parameters()).device
    dtype = next(models.unet.parameters()).dtype
    generator = torch.Generator(device).manual_seed(seed)
    text = encode_text(cfg, models, device, dtype)
    resolution = int(cfg.resolution or models.resolution)
    reference = None
    if "shuffle" in models.control_types:
        reference = load_reference(cfg, resolution, device, seed + 1)
    models, vae_channels_last = apply_speed_levers(cfg, models, device)
    models = compile_models(cfg, models, device)
    state = vsd.VSDState(models.unet, cfg, device, dtype) if cfg.loss == "vsd" else None
    return Guidance(
        cfg,
        models,
        text=text,
        generator=generator,
        iters=iters,
        reference=reference,
        vsd=state,
        vae_channels_last=vae_channels_last,
    )


def check_models(cfg: GuidanceConfig, models: ModelBundle) -> None:
    """The checks of a configuration against the loaded models (one clear ValueError each)."""
    if cfg.loss not in LOSSES:
        raise ValueError(f"build_guidance(): cfg.loss must be {'|'.join(LOSSES)}, got {cfg.loss!r}")
    n = len(models.control_types)
    if cfg.control_scales and len(cfg.control_scales) != n:
        raise ValueError(
            f"build_guidance(): control_scales must have one entry per ControlNet ({n}), got {list(cfg.control_scales)}"
        )
    if cfg.pgc_tau is not None and not cfg.pgc_tau >= 0:
        raise ValueError(f"build_guidance(): cfg.pgc_tau must be >= 0 or None (off), got {cfg.pgc_tau}")
    if cfg.fp8 and cfg.loss == "vsd":
        raise ValueError("build_guidance(): cfg.fp8 cannot be combined with loss=vsd (its LoRA trains the UNet)")


def encode_text(cfg: GuidanceConfig, models: ModelBundle, device: torch.device, dtype: torch.dtype) -> TextEmbeddings:
    """The prompt, its view variants and their negatives, encoded once; the encoders then go to the CPU (CUDA)."""
    return build_text_embeddings(
        cfg.text,
        cfg.negative,
        tokenizers=models.tokenizers,
        encoders=models.text_encoders,
        sdxl=models.is_sdxl,
        device=device,
        dtype=dtype,
        suppress_face=cfg.suppress_face,
        zero_empty_negative=cfg.zero_empty_negative,
        offload=device.type == "cuda",
    )


def load_reference(cfg: GuidanceConfig, resolution: int, device: torch.device, seed: int) -> torch.Tensor:
    """The shuffle ControlNet's condition: ``cfg.ref_path`` composited on white, resized to the model's
    resolution and (``cfg.shuffle_reference``) content-shuffled with ``seed``; [1, 3, R, R] in [0, 1]."""
    if not cfg.ref_path:
        raise ValueError("build_guidance(): the shuffle ControlNet needs cfg.ref_path, got None")
    import numpy as np
    from PIL import Image

    img: Image.Image = Image.open(cfg.ref_path, formats=IMAGE_FORMATS)
    if img.mode == "RGBA":  # composite on white, as a render on a white background
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    arr = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0)
    ref = conditions.resize(arr.permute(2, 0, 1)[None].to(device), resolution)
    if cfg.shuffle_reference:
        ref = conditions.content_shuffle(ref, torch.Generator(device).manual_seed(seed))
    return ref.clamp(0, 1)


# The smallest VAE input side at which ``fast_vae``'s levers are applied: where they were measured to pay
# (benches/RESULTS.md, issue 21, H100). At 1024² (SDXL) the VAE encoder fwd+bwd takes 160 ms with them, 372 ms
# without. At 512² (SD 1.5, 4 views) the whole SDS step takes 156.5 ms with them, 135.8 without. At 256² (Zero123)
# it takes 63.7 with them, 41.6 without. The smaller the tensors, the more the levers' extra launches (and, in
# those runs, one host sync per GroupNorm, since removed and not yet re-measured) cost against what they save.
# On the CPU the levers stay on at every size: frozen convolutions keep no input activations.
FAST_VAE_MIN_RESOLUTION = 1024


def vae_levers_pay(resolution: int, device: torch.device) -> bool:
    """Whether ``fast_vae``'s levers are applied to a VAE that sees ``resolution``² images on ``device``."""
    return device.type != "cuda" or resolution >= FAST_VAE_MIN_RESOLUTION


def apply_speed_levers(cfg: GuidanceConfig, models: ModelBundle, device: torch.device) -> tuple[ModelBundle, bool]:
    """The exact speed levers, in place: channels_last (CUDA) and the VAE levers of ``cfg.fast_vae``
    (:mod:`pgc_fast.guidance.models.accel`) where they pay (:func:`vae_levers_pay`).
    Returns the models and whether the VAE wants channels_last inputs."""
    cuda = device.type == "cuda"
    if cfg.channels_last and cuda:
        # NHWC convolutions (cuDNN's fast path for half precision); see benches/RESULTS.md for the effect.
        for m in (models.unet, models.vae, models.controlnet):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    vae_channels_last = cfg.channels_last and cuda
    apply_unet_levers(cfg, models, device)
    if cfg.fast_vae and vae_levers_pay(models.resolution, device):
        from pgc_fast.guidance.models.accel import use_chunked_attention, use_frozen_convs, use_fused_group_norm

        use_chunked_attention(models.vae)
        use_frozen_convs(models.vae)
        if cuda:
            # The Triton GroupNorm makes channels_last pay (PyTorch's NHWC GroupNorm is what made it slow).
            use_fused_group_norm(models.vae)
            models.vae.to(memory_format=torch.channels_last)
            vae_channels_last = True
    return models, vae_channels_last


# What FP8 covers besides the transformers' Linear layers (pgc_fast.guidance.models.fp8.use_fp8). "none": the
# UNet's 1x1 convolutions are few and small (ResNet shortcuts, the ControlNet's zero convolutions, the latter
# outside the compiled blocks, where the layout copies around an FP8 GEMM are not fused) and its 3x3 ones pay an
# im2col; benches/gpu_unet_levers.py measures fp8_1x1 and fp8_all against it (issue 21).
FP8_CONVS: ConvScope = "none"


def apply_unet_levers(cfg: GuidanceConfig, models: ModelBundle, device: torch.device) -> None:
    """The UNet's and ControlNets' levers, in place: the SDPA backend (``cfg.attention``, exact) and FP8 products
    (``cfg.fp8``, lossy; ValueError on a device without FP8 support). Both before any compile."""
    from pgc_fast.guidance.models.accel import use_fp8, use_sdpa_backend

    nets = [m for m in (models.unet, models.controlnet) if m is not None]
    if device.type != "cuda" and cfg.attention not in ("auto", "math"):
        raise ValueError(f"build_guidance(): cfg.attention={cfg.attention} needs a CUDA device, got {device}")
    for m in nets:
        use_sdpa_backend(m, cfg.attention)
    if cfg.fp8:
        from pgc_fast.guidance.models.fp8 import check_fp8_device

        check_fp8_device("build_guidance(): cfg.fp8", device)
        for m in nets:
            use_fp8(m, convs=FP8_CONVS)


def compile_models(cfg: GuidanceConfig, models: ModelBundle, device: torch.device) -> ModelBundle:
    """torch.compile on CUDA only (inductor on the CPU: slow compile, little gain): the VAE encoder with
    ``cfg.compile_vae``; the UNet and ControlNets with ``cfg.compile`` unless VSD (its LoRA changes the UNet),
    per ``cfg.compile_scope`` (``blocks``: in place, ``full``: returned as compiled wrappers)."""
    if device.type != "cuda":
        return models
    from pgc_fast.guidance.models.accel import persistent_compile_cache

    persistent_compile_cache()
    if cfg.compile_vae:
        models.vae.encoder = torch.compile(models.vae.encoder, dynamic=False)
    if not cfg.compile or cfg.loss == "vsd":
        return models
    if cfg.compile_scope == "full":
        controlnet = models.controlnet
        if controlnet is not None:
            controlnet = torch.compile(controlnet, dynamic=False)
        return dataclasses.replace(models, unet=torch.compile(models.unet, dynamic=False), controlnet=controlnet)
    from pgc_fast.guidance.models.accel import compile_blocks

    compile_blocks(models.unet)
    if models.controlnet is not None:
        compile_blocks(models.controlnet)
    return models
