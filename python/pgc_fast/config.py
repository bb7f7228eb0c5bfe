"""One typed, frozen configuration tree for a pgc-fast run, named presets, and ``validate``.

The tree mirrors the pipeline: ``guidance`` (what turns renders into gradients), ``render`` (cameras and the
rasteriser), ``mesh`` (the input), ``texture`` (what is optimised), ``optim`` (the loop), ``output`` (the
workspace) and ``runtime`` (devices). Every field carries a one-line docstring (the CLI turns them into
``--help``) and every enumeration is a ``Literal``.

The original PGC-3D (fudan-zvg/PGC-3D @14b9653, reference_spec.md §1) configures itself with ``-O0 … -O4``
flags plus knock-on rules; :func:`pgc_fast.cli.original_to_config` reproduces those rules exactly and maps the
result onto this tree, and :data:`PRESETS` holds the same combinations under readable names.

``validate(cfg)`` runs once, collects *every* problem and raises one :class:`ConfigError`; nothing here mutates a
config after construction (use :func:`dataclasses.replace` or :func:`override`).
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ConfigError",
    "GuidanceConfig",
    "RenderConfig",
    "MeshConfig",
    "TextureConfig",
    "OptimConfig",
    "OutputConfig",
    "RuntimeConfig",
    "RunConfig",
    "PRESETS",
    "validate",
    "override",
    "to_dict",
    "from_dict",
    "resolved_model",
    "UNSUPPORTED_MESSAGE",
]

UNSUPPORTED_MESSAGE = "not supported yet"

GuidanceFamily = Literal["sd", "sdxl"]
GuidanceLoss = Literal["sds", "vsd", "bgt", "csd", "ssd"]
CfgConvention = Literal["auto", "pgc", "diffusers"]
Weighting = Literal["one_minus_alpha", "sqrt_alpha_one_minus_alpha", "inverse_one_minus_alpha", "uniform"]
PgcVariant = Literal["clip", "value", "global", "sigmoid", "soft", "soft_pixel"]
PgcNorm = Literal["linf", "l2"]
Scheduler = Literal["ddpm", "ddim", "dpm"]
RenderBackend = Literal["auto", "nvdiffrast", "cpu"]
Background = Literal["color", "scenery"]
Shading = Literal["albedo", "lambertian", "random"]
Shape = Literal["fixed", "dmtet"]
TextureKind = Literal["field", "uv"]
Material = Literal["albedo", "pbr"]
Optimizer = Literal["adam", "adamw"]
Precision = Literal["fp32", "auto", "bf16", "fp16"]
Objective = Literal["guidance", "mse"]
Device = Literal["auto", "cpu", "cuda"]

# Built-in model names served by pgc_fast.guidance without a download.
BUILTIN_MODELS = ("tiny-sd", "tiny-sdxl", "sd15-random", "sdxl-random", "toy-sd")
# The hub ids the original would load, with its bug 4 fixed (SDXL defaults to base-1.0, not 0.9).
DEFAULT_MODELS = {
    "sd": "stabilityai/stable-diffusion-2-1-base",
    "sd-controlnet": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
CONTROL_TYPES = ("depth", "normal", "tile", "shuffle")


class ConfigError(ValueError):
    """Every problem found by :func:`validate`, one per line in the message (``.problems`` holds the list)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class GuidanceConfig:
    """Diffusion guidance: model, prompt and score-distillation loss (reference_spec.md §3)."""

    text: str = ""
    """Prompt describing the texture (the original's --text)."""
    negative: str = ""
    """Negative prompt, encoded into the unconditional CFG branch (--negative)."""
    family: GuidanceFamily = "sd"
    """Diffusion model family: sd (SD 1.5 / 2.1) or sdxl."""
    model: str | None = None
    """Hub id, local directory or built-in name (tiny-sd, tiny-sdxl, sd15-random, sdxl-random, toy-sd); None = family default."""
    vae: str | None = None
    """VAE override (hub id or path); None = the family default (SDXL: madebyollin/sdxl-vae-fp16-fix)."""
    controlnets: tuple[str, ...] = ()
    """ControlNet condition types (depth, normal, tile, shuffle, or a hub id); empty = no ControlNet."""
    control_scales: tuple[float, ...] = ()
    """Conditioning scale per ControlNet (same length as controlnets)."""
    loss: GuidanceLoss = "sds"
    """Score-distillation loss: sds, vsd (ProlificDreamer, SDXL), bgt (HiFA BGT+), csd or ssd."""
    guidance_scale: float = 100.0
    """Classifier-free guidance scale for the RGB loss (--guidance_scale)."""
    normal_guidance_scale: float = 50.0
    """CFG scale for normal-map SDS (shape optimisation only)."""
    cfg_convention: CfgConvention = "auto"
    """CFG form: pgc = eps_c + s(eps_c - eps_u) (the original's SDS/BGT), diffusers = eps_u + s(...); auto = per loss as the original."""
    cfg_rescale: float = 0.0
    """CFG rescale factor phi (0 = off; the original's --cfg_rescale uses 0.5)."""
    weighting: Weighting = "one_minus_alpha"
    """SDS weight w(t); one_minus_alpha is the original's (its --weight_choice flag is dead)."""
    t_range: tuple[float, float] = (0.02, 0.5)
    """Range of diffusion timesteps sampled, as fractions of the 1000 training steps."""
    dreamtime: bool = False
    """DreamTime deterministic timestep schedule (--dreamtime)."""
    init_time: float = 0.681
    """Largest t (fraction) for the DreamTime and BGT schedules (--init_time)."""
    scheduler: Scheduler = "ddpm"
    """Diffusion scheduler used by BGT denoising and VSD (--scheduler)."""
    latent: bool = False
    """Latent-NeRF mode: the texture outputs 4-channel latents (--latent)."""
    rgb_sds: bool = True
    """Apply score distillation to the rendered RGB image (off with --only_normal)."""
    normal_sds: bool = False
    """Apply normal-map SDS (shape optimisation only; the original's default without --no_normal)."""
    dir_text: bool = False
    """View-dependent prompts (front / side / back / overhead / bottom view)."""
    suppress_face: bool = False
    """Append 'face' to the negative prompt for non-front views."""
    pgc_tau: float | None = None
    """Pixel-wise gradient clipping threshold on the rendered image's gradient (None = off; -O0 sets 0.1)."""
    pgc_variant: PgcVariant = "clip"
    """PGC variant (the original's grad_suppress_type 0..5): clip, value, global, sigmoid, soft, soft_pixel."""
    pgc_norm: PgcNorm = "linf"
    """Per-pixel norm for the clip variants: linf (max over channels, the original) or l2."""
    latent_clamp: float | None = None
    """Element-wise clamp of the latent SDS gradient (--grad_clip_latent; None = off)."""
    ref_path: str | None = None
    """Reference image (enables the reference-view MSE and shuffle ControlNet condition)."""
    lambda_ref: float = 0.1
    """Weight of the reference-view masked MSE."""
    zero123: bool = False
    """Zero123-XL image guidance (-O3 / --zero123)."""
    lambda_saturation: float = 0.0
    """Weight of the saturation penalty."""
    fast_vae: bool = True
    """Exact VAE speed levers (chunked head-dim-512 attention, frozen convs, Triton GroupNorm+SiLU, channels_last)."""
    compile: bool = True
    """torch.compile the UNet and ControlNets on CUDA (ignored on the CPU). With the default blocks scope the first
    run on a machine pays ~55 s of compile for SDXL (6 s once inductor's cache is warm) and every step is ~12 %
    faster (H100: 385 → 338 ms per 4-view step); --no-guidance.compile turns it off."""
    compile_scope: Literal["blocks", "full"] = "blocks"
    """What --guidance.compile compiles: blocks (regional: each ResNet/transformer block, short compile) or full."""


