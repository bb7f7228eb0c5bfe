"""Built-in diffusion models that need no download: tiny ones for tests, full-size random ones for benchmarks.

* ``tiny-sdxl`` / ``tiny-sd``: the same diffusers/transformers classes as SDXL and SD 1.5 with tiny configs
  (two-level UNet with 32/64 channels, an 8x-downsampling VAE, two-layer CLIP text encoders, tiny
  ControlNets), initialised from a fixed seed so every run sees the same weights. They keep every interface
  (dual text encoders + pooled embedding + ``time_ids`` for SDXL; latent = image / 8) so the whole guidance
  path is exercised on a CPU in milliseconds. Their outputs are meaningless.
* ``sdxl-random`` / ``sd15-random``: the full-size architectures (SDXL base 1.0: 2.6 B-parameter UNet, CLIP-L +
  OpenCLIP-bigG, SDXL VAE, depth ControlNet; SD 1.5: 860 M UNet, CLIP-L, VAE, ControlNet) with random weights.
  They are built on the ``meta`` device and materialised directly on the target device with each layer's
  default ``reset_parameters`` init, so no CPU-side init of billions of parameters happens. For cost
  benchmarks only.
* ``toy-sd``: a small SD-style prior *trained by the project* on renders of coloured, patterned shapes
  (:mod:`pgc_fast.guidance.models.toy`, :mod:`pgc_fast.apps.toy_prior`); weights ship in the package. Its outputs
  follow prompts like
  "a red striped object".

The tokenizer of all four is generated at runtime: a byte-level CLIP BPE tokenizer whose vocabulary is the 256
byte symbols (with and without the end-of-word suffix) plus the two special tokens, and no merges (every word
is spelt out byte by byte). It keeps CLIP's 77-token padding and special-token layout.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pgc_fast.config.schema import BUILTIN_MODELS

# Diffusion schedule shared by SD 1.x/2.x and SDXL: scaled_linear betas 0.00085 -> 0.012, 1000 steps.
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}

SDXL_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    downsample_padding=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=2048,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    upcast_attention=False,
)
SD15_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
)
CLIP_L_CONFIG: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)
# The tiny models (SD 1.5's tiny UNet; the SDXL one adds its conditioning in _tiny_unet_kwargs).
TINY_UNET_CONFIG: dict[str, Any] = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 4),
    norm_num_groups=32,
    cross_attention_dim=32,
)
TINY_VAE_CONFIG: dict[str, Any] = dict(
    block_out_channels=(16, 16, 32, 32),
    norm_num_groups=8,
    layers_per_block=1,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=64,
)
CLIP_BIGG_CONFIG: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=1280,
)


@dataclass
class ModelBundle:
    """Every module the guidance needs, whatever its origin (hub, local dir or built in).

    ``text_encoders``/``tokenizers`` hold one entry (SD) or two (SDXL: CLIP-L then OpenCLIP-bigG, the second
    with projection). ``controlnet`` is None, a ControlNetModel, or a MultiControlNetModel (one entry per
    ``control_types`` item). ``scheduler_config`` is a diffusers scheduler config dict (betas, prediction type).
    """

    name: str
    is_sdxl: bool
    unet: Any
    vae: Any
    text_encoders: list[Any]
    tokenizers: list[Any]
    scheduler_config: dict[str, Any]
    resolution: int
    controlnet: Any = None
    control_types: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def vae_factor(self) -> int:
        """Image-to-latent downsampling of the VAE (:func:`vae_factor`)."""
        return vae_factor(self.vae.config)


def vae_factor(vae_config: Any) -> int:
    """Image-to-latent downsampling of an ``AutoencoderKL`` config: 2^(levels - 1), 8 for SD/SDXL, 4 for toy-sd."""
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def multi_controlnet(nets: list):
    """Wrap several ControlNets in diffusers' MultiControlNetModel (its import path moved in diffusers 0.31)."""
    try:
        from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
    except ImportError:  # diffusers < 0.31
        # mypy sees both branches as definitions of one name; only one runs.
        from diffusers.pipelines.controlnet.multicontrolnet import MultiControlNetModel  # type: ignore[no-redef]
    return MultiControlNetModel(nets)


