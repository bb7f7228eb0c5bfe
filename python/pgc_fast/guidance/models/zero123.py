"""Zero123 (Zero-1-to-3, arXiv 2303.11328) in diffusers terms: loading, the built-in models, saving.

The architecture is Stable Diffusion 1.x's with two changes: the UNet takes 8 input channels (the noisy latent and
the reference image's VAE latent, concatenated), and its single cross-attention token is the reference's CLIP
image embedding (OpenAI ViT-L/14, 768) joined with the relative camera ``[Δθ, sin Δφ, cos Δφ, Δr]`` through a linear
layer 772 → 768 (``cc_projection``). Modules: ``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPVisionModelWithProjection`` and ``torch.nn.Linear``.

Sources (:func:`load_zero123`):

* a diffusers-layout directory or hub id, as published for zero123-xl: ``unet/``, ``vae/``, ``image_encoder/``,
  ``feature_extractor/`` (its mean/std/size are read), ``scheduler/`` (optional) and the projection in
  ``clip_camera_projection/`` (threestudio, stable-dreamfusion: ``proj.weight``) or ``cc_projection/``
  (diffusers' community Zero1to3 pipeline: ``projection.weight``);
* the original's ldm checkpoint (``zero123-xl.ckpt``, or a ``.safetensors`` copy) + optional YAML, converted in
  memory by :mod:`.ldm_convert` (``pgc-fast convert-zero123`` writes the diffusers layout once);
* the built-ins ``tiny-zero123`` (seeded random, tiny: tests) and ``zero123-random`` (full size, random weights,
  materialised on the target device: cost benchmarks).

Missing weights raise the same :class:`GuidanceLoadError` as the text models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pgc_fast.config.schema import ZERO123_ALIASES, ZERO123_BUILTINS
from pgc_fast.guidance.models import builtin
from pgc_fast.guidance.models import ldm_convert as L
from pgc_fast.guidance.models.builtin import (
    SCHEDULER_CONFIG,
    SD15_UNET_CONFIG,
    VAE_CONFIG,
    _quiet_diffusers,
    build_module,
    freeze,
    vae_factor,
)
from pgc_fast.guidance.models.loading import GuidanceLoadError, _raise_missing, _refused_pickle, _resolve, hf_token

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROJECTION_DIRS = ("clip_camera_projection", "cc_projection")
POSE_DIM = 4

ZERO123_UNET_CONFIG: dict[str, Any] = dict(SD15_UNET_CONFIG, in_channels=8, sample_size=32)
CLIP_VIT_L14_CONFIG: dict[str, Any] = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
)
# The tiny configs are the tiny SD models' (builtin.py) as an ldm checkpoint of that size converts to (ldm_convert:
# one head width; 32 groups in every GroupNorm, diffusers' default, which a converted VAE config leaves unset; CLIP
# heads of 64 channels), so tests can round-trip them through the converter.
TINY_UNET_CONFIG: dict[str, Any] = dict(builtin.TINY_UNET_CONFIG, in_channels=8, attention_head_dim=4)
TINY_VAE_CONFIG: dict[str, Any] = {
    **{k: v for k, v in builtin.TINY_VAE_CONFIG.items() if k != "norm_num_groups"},
    "block_out_channels": (32, 32, 32, 32),
}
TINY_CLIP_CONFIG: dict[str, Any] = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=1,
    image_size=32,
    patch_size=8,
    projection_dim=32,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
)


@dataclass
class Zero123Bundle:
    """Every module of a Zero123 model, frozen, in eval mode.

    ``projection`` maps [CLIP embedding (``embed_dim``), relative pose (4)] → ``embed_dim`` (the cross-attention
    width). ``image_mean``/``image_std``/``clip_size`` are the CLIP input normalisation and size; ``resolution`` is the
    image size the VAE sees (256 for Zero123: 32² latents). ``controlnet`` is always None (the speed levers of
    :mod:`pgc_fast.guidance.build` read it)."""

    name: str
    unet: Any
    vae: Any
    image_encoder: Any
    projection: torch.nn.Linear
    scheduler_config: dict[str, Any]
    resolution: int
    clip_size: int = 224
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    controlnet: Any = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def embed_dim(self) -> int:
        return int(self.projection.out_features)


# ----------------------------------------------------------------------------------------------- built-ins
def build_zero123_builtin(
    name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> Zero123Bundle:
    """``tiny-zero123`` (seeded CPU init, 64² images → 8² latents, 32-wide CLIP on 32² inputs) or ``zero123-random``
    (the zero123-xl architecture with random weights, built on the meta device and initialised on ``device``)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if name not in ZERO123_BUILTINS:
        raise ValueError(f"build_zero123_builtin(): name must be one of {ZERO123_BUILTINS}, got {name!r}")
    device = torch.device(device)
    tiny = name.startswith("tiny")
    torch.manual_seed(seed)
    unet_cfg = TINY_UNET_CONFIG if tiny else ZERO123_UNET_CONFIG
    vae_cfg = dict(TINY_VAE_CONFIG if tiny else dict(VAE_CONFIG, sample_size=256), scaling_factor=0.18215)
    clip_cfg = TINY_CLIP_CONFIG if tiny else CLIP_VIT_L14_CONFIG
    width = int(unet_cfg["cross_attention_dim"])

    def build(ctor):
        m = build_module(ctor, device, dtype, seeded=tiny)
        return m if tiny else _init_loose_parameters(m)

    with _quiet_diffusers():
        unet = build(lambda: UNet2DConditionModel(**unet_cfg))
        vae = build(lambda: AutoencoderKL(**vae_cfg))
        encoder = build(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_cfg)))
        projection = build(lambda: torch.nn.Linear(width + POSE_DIM, width))
    freeze(unet, vae, encoder, projection)
    return Zero123Bundle(
        name=name,
        unet=unet,
        vae=vae,
        image_encoder=encoder,
        projection=projection,
        scheduler_config=dict(SCHEDULER_CONFIG),
        resolution=64 if tiny else 256,
        clip_size=int(clip_cfg["image_size"]),
        sources={"model": f"built-in {name}"},
    )


