"""The run configuration's schema: RunConfig and its frozen sections, and the ONE definition of every
enumeration (Literal), built-in model list and ControlNet list. Imports nothing from pgc_fast.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

UNSUPPORTED_MESSAGE = "not supported yet"


GuidanceFamily = Literal["sd", "sdxl"]


GuidanceLoss = Literal["sds", "vsd", "bgt", "csd", "ssd"]


Zero123Loss = Literal["sds", "bgt"]


CfgConvention = Literal["auto", "pgc", "diffusers"]


CfgForm = Literal["pgc", "diffusers"]
"""A resolved CfgConvention (what ``auto`` becomes for a loss)."""


Weighting = Literal["one_minus_alpha", "sqrt_alpha_one_minus_alpha", "inverse_one_minus_alpha", "uniform"]


PgcVariant = Literal["clip", "value", "global", "sigmoid", "soft", "soft_pixel"]


PgcNorm = Literal["linf", "l2"]


CompileScope = Literal["blocks", "full"]


AttentionBackend = Literal["auto", "cudnn", "flash", "efficient", "math"]


DepthConvention = Literal["near_bright", "original"]


Scheduler = Literal["ddpm", "ddim", "dpm"]


RenderBackend = Literal["auto", "nvdiffrast", "cpu"]


Background = Literal["color", "scenery"]


Shading = Literal["albedo", "lambertian", "random", "normal"]


SdfInit = Literal["fit", "direct"]


Shape = Literal["fixed", "dmtet"]


TextureKind = Literal["field", "uv"]


Material = Literal["albedo", "pbr"]


Tonemap = Literal["srgb", "none"]


Optimizer = Literal["adam", "adamw"]


Precision = Literal["fp32", "auto", "bf16", "fp16"]


Objective = Literal["guidance", "mse"]


Device = Literal["auto", "cpu", "cuda"]


# Built-in model names served by pgc_fast.guidance without a download (pgc_fast.guidance.models.builtin).
BUILTIN_MODELS = ("tiny-sd", "tiny-sdxl", "sd15-random", "sdxl-random", "toy-sd")


# Built-in Zero123 models (pgc_fast.guidance.models.zero123): tiny for tests, full size with random weights for
# benchmarks; and the CLIP image encoder built for tests of the CLIP reference loss.
ZERO123_BUILTINS = ("tiny-zero123", "zero123-random")
CLIP_BUILTINS = ("tiny-clip",)


# Zero123-XL (the original's zero123-xl.ckpt) in the diffusers layout, and the CLIP ViT-B/16 of --guidance_o clip.
ZERO123_ALIASES: dict[str, str] = {"zero123-xl": "ashawkey/zero123-xl-diffusers"}
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch16"


# The hub ids the original would load, with its bug 4 fixed (SDXL defaults to base-1.0, not 0.9).
DEFAULT_MODELS = {
    "sd": "stabilityai/stable-diffusion-2-1-base",
    "sd-controlnet": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}


# Short names for hub models (guidance.model), resolved by pgc_fast.guidance.models.loading.
MODEL_ALIASES: dict[str, str] = {
    "sdxl": DEFAULT_MODELS["sdxl"],
    "sdxl-1.0": DEFAULT_MODELS["sdxl"],
    "sdxl-0.9": "stabilityai/stable-diffusion-xl-base-0.9",
    "sdxl-turbo": "stabilityai/sdxl-turbo",
    "sd15": DEFAULT_MODELS["sd-controlnet"],
    "sd21": "stabilityai/stable-diffusion-2-1",
    "sd21-base": DEFAULT_MODELS["sd"],
}


# ControlNet condition kinds (pgc_fast.guidance.conditions builds one image per kind).
CONTROL_TYPES = ("depth", "normal", "tile", "shuffle")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
"""Pillow formats a user's image (guidance.ref_path, render.bg_image) may be in: plain raster decoders. Other
formats are refused, not tried: Pillow's EPS reader, for one, runs Ghostscript on the file."""


# Default ControlNet repos per (family, kind); the SD 1.5 depth/normal ones are the original's choices. A kind
# without a default for a family needs 'kind=<repo id or dir>' (built-in models make their own ControlNets).
DEFAULT_CONTROLNETS: dict[tuple[str, str], str] = {
    ("sdxl", "depth"): "diffusers/controlnet-depth-sdxl-1.0",
    ("sd", "depth"): "fusing/stable-diffusion-v1-5-controlnet-depth",
    ("sd", "normal"): "fusing/stable-diffusion-v1-5-controlnet-normal",
    ("sd", "shuffle"): "lllyasviel/control_v11e_sd15_shuffle",
    ("sd", "tile"): "lllyasviel/control_v11f1e_sd15_tile",
}