def make_tokenizer(max_length: int = 77):
    """Generate the byte-level CLIP tokenizer described in the module docstring (written to a temp dir)."""
    from transformers import CLIPTokenizer

    # GPT-2/CLIP byte -> printable-unicode table (the standard construction).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    symbols = [chr(c) for c in cs]
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tmp = Path(tempfile.mkdtemp(prefix="pgc_fast_tokenizer_"))
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    (tmp / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_length}))
    return CLIPTokenizer.from_pretrained(str(tmp), model_max_length=max_length)


def _tiny_unet_kwargs(sdxl: bool) -> dict[str, Any]:
    kw = dict(TINY_UNET_CONFIG)
    if sdxl:
        # cross-attention dim = 32 (CLIP-L tiny) + 32 (bigG tiny); pooled 32 + 6 time ids x 8.
        kw.update(
            cross_attention_dim=64,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
            transformer_layers_per_block=(1, 1),
        )
    return kw


def _controlnet_from_unet_config(unet_config: dict[str, Any], tiny: bool) -> dict[str, Any]:
    keys = (
        "in_channels",
        "flip_sin_to_cos",
        "freq_shift",
        "down_block_types",
        "only_cross_attention",
        "block_out_channels",
        "layers_per_block",
        "downsample_padding",
        "act_fn",
        "norm_num_groups",
        "norm_eps",
        "cross_attention_dim",
        "transformer_layers_per_block",
        "attention_head_dim",
        "use_linear_projection",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
        "upcast_attention",
    )
    cfg = {k: unet_config[k] for k in keys if k in unet_config}
    if tiny:
        cfg["conditioning_embedding_out_channels"] = (8, 8, 16, 16)  # 3 stride-2 convs: image / 8
    return cfg


def _random_init_(module: torch.nn.Module) -> torch.nn.Module:
    """Re-run each layer's default init in place (used after ``to_empty`` from the meta device)."""
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset) and any(True for _ in m.parameters(recurse=False)):
            reset()
    # Buffers that are not parameters (e.g. CLIP position ids) are rebuilt by their owners below.
    return module


def _materialise(ctor, device: torch.device, dtype: torch.dtype):
    """Build ``ctor()`` on the meta device, allocate it on ``device`` and initialise it there."""
    with torch.device("meta"):
        module = ctor()
    module = module.to_empty(device=device)
    with torch.no_grad():
        _random_init_(module)
        # CLIP text models keep a position_ids buffer: restore it (to_empty left it uninitialised).
        for m in module.modules():
            if hasattr(m, "position_ids") and isinstance(m.position_ids, torch.Tensor):
                n = m.position_ids.shape[-1]
                m.position_ids.copy_(torch.arange(n, device=device).expand_as(m.position_ids))
    return module.to(dtype)


def build_module(ctor, device: torch.device, dtype: torch.dtype, *, seeded: bool):
    """``ctor()`` on ``device`` in ``dtype``: ``seeded`` (the tiny models) builds it on the CPU from the global RNG
    (instant at that size, the same weights on every device), else :func:`_materialise`."""
    if seeded:
        m = ctor().to(device=device)
        return m if dtype == torch.float32 else m.to(dtype)
    return _materialise(ctor, device, dtype)


def freeze(*modules: Any) -> None:
    """Frozen models: no parameter gradients, eval mode (dropout off)."""
    for m in modules:
        m.requires_grad_(False)
        m.eval()


def join_controlnets(nets: list) -> Any:
    """None without ControlNets, the one ControlNet, or several in a MultiControlNetModel."""
    return nets[0] if len(nets) == 1 else (multi_controlnet(nets) if nets else None)