@torch.no_grad()
def _init_loose_parameters(module: torch.nn.Module) -> torch.nn.Module:
    """N(0, 0.02) for parameters held directly by a module without ``reset_parameters`` (CLIP's class embedding):
    :func:`build_module` allocates them with ``to_empty`` and only re-runs the layers' own inits."""
    for m in module.modules():
        if callable(getattr(m, "reset_parameters", None)):
            continue
        for p in m.parameters(recurse=False):
            p.normal_(0.0, 0.02)
    return module


# ----------------------------------------------------------------------------------------------- loading
def is_checkpoint_file(model: str) -> bool:
    """Whether ``model`` names an ldm checkpoint file (converted in memory) rather than a directory or hub id."""
    return Path(model).suffix in (".ckpt", ".pt", ".pth", ".safetensors")


def load_zero123(
    model: str,
    *,
    config: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | None = None,
    token_file: str | None = "TOKEN",
    seed: int = 0,
) -> Zero123Bundle:
    """Load a Zero123 model (see the module docstring for the sources); all modules frozen on ``device``.

    Args:
        model: built-in name, alias (``zero123-xl``), hub id / local directory in the diffusers layout, or an ldm
            checkpoint file.
        config: the ldm YAML of a checkpoint file (None: Zero123's own architecture).
    Raises:
        GuidanceLoadError: weights missing (listing what and how to fetch it) or not loadable.
    """
    device = torch.device(device)
    if model in ZERO123_BUILTINS:
        return build_zero123_builtin(model, device=device, dtype=dtype, seed=seed)
    if is_checkpoint_file(model):
        return load_ldm_checkpoint(model, config, device=device, dtype=dtype)
    path = locate_zero123(model, cache_dir=cache_dir, token=hf_token(token_file))
    return load_diffusers_dir(path, device=device, dtype=dtype, name=model)