class ConfigError(ValueError):
    """Every problem found by :func:`validate`, one per line in the message (``.problems`` holds the list)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class GuidanceConfig:
    """Diffusion guidance: model, prompt and score-distillation loss (the original's guidance classes (StableDiffusion,
    StableDiffusionXL, SDXLControlNet)). What
    :func:`pgc_fast.guidance.load_guidance` takes, as is."""

    text: str = ""
    """Prompt describing the texture (the original's --text)."""
    negative: str = ""
    """Negative prompt, encoded into the unconditional CFG branch (--negative)."""
    family: GuidanceFamily = "sd"
    """Diffusion model family: sd (SD 1.5 / 2.1) or sdxl."""
    model: str | None = None
    """Hub id, alias (sdxl, sdxl-0.9, sdxl-turbo, sd15, sd21, sd21-base), local directory or built-in name (tiny-sd,
    tiny-sdxl, sd15-random, sdxl-random, toy-sd); None = family default."""
    vae: str | None = None
    """VAE override (hub id or path); None = the family default (SDXL: madebyollin/sdxl-vae-fp16-fix); 'none' = the
    model's own."""
    controlnets: tuple[str, ...] = ()
    """ControlNet condition types (depth, normal, tile, shuffle, or a hub id); empty = no ControlNet."""
    control_scales: tuple[float, ...] = ()
    """Conditioning scale per ControlNet (same length as controlnets)."""
    cache_dir: str | None = None
    """Hugging Face cache directory (None = the hub's: $HF_HUB_CACHE or ~/.cache/huggingface/hub)."""
    token_file: str = "TOKEN"
    """File holding a Hugging Face token, read when $HF_TOKEN is unset (the original's ./TOKEN)."""
    resolution: int | None = None
    """Image size fed to the VAE (inputs are bilinearly resized to it); None = the model's native size."""
    loss: GuidanceLoss = "sds"
    """Score-distillation loss: sds, vsd (ProlificDreamer, SDXL), bgt (HiFA BGT+), csd or ssd."""
    guidance_scale: float = 100.0
    """Classifier-free guidance scale for the RGB loss (--guidance_scale)."""
    normal_guidance_scale: float = 50.0
    """CFG scale for normal-map SDS (shape optimisation only)."""
    cfg_convention: CfgConvention = "auto"
    """CFG form: pgc = eps_c + s(eps_c - eps_u) (the original's SDS/BGT), diffusers = eps_u + s(...); auto = per loss
    as the original."""
    cfg_rescale: float = 0.0
    """CFG rescale factor phi (0 = off; the original's --cfg_rescale uses 0.5)."""
    weighting: Weighting = "one_minus_alpha"
    """SDS weight w(t); one_minus_alpha is the original's (its --weight_choice flag is dead)."""
    grad_scale: float = 1.0
    """Multiplier of the latent gradient (the original's grad_scale_sd)."""
    t_range: tuple[float, float] = (0.02, 0.5)
    """Range of diffusion timesteps sampled, as fractions of the 1000 training steps."""
    t_range_end: tuple[float, float] | None = None
    """If set, t_range is annealed linearly to this over optim.iters steps (None = constant t_range)."""
    dreamtime: bool = False
    """DreamTime deterministic timestep schedule (--dreamtime)."""
    init_time: float = 0.681
    """Largest t (fraction) for the DreamTime and BGT schedules (--init_time)."""
    scheduler: Scheduler = "ddpm"
    """Diffusion scheduler used by BGT denoising and VSD (--scheduler)."""
    latent: bool = False
    """Latent-NeRF mode: the texture outputs 4-channel latents, resized to the latent size, no VAE (--latent)."""
    vae_sample: bool = True
    """Encode with a posterior sample (the original) rather than its mean."""
    rgb_sds: bool = True
    """Apply score distillation to the rendered RGB image (off with --only_normal)."""
    normal_sds: bool = False
    """Apply normal-map SDS (shape optimisation only; the original's default without --no_normal)."""
    dir_text: bool = False
    """View-dependent prompts (front / side / back / overhead / bottom view)."""
    angle_front: float = 90.0
    """Width (degrees) of the front and back azimuth bins of the view-dependent prompts, centred on 0 and 180."""
    angle_overhead: float = 30.0
    """Polar angle (degrees from +Y) at or below which a view is 'overhead' (at or above 180 minus it: 'bottom')."""
    front_azimuth: float = 0.0
    """Azimuth (degrees) the object's front faces, for the view-dependent prompts: 180 swaps the front and back prompts
    (the original's --left, for a reference image facing the other way)."""
    suppress_face: bool = False
    """Append 'face' to the negative prompt for non-front views."""
    zero_empty_negative: bool | None = None
    """Zero embeddings for an empty negative prompt (SDXL's force_zeros_for_empty_prompt); None = yes for SDXL, no for
    SD (the original always encoded the empty string, a bug of the original)."""
    pgc_tau: float | None = None
    """Pixel-wise gradient clipping threshold on the rendered image's gradient (None = off; -O0 sets 0.1)."""
    pgc_variant: PgcVariant = "clip"
    """PGC variant (the original's grad_suppress_type 0..5): clip, value, global, sigmoid, soft, soft_pixel."""
    pgc_norm: PgcNorm = "linf"
    """Per-pixel norm for the clip variants: linf (max over channels, the original) or l2."""
    pgc_normals: bool = True
    """Also clip the gradient of the normal map fed to normal-SDS (when pgc_tau is set)."""
    latent_clamp: float | None = None
    """Element-wise clamp of the latent SDS gradient (--grad_clip_latent; None = off)."""
    latent_clip: float | None = None
    """Per-latent-pixel L-inf clip of the latent SDS gradient (None = off)."""
    ssd_m: int = 100
    """SSD: timesteps <= M use the mode-disengaging term."""
    bgt_r: float = 0.25
    """BGT+: denoising stride (fraction of T) of the multi-step target."""
    bgt_end_time: float = 0.25
    """BGT+: final noise level of the sqrt schedule."""
    bgt_rgb_weight: float = 0.1
    """BGT+: weight of the RGB MSE term (one VAE decode per step; 0 skips it)."""
    vsd_lora_rank: int = 4
    """VSD: rank of the LoRA adapter on the UNet's attention projections."""
    vsd_lora_lr: float = 1e-4
    """VSD: AdamW learning rate of the LoRA and its camera embedding."""
    vsd_camera_dropout: float = 0.1
    """VSD: probability of dropping the camera from the LoRA's denoising loss."""
    vsd_t_range: tuple[float, float] = (0.0, 1.0)
    """VSD: timestep range (fractions) of the LoRA's own denoising loss."""
    depth_convention: DepthConvention = "near_bright"
    """Depth ControlNet condition: near_bright (MiDaS-like, what the depth ControlNets were trained on) or original
    (PGC-3D's inverted map)."""
    depth_floor: float = 0.1
    """near_bright depth condition: the farthest foreground point maps to this value (background = 0)."""
    ref_path: str | None = None
    """Reference image (enables the reference-view MSE and shuffle ControlNet condition)."""
    shuffle_reference: bool = True
    """Content-shuffle the reference image for the shuffle ControlNet (what it was trained on)."""
    lambda_ref: float = 0.1
    """Weight of the reference-view masked MSE."""
    zero123: bool = False
    """Zero123 image guidance (-O3 / --zero123): every view is scored by Zero123 given guidance.ref_path and the
    relative camera; the text prompt (if any) adds SD guidance scaled by grad_scale (-O3: 0.01)."""
    zero123_model: str = "zero123-xl"
    """Zero123 weights: zero123-xl (a hub copy in the diffusers layout), a hub id or local directory in that layout,
    the original's ldm .ckpt / .safetensors file, or a built-in (tiny-zero123, zero123-random)."""
    zero123_config: str | None = None
    """The ldm YAML of a .ckpt zero123_model (None = Zero123's sd-objaverse-finetune-c_concat-256.yaml)."""
    zero123_loss: Zero123Loss = "sds"
    """Zero123 loss: sds or bgt (HiFA BGT+; -O3, as the original's --bgt)."""
    zero123_guidance_scale: float = 3.0
    """Zero123 CFG scale (-O3: 100, the original's default, in its BGT+ pgc form)."""
    zero123_cfg_convention: CfgConvention = "auto"
    """Zero123 CFG form; auto = as the original: pgc for bgt, diffusers for sds."""
    zero123_weight: float = 1.0
    """Multiplier of the Zero123 loss."""
    zero123_double_norm: bool = False
    """Parity switch: reproduce the original's double normalisation of the Zero123 input (the VAE saw 4x - 3)."""
    zero123_rgb_range_bug: bool = False
    """Parity switch: reproduce the original's BGT+ image term, which compared the render in [-1, 1] with the
    decoded target in [0, 1]."""
    zero123_mirrored: bool = False
    """Parity switch: feed Zero123 the original's mirrored views (each render flipped left-right, the reference as
    given) with the same relative cameras, i.e. exactly the original's inputs."""
    clip_reference: float = 0.0
    """Weight of the CLIP reference loss -cos(CLIP(reference-view render), CLIP(reference on white)) (--guidance_o
    clip: 1; 0 = off)."""
    clip_model: str = DEFAULT_CLIP_MODEL
    """CLIP image encoder of that loss: a hub id, local directory or tiny-clip (tests)."""
    lambda_saturation: float = 0.0
    """Weight of the saturation penalty: mean HSV saturation squared, where the mean exceeds 0.5
    (train/regularizers.py)."""
    fast_vae: bool = True
    """Exact VAE speed levers (chunked head-dim-512 attention, frozen convs, Triton GroupNorm+SiLU, channels_last),
    applied where they were measured to pay: on CUDA, VAE inputs of 1024² and more (SDXL; guidance/build.py)."""
    channels_last: bool = False
    """Run the UNet, VAE and ControlNets in channels_last (NHWC) memory format (CUDA only)."""
    compile: bool = True
    """torch.compile the UNet and ControlNets on CUDA (ignored on the CPU and with loss=vsd). With the default blocks
    scope the first
    run on a machine pays ~55 s of compile for SDXL (6 s once inductor's cache is warm) and every step is ~12 %
    faster (H100: 385 → 338 ms per 4-view step); --no-guidance.compile turns it off."""
    compile_scope: CompileScope = "blocks"
    """What --guidance.compile compiles: blocks (regional: each ResNet/transformer block, short compile) or full."""
    compile_vae: bool = False
    """torch.compile the VAE encoder on CUDA (ignored on the CPU); the first step pays the compile time."""
    fp8: bool = False
    """FP8 (e4m3, scaled) matrix products in the UNet and ControlNets (GPUs of compute capability >= 9.0, e.g. H100):
    faster, lossy (its measured error is in benches/RESULTS.md, issue 21); not with loss=vsd."""
    attention: AttentionBackend = "auto"
    """PyTorch SDPA backend of the UNet's and ControlNets' attention (all exact): auto (PyTorch's choice), cudnn,
    flash, efficient or math."""


@dataclass(frozen=True)
class RenderConfig:
    """Rasteriser, cameras, shading and background (the original's nerf/provider.py, rand_poses / circle_poses)."""

    backend: RenderBackend = "auto"
    """Rasteriser: nvdiffrast (CUDA), cpu (pgc_fast.mesh.rasterize), or auto (nvdiffrast when on CUDA and
    importable)."""
    resolution: int = 512
    """Training and validation render resolution H = W (--res_fine)."""
    radius_range: tuple[float, float] = (2.0, 2.5)
    """Camera distance range."""
    polar_range: tuple[float, float] = (45.0, 100.0)
    """Camera polar angle range in degrees from +Y (45 = 45 deg above the horizon, 100 = 10 deg below)."""
    focal_range: tuple[float, float] = (0.7, 1.35)
    """Focal length / H range for the first zoom stage and for validation."""
    focal_range_fine: tuple[float, float] = (1.0, 1.6)
    """Focal length / H range for the last zoom stage."""
    zoom_stages: bool = True
    """Three-stage zoom-in focal schedule as the original (off = --single_stage)."""
    jitter_pose: bool = False
    """Jitter camera centre, target and up vector (--jitter_pose)."""
    uniform_sphere_rate: float = 0.0
    """Probability per step of sampling view directions uniformly on the upper hemisphere."""
    background: Background = "color"
    """Training background: a constant colour or the scenery image (validation/turntable always use the colour)."""
    bg_color: float = 1.0
    """Constant background grey level in [0, 1] (--bg_color)."""
    bg_image: str | None = None
    """Scenery image used when background = scenery; None = the one shipped with pgc-fast
    (render/assets/scenery.png), so runs work from any directory (the original read data/background.png)."""
    shading: Shading = "albedo"
    """Shading during training: albedo (unlit, the fixed-mesh original), lambertian, random (20% albedo, else
    lambertian: the DMTet original) or normal (the normal map (n+1)/2, for fitting a shape to normal images)."""
    albedo_iters: int = 0
    """Training renders use albedo shading for the first albedo_iters steps (--albedo_iters)."""
    antialias: bool = True
    """Antialias silhouette edges."""


@dataclass(frozen=True)
class MeshConfig:
    """The input mesh and what happens to its shape."""

    path: str = ""
    """Input mesh (OBJ, PLY, GLB) (--mesh_path)."""
    allow_external_files: bool = False
    """Let the mesh's mtllib/texture/buffer references leave its folder (absolute paths, .., file: URIs)."""
    canonicalize: bool = False
    """Centre the bounding box and scale max |coord| to 0.8 for training; outputs go back to the input's frame."""
    shape: Shape = "fixed"
    """fixed = texture only (-O2); dmtet = optimise the shape too (-O1 / -O4 without -O2)."""
    tet_res: int = 256
    """DMTet tetrahedral grid resolution, 16-512 (the original: 256): res/2 cubes per axis over [-1, 1]."""
    sdf_init: SdfInit = "fit"
    """DMTet initialisation: fit (the original: the field fits the mesh's signed distance at jittered surface
    samples) or direct (the signed distance at the grid vertices, no fitting)."""
    sdf_init_iters: int = 500
    """DMTet fit initialisation: full-batch Adam steps (the original: 500; fewer on the CPU)."""
    sdf_init_points: int = 1000000
    """DMTet fit initialisation: surface samples, each queried near (N(0, 0.04^2)) and far (N(0, 0.4^2))."""
    lambda_smooth: float = 2e6
    """DMTet normal-consistency weight."""
    lambda_laplacian: float = 0.0
    """DMTet uniform-Laplacian weight (the original had it commented out), in the same window as lambda_smooth."""
    smooth_iters: int = 1000
    """DMTet: smoothing active in the last smooth_iters iterations."""


@dataclass(frozen=True)
class TextureConfig:
    """What is optimised: a hash-grid field (the original) or an explicit UV texture."""

    kind: TextureKind = "field"
    """field = hash-grid + MLP queried at surface points (baked at export); uv = explicit multi-resolution UV
    texture."""
    material: Material = "albedo"
    """albedo = base colour only; pbr = nvdiffrec material (kd, roughness, metallic, normal) lit by an environment
    (--pbr; settings in the pbr section; needs kind = field)."""
    field_levels: int = 16
    """Hash-grid levels of the texture field (the original: 16)."""
    field_log2_table_size: int = 16
    """log2 of the hash-table rows per level (the original: 16)."""
    field_finest_resolution: int = 4096
    """Finest hash-grid resolution (the original: 4096; the coarsest is 16)."""
    uv_resolution: int = 1024
    """Finest UV texture resolution for kind = uv (1024-4096)."""
    uv_levels: int = 4
    """Pyramid levels of the UV texture (coarse structure forms first)."""
    export_resolution: int = 2048
    """Resolution of the exported texture.png (fields are baked at this size)."""
    dilation: int = 8
    """Seam dilation of exported textures, in texels."""
    latent_bake_views: int = 40
    """Latent mode: decoded views the exported texture is baked from (more cover concavities better, each costs a
    VAE decode)."""
    init_from_vertex_colors: bool = False
    """Pre-fit the texture to the mesh's vertex colours when present (--init_texture)."""
    init_iters: int = 500
    """Full-batch steps of the vertex-colour pre-fit."""
    pos_perturb: bool = False
    """Jitter field query positions by U(-1e-3, 1e-3) per axis (the original's biased U[0,2e-3) fixed)."""


@dataclass(frozen=True)
class PbrConfig:
    """PBR material under environment light (texture.material = pbr, the original's --pbr): nvdiffrec's split-sum
    shading (render/shading.py, render/envlight.py)."""

    env_path: str | None = None
    """Environment light: a 2:1 lat-long Radiance .hdr or OpenEXR .exr (--env_path); None = the sky / sun / ground
    pgc-fast generates (render/envlight.py, default_environment)."""
    env_scale: float = 2.0
    """Radiance multiplier of the environment (the original: 2)."""
    env_resolution: int = 512
    """Cube-map face size the environment is resampled to: a power of two in [64, 2048] (the original: 512). Its
    prefiltering is once per environment and machine (the levels are cached, render/envlight.py): 10 min at 512 on
    the shared 2-core CPU VM, a few seconds at 64."""
    learn_light: bool = False
    """Optimise the environment light too, at lr_texture (lr_texture / 10 with DMTet) (--learn_light; the original
    froze it although it sat in the optimiser)."""
    tonemap: Tonemap = "srgb"
    """What the diffusion model sees: srgb = linear radiance clamped to [0, 1] and sRGB-encoded (the default: the
    models were trained on sRGB images); none = linear radiance as is (the original, for parity)."""
    kd_range: tuple[float, float] = (0.03, 0.97)
    """Range of the base colour kd (the original: [0.03, 0.97])."""
    ks_min: tuple[float, float, float] = (0.0, 0.1, 0.0)
    """Lower bounds of (occlusion, roughness, metallic) (the original's --ks_min)."""
    ks_max: tuple[float, float, float] = (0.0, 0.98, 0.0)
    """Upper bounds of (occlusion, roughness, metallic) (the original's --ks_max: occlusion, metallic pinned to 0)."""
    perturbed_normal: bool = True
    """Learn a tangent-space normal perturbation, exported as a normal map (off: the original's --no_perturbed_nrm)."""
    lambda_kd_smooth: float = 0.03
    """Weight of the kd smoothness regulariser, ramped in over the first tenth of the steps (the original: 0.03)."""


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation loop (the original's nerf/utils.py, Trainer)."""

    iters: int = 2000
    """Optimisation steps (--iters)."""
    batch_size: int = 4
    """Views rendered per step and per GPU (--bs)."""
    lr_geometry: float = 1e-5
    """Geometry learning rate (--lr_fine[0]); hash grids get grid_lr_scale times this."""
    lr_texture: float = 1e-3
    """Texture learning rate (--lr_fine[1]); hash grids and UV pyramids get grid_lr_scale times this."""
    grid_lr_scale: float = 10.0
    """Learning-rate multiplier for hash-grid / UV-texture parameter groups (the original's x10)."""
    optimizer: Optimizer = "adam"
    """adam = Adam(0.9, 0.99, eps 1e-15) as the original; adamw adds weight decay."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    eps: float = 1e-15
    """Adam epsilon."""
    weight_decay: float = 0.01
    """Weight decay for adamw."""
    precision: Precision = "fp32"
    """Autocast precision: fp32, auto (fp16 + GradScaler on CUDA as the original, fp32 on the CPU), bf16 or fp16."""
    grad_clip: float | None = None
    """Clip parameter gradients element-wise after unscaling (--grad_clip; None = off)."""
    objective: Objective = "guidance"
    """Loss: guidance (score distillation) or mse (to target images given to run(); used by tests)."""
    seed: int = 0
    """Random seed for cameras, noise and initialisation."""


@dataclass(frozen=True)
class OutputConfig:
    """Where and what to write."""

    workspace: str = "workspace"
    """Run directory (the original prefixes it with exp/; see root)."""
    root: str = "exp"
    """Directory the workspace lives under ('' = use workspace as given)."""
    force: bool = False
    """Overwrite an existing workspace (not needed for one without a checkpoint: it holds nothing to lose)."""
    resume: bool = False
    """Continue from the workspace's last intact checkpoint exactly as if never stopped (the workspace may have
    been moved; a larger optim.iters extends the run; no checkpoint yet: start the run)."""
    val_every: int = 200
    """Write a validation image every N steps (0 = only at the end)."""
    val_resolution: int | None = None
    """Validation image resolution (None = render.resolution, the original's; the same view and field of view)."""
    ckpt_every: int = 200
    """Write a checkpoint every N steps (0 = only at the end)."""
    save_mesh: bool = True
    """Export mesh.obj/mtl, texture.png and mesh.glb."""
    turntable_frames: int = 100
    """Frames of the turntable video (0 = none)."""
    turntable_resolution: int = 512
    """Turntable render resolution."""
    fps: int = 25
    """Turntable frame rate."""
    report: bool = True
    """Write report.html."""


@dataclass(frozen=True)
class RuntimeConfig:
    """Devices."""

    device: Device = "auto"
    """cpu, cuda, or auto (cuda when available)."""
    gpus: str = "0"
    """Comma-separated CUDA device ids (the original's --gpus). n > 1 ids: `pgc-fast generate` relaunches itself
    through torchrun as n processes (CUDA_VISIBLE_DEVICES = these ids), each rendering batch_size views; under
    torchrun directly the process uses cuda:LOCAL_RANK."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms (bit-reproducible CUDA runs, slower); CPU runs are deterministic anyway."""


@dataclass(frozen=True)
class RunConfig:
    """A complete pgc-fast run."""

    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    """Diffusion guidance."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Rendering and cameras."""
    mesh: MeshConfig = field(default_factory=MeshConfig)
    """Input mesh."""
    texture: TextureConfig = field(default_factory=TextureConfig)
    """Texture representation."""
    pbr: PbrConfig = field(default_factory=PbrConfig)
    """PBR material and environment light."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimisation loop."""
    output: OutputConfig = field(default_factory=OutputConfig)
    """Outputs."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Devices."""

    @property
    def workspace_path(self) -> str:
        """The run directory: root/workspace (or workspace alone when root is empty)."""
        if self.output.root and not os.path.isabs(self.output.workspace):
            return os.path.join(self.output.root, self.output.workspace)
        return self.output.workspace

    @property
    def n_gpus(self) -> int:
        """Number of entries in runtime.gpus."""
        return len([g for g in self.runtime.gpus.split(",") if g.strip()])

    @property
    def views_per_step(self) -> int:
        """Views rendered per optimisation step by one process (batch_size). A job of n processes (torchrun,
        or --gpus with n ids) renders n x this per step, as the original's DDP."""
        return self.optim.batch_size


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))