def build_builtin(
    name: str,
    *,
    control_types: list[str] | tuple[str, ...] = (),
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> ModelBundle:
    """Build one of :data:`BUILTIN_MODELS` (see the module docstring) on ``device`` in ``dtype``.

    Args:
        name: one of ``BUILTIN_MODELS``.
        control_types: ControlNet kinds to attach (``depth``, ``normal``, ``shuffle``, ``tile``; any name works:
            each gets its own randomly initialised ControlNet). Several → ``MultiControlNetModel``.
        device, dtype: where the modules live.
        seed: init seed of the tiny models (the random full-size ones use the global RNG after seeding too).
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if name not in BUILTIN_MODELS:
        raise ValueError(f"build_builtin(): name must be one of {BUILTIN_MODELS}, got {name!r}")
    if name == "toy-sd":
        return _build_toy(control_types, device, dtype)
    device = torch.device(device)
    sdxl = "sdxl" in name
    tiny = name.startswith("tiny")
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    tokenizer = make_tokenizer()
    unet_cfg, vae_cfg, te_cfgs, resolution = _builtin_configs(sdxl, tiny, tokenizer)

    build = lambda ctor: build_module(ctor, device, dtype, seeded=tiny)
    with _quiet_diffusers():
        unet = build(lambda: UNet2DConditionModel(**unet_cfg))
        vae = build(lambda: AutoencoderKL(**vae_cfg))
        encoders = []
        for i, tc in enumerate(te_cfgs):
            cls = CLIPTextModelWithProjection if (sdxl and i == 1) else CLIPTextModel
            encoders.append(build(lambda tc=tc, cls=cls: cls(CLIPTextConfig(**tc))))
        nets = [
            build(lambda: ControlNetModel(**_controlnet_from_unet_config(dict(unet.config), tiny)))
            for _ in control_types
        ]
    controlnet = join_controlnets(nets)
    freeze(unet, vae, *encoders, *([controlnet] if controlnet is not None else []))
    return ModelBundle(
        name=name,
        is_sdxl=sdxl,
        unet=unet,
        vae=vae,
        text_encoders=encoders,
        tokenizers=[tokenizer] * len(encoders),
        scheduler_config=dict(SCHEDULER_CONFIG),
        resolution=resolution,
        controlnet=controlnet,
        control_types=list(control_types),
        sources={"model": f"built-in {name}"},
    )


def _builtin_configs(sdxl: bool, tiny: bool, tokenizer) -> tuple[dict, dict, list[dict], int]:
    """(UNet, VAE, text encoder configs, image resolution) of a tiny or full-size random built-in model."""
    vocab = len(tokenizer)
    if tiny:
        unet_cfg = _tiny_unet_kwargs(sdxl)
        vae_cfg = dict(TINY_VAE_CONFIG)
        te_cfgs = [
            dict(
                vocab_size=vocab,
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                projection_dim=32,
            )
        ]
        if sdxl:
            te_cfgs.append(dict(te_cfgs[0]))
        resolution = 64
    else:
        unet_cfg = dict(SDXL_UNET_CONFIG if sdxl else SD15_UNET_CONFIG)
        vae_cfg = dict(VAE_CONFIG, sample_size=1024 if sdxl else 512)
        te_cfgs = [dict(CLIP_L_CONFIG)] + ([dict(CLIP_BIGG_CONFIG)] if sdxl else [])
        resolution = 1024 if sdxl else 512
    for tc in te_cfgs:  # the pooled output is read at the end-of-text token: use the generated ids
        tc.update(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    vae_cfg["scaling_factor"] = 0.13025 if sdxl else 0.18215
    vae_cfg["force_upcast"] = False
    return unet_cfg, vae_cfg, te_cfgs, resolution


@contextlib.contextmanager
def _quiet_diffusers():
    """Silence diffusers' "modules that should be kept in float32: []" on ``.to(dtype)``."""
    from diffusers.utils import logging as dlogging

    verbosity = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        yield
    finally:
        dlogging.set_verbosity(verbosity)


def _build_toy(control_types, device, dtype) -> ModelBundle:
    """Load the trained ``toy-sd`` weights shipped in ``pgc_fast/guidance/models/toy_sd`` (see :mod:`.toy`)."""
    from pgc_fast.guidance.models.toy import WEIGHTS_DIR, load_toy

    if control_types:
        raise ValueError(f"build_builtin(): toy-sd has no ControlNets, got control_types={list(control_types)}")
    vae, unet, te, tok, meta = load_toy(WEIGHTS_DIR, device=device, dtype=dtype)
    return ModelBundle(
        name="toy-sd",
        is_sdxl=False,
        unet=unet,
        vae=vae,
        text_encoders=[te],
        tokenizers=[tok],
        scheduler_config=dict(SCHEDULER_CONFIG),
        resolution=int(meta["data"]["resolution"]),
        sources={"model": f"built-in toy-sd (trained at {meta.get('commit', '?')[:10]})"},
    )
