"""``GuidanceConfig``: every knob of the diffusion guidance (model, text, loss, timesteps, PGC, ControlNet)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal["sds", "vsd", "bgt", "csd", "ssd"]


@dataclass(frozen=True)
class GuidanceConfig:
    """Configuration of :class:`pgc_fast.guidance.Guidance`. Defaults reproduce PGC-3D's SDXL path (spec §3)
    with its bugs fixed (§8)."""

    # ---- model
    model: str = "sdxl"
    """Model: alias (sdxl, sdxl-1.0, sdxl-0.9, sdxl-turbo, sd15, sd21, sd21-base), built-in (tiny-sdxl, tiny-sd,
    sdxl-random, sd15-random), a hub repo id, or a local diffusers directory."""
    vae: str = "auto"
    """VAE override: repo id or local dir; 'auto' = madebyollin/sdxl-vae-fp16-fix for SDXL, the model's own
    otherwise; 'none' = always the model's own."""
    controlnets: tuple[str, ...] = ()
    """ControlNets: kinds depth|normal|shuffle|tile (default repos per family), or 'kind=repo_or_dir'."""
    control_scales: tuple[float, ...] = ()
    """Conditioning scale per ControlNet (default 1.0 each)."""
    device: str = "cuda"
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    """Weights dtype: auto = bf16 on CUDA, fp32 on CPU."""
    cache_dir: str | None = None
    """Hugging Face cache dir (default: the hub's, i.e. $HF_HUB_CACHE / ~/.cache/huggingface/hub)."""
    token_file: str = "TOKEN"
    """File holding a HF token (read when $HF_TOKEN is unset), as the original's ./TOKEN."""
    resolution: int | None = None
    """Image size fed to the VAE (inputs are bilinearly resized to it); None = the model's native size."""
    seed: int = 0
    channels_last: bool = False
    """Run the UNet, VAE and ControlNets in channels_last (NHWC) memory format on CUDA."""
    fast_vae: bool = True
    """Exact speed levers for the VAE (pgc_fast.guidance.models.accel): GEMM-speed chunked attention for its head-dim-512
    mid-block, frozen convolutions that save no input activations, and on CUDA the Triton GroupNorm+SiLU with
    the VAE in channels_last. SDXL encoder fwd+bwd at 4 × 1024² on an H100: 368 → 167 ms, 23.9 → 9.4 GiB."""
    compile_unet: bool = False
    """torch.compile the UNet and ControlNets (static shapes). Pays the compile time at the first step; not
    combined with VSD (its LoRA adapters change the UNet)."""
    compile_scope: Literal["blocks", "full"] = "blocks"
    """What ``compile_unet`` compiles: ``blocks`` = each ResNet / transformer block (regional compilation:
    blocks of one shape share a graph, so the compile is short), ``full`` = the whole UNet and ControlNet
    (longest compile; see benches/RESULTS.md for both on an H100)."""
    compile_vae: bool = False
    """torch.compile the VAE encoder (fuses its GroupNorm/SiLU passes; the encoder fwd+bwd is the largest
    cost of an SDXL step at 1024²). The first step pays the compile time."""

    # ---- text
    text: str = ""
    negative: str = ""
    dir_text: bool = True
    """View-dependent prompts ('…, front view', …) chosen from the camera's azimuth/polar angle."""
    suppress_face: bool = False
    """Append 'face' to the negative prompt of non-front views."""
    angle_front: float = 90.0
    """Width (degrees) of the front and back azimuth bins, centred on 0 and 180."""
    angle_overhead: float = 30.0
    """Polar angle (degrees from +Y) at or below which a view is 'overhead' (>= 180 - this: 'bottom')."""
    zero_empty_negative: bool | None = None
    """Use zero embeddings for an empty negative prompt (SDXL's force_zeros_for_empty_prompt). None = yes for
    SDXL, no for SD; the original always encoded the empty string (spec §8.5)."""

    # ---- loss
    method: Literal["sds", "vsd", "bgt", "csd", "ssd"] = "sds"
    guidance_scale: float = 100.0
    """CFG scale of the RGB term (in the convention below; pgc 100 = diffusers 101)."""
    guidance_scale_normal: float = 50.0
    """CFG scale of the normal-map SDS term."""
    cfg_convention: Literal["auto", "pgc", "diffusers"] = "auto"
    """pgc: eps_c + s(eps_c - eps_u); diffusers: eps_u + s(eps_c - eps_u); auto = diffusers for VSD, else pgc."""
    cfg_rescale: float = 0.0
    """CFG rescale phi (0 = off; the original used 0.5 when enabled)."""
    weighting: Literal["one_minus_alpha", "sqrt_alpha_one_minus_alpha", "inverse_one_minus_alpha", "uniform"] = (
        "one_minus_alpha")
    """w(t): 1 - abar (default), sqrt(abar)(1 - abar), 1/(1 - abar), or 1 (the original's weight_choice 0/1/2/3)."""
    grad_scale: float = 1.0
    """Multiplier of the latent gradient (the original's grad_scale_sd)."""
    t_range: tuple[float, float] = (0.02, 0.5)
    t_range_end: tuple[float, float] | None = None
    """If set, t_range is annealed linearly to this over ``iters`` steps."""
    dreamtime: bool = False
    """DreamTime deterministic timestep for the RGB term (spec §3.9)."""
    init_time: float = 0.681
    """Largest t (fraction) of the DreamTime prior and the BGT+ schedule."""
    iters: int = 2000
    """Length of the run, for the DreamTime / BGT+ / t-annealing schedules."""
    latent_clamp: float | None = None
    """Element-wise clamp of the latent gradient (the original's grad_clip_latent); None = off."""
    latent_clip: float | None = None
    """Per-latent-pixel L-inf clip of the latent gradient; None = off."""
    latent_mode: bool = False
    """Inputs are 4-channel latents (Latent-NeRF style): resized to the latent size, no VAE."""
    vae_sample: bool = True
    """Encode with a posterior sample (the original) rather than its mean."""
    ssd_m: int = 100
    """SSD: timesteps <= M use the mode-disengaging term."""
    bgt_r: float = 0.25
    """BGT+: denoising stride (fraction of T) of the multi-step target."""
    bgt_end_time: float = 0.25
    """BGT+: final noise level of the sqrt schedule."""
    bgt_rgb_weight: float = 0.1
    """BGT+: weight of the RGB MSE term (needs one VAE decode per step; 0 skips it)."""
    vsd_lora_rank: int = 4
    vsd_lora_lr: float = 1e-4
    vsd_camera_dropout: float = 0.1
    vsd_t_range: tuple[float, float] = (0.0, 1.0)
    """VSD: timestep range of the LoRA's own denoising loss."""

    # ---- PGC
    pgc_tau: float = -1.0
    """PGC threshold on the gradient of the RGB input (>= 0 enables; -O0 uses 0.1)."""
    pgc_variant: Literal["clip", "value", "global", "sigmoid", "soft", "soft_pixel"] = "clip"
    pgc_norm: Literal["linf", "l2"] = "linf"
    pgc_normals: bool = True
    """Also clip the gradient of the normal map fed to normal-SDS."""

    # ---- ControlNet conditions
    depth_convention: Literal["near_bright", "original"] = "near_bright"
    """near_bright: MiDaS-like, what the depth ControlNets were trained on; original: PGC-3D's inverted map."""
    depth_floor: float = 0.1
    """near_bright: the farthest foreground point maps to this value (background = 0)."""
    reference_image: str | None = None
    """Reference image for the shuffle ControlNet."""
    shuffle_reference: bool = True
    """Content-shuffle the reference image (what the shuffle ControlNet was trained on)."""
