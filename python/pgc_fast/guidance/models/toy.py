"""``toy-sd``: a small text-to-image prior trained by the project (see :mod:`pgc_fast.apps.toy_prior`).

Same diffusers/transformers classes as SD 1.x — ``AutoencoderKL`` (64² RGB → 16²×4 latents, a 4× VAE),
``UNet2DConditionModel`` (cross-attention on the text states), ``CLIPTextModel`` — with a word-level tokenizer
generated here from :data:`VOCAB` ("a <colour> <pattern> object", plus the view words the SDS engine appends).
Weights ship as safetensors in ``pgc_fast/guidance/models/toy_sd/`` with ``meta.json`` (configs, the commit and
command that trained them, data settings, losses, measured quality).

Unlike ``tiny-sd`` its outputs mean something: a "red striped object" prompt samples a red striped object, so
SDS with it moves a texture towards the named colour — which makes end-to-end tests of the guidance maths
(CFG sign, weighting, PGC) able to fail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

WEIGHTS_DIR = Path(__file__).with_name("toy_sd")

# Albedo of each colour word (linear [0,1] RGB, used for training textures and for the tests' nearest-colour check).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.12, 0.68, 0.15),
    "blue": (0.10, 0.22, 0.88),
    "yellow": (0.95, 0.88, 0.10),
    "orange": (0.97, 0.50, 0.05),
    "purple": (0.52, 0.14, 0.70),
    "white": (0.95, 0.95, 0.95),
    "black": (0.07, 0.07, 0.07),
}
PATTERNS = ("plain", "striped", "checkered", "dotted")
VIEW_WORDS = ("front", "side", "back", "overhead", "bottom", "view")
SPECIALS = ("<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>")
VOCAB: tuple[str, ...] = SPECIALS + ("a", "object", ",") + tuple(COLOURS) + PATTERNS + VIEW_WORDS
MAX_LENGTH = 16  # "a <colour> <pattern> object, <view> view" is 9 tokens with BOS/EOS

TEXT_CONFIG: dict[str, Any] = dict(
    vocab_size=len(VOCAB),
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=MAX_LENGTH,
    projection_dim=64,
    hidden_act="quick_gelu",
    pad_token_id=0,
    bos_token_id=2,
    eos_token_id=3,
)
VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=16,
    sample_size=64,
    scaling_factor=1.0,
    force_upcast=False,
)
UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=8,
    norm_num_groups=16,
    cross_attention_dim=64,
)


def caption(colour: str, pattern: str) -> str:
    return f"a {colour} {pattern} object"


def make_tokenizer():
    """The generated word-level tokenizer (a transformers fast tokenizer; CLIP's BOS … EOS pad layout)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(VOCAB)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<|unk|>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # splits "object," into "object" ","
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", vocab["<|startoftext|>"]), ("<|endoftext|>", vocab["<|endoftext|>"])],
    )
    t = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=MAX_LENGTH,
        pad_token="<|pad|>",
        unk_token="<|unk|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
    )
    return t


def build_modules(seed: int = 0):
    """Fresh (untrained) modules from the configs above: (vae, unet, text_encoder, tokenizer)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    te = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    return vae, unet, te, make_tokenizer()


def read_meta(directory: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    p = Path(directory) / "meta.json"
    if not p.is_file():
        raise FileNotFoundError(
            f"toy-sd: no trained weights at {p} (run `pgc-fast train-prior --seed 0 --out {Path(directory)}`)"
        )
    return json.loads(p.read_text())


def load_toy(
    directory: str | Path = WEIGHTS_DIR, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
):
    """Load the trained toy-sd: (vae, unet, text_encoder, tokenizer, meta), eval mode, no grad."""
    from safetensors.torch import load_file

    d = Path(directory)
    meta = read_meta(d)
    vae, unet, te, tok = build_modules()
    vae.register_to_config(scaling_factor=float(meta["scaling_factor"]))
    for name, m in (("vae", vae), ("unet", unet), ("text_encoder", te)):
        f = d / f"{name}.safetensors"
        if not f.is_file():
            raise FileNotFoundError(f"toy-sd: missing {f}")
        sd = load_file(str(f))
        missing, unexpected = m.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(
                f"toy-sd: {f.name} does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    mods = []
    for m in (vae, unet, te):
        m.requires_grad_(False)
        m.eval()
        mods.append(m.to(device=device, dtype=dtype))
    return mods[0], mods[1], mods[2], tok, meta


def pipeline(directory: str | Path = WEIGHTS_DIR, device: str | torch.device = "cpu"):
    """A diffusers ``StableDiffusionPipeline`` over toy-sd (DDIM scheduler, no safety checker)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from pgc_fast.guidance.models.builtin import SCHEDULER_CONFIG

    vae, unet, te, tok, _ = load_toy(directory, device)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=te,
        tokenizer=tok,
        unet=unet,
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