@dataclass(frozen=True)
class RenderConfig:
    """Rasteriser, cameras, shading and background (reference_spec.md §4.5–4.7)."""

    backend: RenderBackend = "auto"
    """Rasteriser: nvdiffrast (CUDA), cpu (pgc_fast.mesh.rasterize), or auto (nvdiffrast when on CUDA and importable)."""
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
    bg_image: str = "data/background.png"
    """Scenery image used when background = scenery."""
    shading: Shading = "albedo"
    """Shading during training: albedo (unlit, the fixed-mesh original), lambertian, or random (20% albedo)."""
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
    """DMTet tetrahedral grid resolution."""
    lambda_smooth: float = 2e6
    """DMTet normal-consistency weight."""
    smooth_iters: int = 1000
    """DMTet: smoothing active in the last smooth_iters iterations."""


@dataclass(frozen=True)
class TextureConfig:
    """What is optimised: a hash-grid field (the original) or an explicit UV texture."""

    kind: TextureKind = "field"
    """field = hash-grid + MLP queried at surface points (baked at export); uv = explicit multi-resolution UV texture."""
    material: Material = "albedo"
    """albedo = base colour only; pbr = nvdiffrec material (kd, roughness, metallic, normal)."""
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
    init_from_vertex_colors: bool = False
    """Pre-fit the texture to the mesh's vertex colours when present (--init_texture)."""
    init_iters: int = 500
    """Full-batch steps of the vertex-colour pre-fit."""
    pos_perturb: bool = False
    """Jitter field query positions by U(-1e-3, 1e-3) per axis (the original's biased U[0,2e-3) fixed)."""


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation loop (reference_spec.md §5)."""

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
    """Autocast precision: fp32, auto (bf16 where supported, else fp16 + GradScaler), bf16 or fp16."""
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
    """Overwrite an existing workspace."""
    resume: bool = False
    """Continue from the workspace's last checkpoint exactly as if never stopped."""
    val_every: int = 200
    """Write a validation image every N steps (0 = only at the end)."""
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