def override(cfg: RunConfig, **dotted: Any) -> RunConfig:
    """Return a copy of ``cfg`` with ``section.field`` (or ``section__field``) values replaced.

    >>> override(RunConfig(), **{"optim.iters": 10}).optim.iters
    10
    """
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in dotted.items():
        sec, _, name = key.replace("__", ".").partition(".")
        if sec not in SECTIONS or not name:
            raise KeyError(f"override(): unknown config key {key!r} (sections: {', '.join(SECTIONS)})")
        sub = getattr(cfg, sec)
        if name not in {f.name for f in dataclasses.fields(sub)}:
            raise KeyError(f"override(): {sec} has no field {name!r}")
        by_section.setdefault(sec, {})[name] = value
    return dataclasses.replace(
        cfg, **{sec: dataclasses.replace(getattr(cfg, sec), **vals) for sec, vals in by_section.items()}
    )


def to_dict(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Plain nested dict (tuples as lists) for YAML/JSON."""

    def conv(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return {s: {k: conv(v) for k, v in dataclasses.asdict(getattr(cfg, s)).items()} for s in SECTIONS}


def from_dict(d: dict[str, dict[str, Any]]) -> RunConfig:
    """Inverse of :func:`to_dict`; unknown sections/keys raise ConfigError (all of them at once)."""
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for sec, vals in d.items():
        if sec not in SECTIONS:
            problems.append(f"unknown section {sec!r}")
            continue
        cls = type(getattr(RunConfig(), sec))
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        fixed = {}
        for k, v in (vals or {}).items():
            if k not in names:
                problems.append(f"{sec}: unknown key {k!r}")
                continue
            if isinstance(v, list) and typing.get_origin(hints[k]) in (tuple, typing.Union) or isinstance(v, list):
                v = tuple(v)
            fixed[k] = v
        kwargs[sec] = cls(**fixed)
    if problems:
        raise ConfigError(problems)
    return RunConfig(**kwargs)


def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstrings of a config dataclass's fields (attribute docstrings, as tyro reads them)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for a, b in zip(body, body[1:], strict=False):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name):
            if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                docs[a.target.id] = b.value.value.strip()
    return docs


def resolved_model(g: GuidanceConfig) -> str:
    """The model the guidance loads: ``g.model`` or the family default (SD + ControlNet = SD 1.5, as the original)."""
    if g.model:
        return g.model
    if g.family == "sdxl":
        return DEFAULT_MODELS["sdxl"]
    return DEFAULT_MODELS["sd-controlnet"] if g.controlnets else DEFAULT_MODELS["sd"]