def locate_zero123(model: str, *, cache_dir: str | None, token: str | None) -> Path:
    """The local directory of a diffusers-layout Zero123 (a directory, the HF cache, or unless offline a
    download); one :class:`GuidanceLoadError` naming what is missing otherwise."""
    repo = ZERO123_ALIASES.get(model, model)
    problems: list[str] = []
    path = _resolve(
        repo,
        ["unet", "vae", "image_encoder"],
        cache_dir=cache_dir,
        token=token,
        half=False,
        problems=problems,
        optional=[*PROJECTION_DIRS, "feature_extractor", "scheduler"],
    )
    if path is not None and not any((path / d / "config.json").exists() for d in PROJECTION_DIRS):
        problems.append(f"{repo}: no camera projection ({' or '.join(d + '/' for d in PROJECTION_DIRS)})")
    if problems:
        _raise_missing(problems, [repo], cache_dir, builtins=ZERO123_BUILTINS, flag="--guidance.zero123_model")
    assert path is not None
    return path


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def load_projection(directory: Path, device: torch.device, dtype: torch.dtype) -> torch.nn.Linear:
    """The camera projection of a diffusers-layout directory: the one weight/bias pair of
    ``clip_camera_projection/`` or ``cc_projection/`` (safetensors; a .bin only through weights_only)."""
    for sub in PROJECTION_DIRS:
        d = directory / sub
        files = sorted(d.glob("*.safetensors")) or sorted(d.glob("*.bin"))
        if not files:
            continue
        sd = _read_tensors(files[0])
        w = [v for k, v in sd.items() if k.endswith("weight")]
        b = [v for k, v in sd.items() if k.endswith("bias")]
        if len(w) != 1 or len(b) != 1 or w[0].dim() != 2 or w[0].shape[1] != w[0].shape[0] + POSE_DIM:
            raise GuidanceLoadError(
                f"{files[0]}: the camera projection must hold one weight [D, D + 4] and one bias [D], got "
                f"{ {k: tuple(v.shape) for k, v in sd.items()} }"
            )
        lin = torch.nn.Linear(w[0].shape[1], w[0].shape[0])
        lin.load_state_dict({"weight": w[0], "bias": b[0]})
        return lin.to(device=device, dtype=dtype)
    raise GuidanceLoadError(f"{directory}: no camera projection weights in {' or '.join(PROJECTION_DIRS)}")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        why = "a pickle holding more than tensors (refused by weights_only)" if _refused_pickle(e) else str(e)[:200]
        raise GuidanceLoadError(f"loading {path} refused: {why}; use .safetensors weights") from e