# --------------------------------------------------------------------------------------------- helpers


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
    for a, b in zip(body, body[1:]):
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


def _check_literal(problems: list[str], where: str, value: Any, hint: Any) -> None:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal and value not in args:
        problems.append(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")


# --------------------------------------------------------------------------------------------- validate


def unsupported_features(cfg: RunConfig) -> list[str]:
    """Features of the original that belong to later work, each as a clear 'not supported yet' sentence."""
    out = []
    if cfg.mesh.shape == "dmtet":
        out.append(
            "mesh.shape=dmtet (DMTet shape optimisation: -O1, or -O4 without -O2) is "
            f"{UNSUPPORTED_MESSAGE}; add -O2 (fixed mesh, text-to-texture)"
        )
    if cfg.texture.material == "pbr":
        out.append(f"texture.material=pbr (--pbr, nvdiffrec PBR material) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.zero123:
        out.append(f"guidance.zero123 (-O3 / --zero123, Zero123 image guidance) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.latent:
        out.append(f"guidance.latent (--latent, Latent-NeRF texture) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.lambda_saturation:
        out.append(f"guidance.lambda_saturation (saturation penalty) is {UNSUPPORTED_MESSAGE}")
    if cfg.guidance.normal_sds and cfg.mesh.shape == "fixed":
        out.append(
            f"guidance.normal_sds (normal-map SDS) only makes sense with shape optimisation, which is {UNSUPPORTED_MESSAGE}"
        )
    return out


def validate(cfg: RunConfig, *, check_files: bool = True) -> RunConfig:
    """Check ``cfg``; collect every problem and raise one :class:`ConfigError`. Returns ``cfg`` unchanged.

    Args:
        cfg: the configuration.
        check_files: also check that input files (mesh, reference image, scenery) exist.
    """
    p: list[str] = list(unsupported_features(cfg))
    for sec in SECTIONS:
        sub = getattr(cfg, sec)
        hints = typing.get_type_hints(type(sub))
        for f in dataclasses.fields(sub):
            _check_literal(p, f"{sec}.{f.name}", getattr(sub, f.name), hints[f.name])
    g, r, m, t, o, out = cfg.guidance, cfg.render, cfg.mesh, cfg.texture, cfg.optim, cfg.output

    if o.objective == "guidance":
        if not g.text.strip():
            p.append("guidance.text (--text) must be a non-empty prompt")
        if not (g.rgb_sds or g.normal_sds):
            p.append("guidance: rgb_sds and normal_sds are both off, nothing would be optimised")
    if g.loss == "vsd" and g.family != "sdxl":
        p.append("guidance.loss=vsd needs the sdxl family (the original: VSD is SDXL-only; add -O4)")
    if g.loss == "vsd" and g.controlnets:
        p.append("guidance.loss=vsd cannot be combined with ControlNets")
    for c in g.controlnets:
        if c not in CONTROL_TYPES and "/" not in c and not os.path.isdir(c):
            p.append(f"guidance.controlnets: {c!r} is not one of {', '.join(CONTROL_TYPES)}, a hub id or a directory")
    if g.controlnets and len(g.control_scales) != len(g.controlnets):
        p.append(
            f"guidance.control_scales must have one entry per ControlNet ({len(g.controlnets)}), got {len(g.control_scales)}"
        )
    if "shuffle" in g.controlnets and not g.ref_path:
        p.append("guidance.controlnets includes shuffle, which needs guidance.ref_path (--ref_path)")
    if g.guidance_scale < 0:
        p.append(f"guidance.guidance_scale must be >= 0, got {g.guidance_scale}")
    if not 0.0 <= g.cfg_rescale <= 1.0:
        p.append(f"guidance.cfg_rescale must be in [0, 1], got {g.cfg_rescale}")
    lo, hi = g.t_range
    if not 0.0 < lo < hi <= 1.0:
        p.append(f"guidance.t_range must satisfy 0 < lo < hi <= 1, got {g.t_range}")
    if g.pgc_tau is not None and g.pgc_tau < 0:
        p.append(f"guidance.pgc_tau must be >= 0 or None, got {g.pgc_tau}")
    if g.latent_clamp is not None and g.latent_clamp < 0:
        p.append(f"guidance.latent_clamp must be >= 0 or None, got {g.latent_clamp}")
    if g.latent and t.kind == "uv":
        p.append("guidance.latent needs texture.kind=field (the 4-channel latent texture is a field)")

    if r.resolution < 8 or r.resolution > 4096:
        p.append(f"render.resolution must be in [8, 4096], got {r.resolution}")
    for name in ("radius_range", "polar_range", "focal_range", "focal_range_fine"):
        a, b = getattr(r, name)
        if not (0 < a <= b):
            p.append(f"render.{name} must satisfy 0 < lo <= hi, got {(a, b)}")
    if not 0.0 <= r.bg_color <= 1.0:
        p.append(f"render.bg_color must be in [0, 1], got {r.bg_color}")
    if not 0.0 <= r.uniform_sphere_rate <= 1.0:
        p.append(f"render.uniform_sphere_rate must be in [0, 1], got {r.uniform_sphere_rate}")

    if not m.path:
        p.append("mesh.path (--mesh_path) is required")
    elif check_files and not os.path.isfile(m.path):
        p.append(f"mesh.path: no such file {m.path!r}")
    if check_files and g.ref_path and not os.path.exists(g.ref_path):
        p.append(f"guidance.ref_path: no such file or directory {g.ref_path!r}")
    if check_files and r.background == "scenery" and not os.path.isfile(r.bg_image):
        p.append(f"render.bg_image: no such file {r.bg_image!r} (needed by render.background=scenery)")

    if t.kind == "uv" and not 16 <= t.uv_resolution <= 8192:
        p.append(f"texture.uv_resolution must be in [16, 8192], got {t.uv_resolution}")
    if t.uv_levels < 1 or (t.kind == "uv" and t.uv_resolution >> (t.uv_levels - 1) < 4):
        p.append(f"texture.uv_levels must be >= 1 and leave the coarsest level >= 4 texels, got {t.uv_levels}")
    if not 16 <= t.export_resolution <= 8192:
        p.append(f"texture.export_resolution must be in [16, 8192], got {t.export_resolution}")
    if not 1 <= t.field_levels <= 32 or not 8 <= t.field_log2_table_size <= 24 or t.field_finest_resolution < 16:
        p.append("texture.field_levels must be in [1, 32], field_log2_table_size in [8, 24], field_finest_resolution >= 16")
    if t.dilation < 0:
        p.append(f"texture.dilation must be >= 0, got {t.dilation}")

    if o.iters < 1:
        p.append(f"optim.iters (--iters) must be >= 1, got {o.iters}")
    if o.batch_size < 1:
        p.append(f"optim.batch_size (--bs) must be >= 1, got {o.batch_size}")
    if o.lr_texture <= 0 or o.lr_geometry < 0:
        p.append(f"optim learning rates must be positive, got lr_texture={o.lr_texture}, lr_geometry={o.lr_geometry}")
    if not (0 <= o.betas[0] < 1 and 0 <= o.betas[1] < 1):
        p.append(f"optim.betas must be in [0, 1), got {o.betas}")
    if o.grad_clip is not None and o.grad_clip < 0:
        p.append(f"optim.grad_clip must be >= 0 or None, got {o.grad_clip}")

    if not out.workspace:
        p.append("output.workspace (--workspace) must not be empty")
    if out.val_every < 0 or out.ckpt_every < 0:
        p.append("output.val_every and output.ckpt_every must be >= 0")
    if out.resume and out.force:
        p.append("output.resume and output.force are mutually exclusive (force would delete what resume continues)")
    if out.turntable_frames < 0 or out.fps < 1:
        p.append("output.turntable_frames must be >= 0 and output.fps >= 1")

    gpus = [x.strip() for x in cfg.runtime.gpus.split(",") if x.strip()]
    if not gpus or not all(x.isdigit() for x in gpus):
        p.append(f"runtime.gpus (--gpus) must be comma-separated device ids such as '0,1', got {cfg.runtime.gpus!r}")
    if p:
        raise ConfigError(p)
    return cfg


# --------------------------------------------------------------------------------------------- presets


def _build_presets() -> dict[str, RunConfig]:
    # Named presets are the original's flag combinations run through its exact preset + knock-on logic
    # (pgc_fast.original), so a name means precisely what the README command meant.
    from pgc_fast.original import config_from_flags

    demo = override(
        RunConfig(),
        **{
            "guidance.text": "a colourful ceramic vase with painted flowers",
            "guidance.model": "tiny-sd",
            "guidance.guidance_scale": 7.5,
            "guidance.cfg_convention": "diffusers",
            "guidance.pgc_tau": 0.1,
            "mesh.canonicalize": True,
            "render.resolution": 64,
            "render.backend": "cpu",
            "texture.kind": "uv",
            "texture.uv_resolution": 256,
            "texture.uv_levels": 4,
            "texture.export_resolution": 512,
            "texture.init_from_vertex_colors": True,
            "texture.init_iters": 100,
            "optim.iters": 60,
            "optim.batch_size": 2,
            "optim.lr_texture": 1e-3,
            "output.workspace": "demo",
            "output.val_every": 20,
            "output.ckpt_every": 0,
            "output.turntable_frames": 36,
            "output.turntable_resolution": 192,
            "output.fps": 12,
            "runtime.device": "cpu",
            "runtime.gpus": "0",
        },
    )
    return {
        "default": RunConfig(),
        # -O0 -O2: SD 1.5 + depth ControlNet texturing with PGC (the original forces --guidance controlnet).
        "texture-pgc": config_from_flags("O0", "O2"),
        # -O2 without PGC.
        "texture": config_from_flags("O2"),
        # -O0 -O2 -O4: SDXL texturing with PGC.
        "texture-sdxl-pgc": config_from_flags("O0", "O2", "O4"),
        # -O0 -O2 -O4 --guidance controlnet (README command A): SDXL + depth ControlNet texturing with PGC.
        "texture-sdxl-controlnet-pgc": config_from_flags("O0", "O2", "O4", guidance="controlnet"),
        # -O0 -O2 -O4 --vsd --guidance_scale 7.5 (README command C): SDXL VSD texturing with PGC.
        "texture-sdxl-vsd-pgc": config_from_flags("O0", "O2", "O4", vsd=True, guidance_scale=7.5),
        # CPU smoke configuration used by `pgc-fast demo` (mesh.path is filled in by the demo).
        "demo": demo,
    }


PRESETS: dict[str, RunConfig] = _build_presets()