def load_diffusers_dir(path: Path, *, device: torch.device, dtype: torch.dtype, name: str) -> Zero123Bundle:
    """Build a :class:`Zero123Bundle` from a located diffusers-layout directory."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionModelWithProjection

    def load(cls, sub: str):
        try:
            return cls.from_pretrained(str(path), subfolder=sub, torch_dtype=dtype)
        except Exception as e:
            why = "its .bin weights are a pickle holding more than tensors" if _refused_pickle(e) else str(e)
            raise GuidanceLoadError(
                f"loading {cls.__name__} from {path / sub} failed: {why.splitlines()[0][:300]}"
            ) from e

    unet = load(UNet2DConditionModel, "unet").to(device)
    vae = load(AutoencoderKL, "vae").to(device)
    encoder = load(CLIPVisionModelWithProjection, "image_encoder").to(device)
    projection = load_projection(path, device, dtype)
    if unet.config.in_channels != 8 or projection.out_features != unet.config.cross_attention_dim:
        raise GuidanceLoadError(
            f"{path}: not a Zero123 model (the UNet must take 8 input channels and the projection must match its "
            f"cross-attention width; got {unet.config.in_channels} and {projection.out_features})"
        )
    fe = _read_json(path / "feature_extractor" / "preprocessor_config.json")
    crop = fe.get("crop_size", 224)
    sched = _read_json(path / "scheduler" / "scheduler_config.json") or dict(SCHEDULER_CONFIG)
    freeze(unet, vae, encoder, projection)
    return Zero123Bundle(
        name=name,
        unet=unet,
        vae=vae,
        image_encoder=encoder,
        projection=projection,
        scheduler_config=sched,
        resolution=int(unet.config.sample_size) * vae_factor(vae.config),
        clip_size=int(crop.get("height", 224) if isinstance(crop, dict) else crop),
        image_mean=tuple(fe.get("image_mean", CLIP_MEAN)),
        image_std=tuple(fe.get("image_std", CLIP_STD)),
        sources={"model": str(path)},
    )


def _from_state_dict(ctor, sd: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype):
    """``ctor()`` built on the meta device and given ``sd``'s tensors (no random init of the full model); buffers
    that are not in a state dict (CLIP's position ids) are rebuilt."""
    with torch.device("meta"):
        module = ctor()
    module.load_state_dict(sd, strict=True, assign=True)
    for m in module.modules():
        if hasattr(m, "position_ids") and isinstance(m.position_ids, torch.Tensor) and m.position_ids.is_meta:
            n = m.position_ids.shape[-1]
            m.position_ids = torch.arange(n).expand(1, n)
    return module.to(device=device, dtype=dtype)


def load_ldm_checkpoint(path: str, config: str | None, *, device: torch.device, dtype: torch.dtype) -> Zero123Bundle:
    """The original's ldm checkpoint (+ YAML) converted in memory (:mod:`.ldm_convert`); EMA weights when present."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if not Path(path).is_file():
        raise GuidanceLoadError(
            f"Zero123 checkpoint {path!r} not found (the original's zero123-xl.ckpt; or pass a diffusers-layout "
            f"directory or hub id such as {ZERO123_ALIASES['zero123-xl']}). Without weights, the built-in models "
            f"{', '.join(ZERO123_BUILTINS)} run anywhere."
        )
    try:
        params = L.read_ldm_params(config)
        sd = L.with_ema(L.read_checkpoint(path))
        unet_cfg, vae_cfg = L.unet_config(params), L.vae_config(params)
        with _quiet_diffusers(), torch.device("meta"):
            meta_unet: Any = UNet2DConditionModel(**unet_cfg)
            meta_vae: Any = AutoencoderKL(**vae_cfg)
        unet_shapes = {k: v.shape for k, v in meta_unet.state_dict().items()}
        vae_shapes = {k: v.shape for k, v in meta_vae.state_dict().items()}
        unet_sd = L.remap(L.split_prefix(sd, L.LDM_UNET), unet_shapes, L.unet_key_map(unet_cfg), "UNet")
        vae_sd = L.remap(L.split_prefix(sd, L.LDM_VAE), vae_shapes, L.vae_key_map(vae_cfg), "VAE")
        clip = L.split_prefix(sd, L.LDM_CLIP)
        clip_cfg, clip_sd = L.clip_vision_config(clip), L.clip_vision_state_dict(clip)
        proj = L.split_prefix(sd, L.LDM_PROJECTION)
    except (L.ConversionError, KeyError) as e:
        raise GuidanceLoadError(f"converting the ldm checkpoint {path}: {str(e)[:600]}") from e
    with _quiet_diffusers():
        unet = _from_state_dict(lambda: UNet2DConditionModel(**unet_cfg), unet_sd, device, dtype)
        vae = _from_state_dict(lambda: AutoencoderKL(**vae_cfg), vae_sd, device, dtype)
        encoder = _from_state_dict(
            lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**clip_cfg)), clip_sd, device, dtype
        )
    w = proj["weight"]
    projection = _from_state_dict(lambda: torch.nn.Linear(w.shape[1], w.shape[0]), proj, device, dtype)
    freeze(unet, vae, encoder, projection)
    return Zero123Bundle(
        name=str(path),
        unet=unet,
        vae=vae,
        image_encoder=encoder,
        projection=projection,
        scheduler_config=L.scheduler_config(params),
        resolution=int(unet_cfg["sample_size"]) * vae_factor(vae_cfg),
        clip_size=int(clip_cfg["image_size"]),
        sources={"model": str(path), **({"config": str(config)} if config else {})},
    )


# ----------------------------------------------------------------------------------------------- saving
def save_diffusers(bundle: Zero123Bundle, out: str | Path) -> Path:
    """Write ``bundle`` in the diffusers layout (safetensors; the projection as ``clip_camera_projection/``, as
    threestudio and stable-dreamfusion publish it), loadable by :func:`load_zero123`."""
    out = Path(out)
    bundle.unet.save_pretrained(str(out / "unet"))
    bundle.vae.save_pretrained(str(out / "vae"))
    bundle.image_encoder.save_pretrained(str(out / "image_encoder"))
    from safetensors.torch import save_file

    proj_dir = out / "clip_camera_projection"
    proj_dir.mkdir(parents=True, exist_ok=True)
    p = bundle.projection
    save_file(
        {"proj.weight": p.weight.detach().contiguous(), "proj.bias": p.bias.detach().contiguous()},
        str(proj_dir / "diffusion_pytorch_model.safetensors"),
    )
    dim = bundle.embed_dim
    (proj_dir / "config.json").write_text(
        json.dumps({"_class_name": "CLIPCameraProjection", "embedding_dim": dim, "additional_embeddings": POSE_DIM})
    )
    fe = {
        "crop_size": {"height": bundle.clip_size, "width": bundle.clip_size},
        "image_mean": list(bundle.image_mean),
        "image_std": list(bundle.image_std),
        "image_processor_type": "CLIPImageProcessor",
    }
    (out / "feature_extractor").mkdir(exist_ok=True)
    (out / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(fe, indent=1))
    (out / "scheduler").mkdir(exist_ok=True)
    sched = {"_class_name": "DDIMScheduler", **bundle.scheduler_config}
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=1))
    return out
