"""The original's Zero123 checkpoint (ldm / CompVis layout: ``zero123-xl.ckpt`` + its YAML) → diffusers modules.

The original loaded ``./pretrained/zero123/zero123-xl.ckpt`` with the ldm code base (the original's
guidance/zero123_utils.py, load_model_from_config), copying the EMA weights into the model. This module maps the
same tensors onto diffusers/transformers classes, so the ldm code base is never needed:

=========================================  ===================================================================
ldm key (prefix)                           diffusers / transformers module
=========================================  ===================================================================
``model.diffusion_model.`` (or the EMA     ``UNet2DConditionModel`` (8 input channels: noisy latent + image
copy ``model_ema.<name without dots>``)    latent), see :func:`unet_key_map`
``first_stage_model.``                     ``AutoencoderKL``, see :func:`vae_key_map`
``cond_stage_model.model.visual.``         ``CLIPVisionModelWithProjection`` (OpenAI CLIP ViT-L/14 image tower),
                                           see :func:`clip_vision_state_dict`
``cc_projection.``                         ``torch.nn.Linear(772, 768)`` (image embedding + relative pose)
=========================================  ===================================================================

UNet (``unet_key_map``), level ``i`` of ``L`` with ``n`` = num_res_blocks:

* ``time_embed.{0,2}`` → ``time_embedding.linear_{1,2}``; ``input_blocks.0.0`` → ``conv_in``;
  ``out.{0,2}`` → ``conv_norm_out``, ``conv_out``.
* ``input_blocks.{1 + i(n+1) + j}.0`` → ``down_blocks.i.resnets.j`` and ``.1`` → ``down_blocks.i.attentions.j``;
  ``input_blocks.{(i+1)(n+1)}.0.op`` → ``down_blocks.i.downsamplers.0.conv`` (i < L - 1).
* ``middle_block.{0,1,2}`` → ``mid_block.resnets.0``, ``mid_block.attentions.0``, ``mid_block.resnets.1``.
* ``output_blocks.{i(n+1) + j}.0`` → ``up_blocks.i.resnets.j`` (j ≤ n), ``.1`` → ``up_blocks.i.attentions.j``;
  the upsampler of level i < L - 1, ``output_blocks.{i(n+1) + n}.{1 or 2}.conv`` (2 after an attention) →
  ``up_blocks.i.upsamplers.0.conv``.
* Inside a ResBlock: ``in_layers.{0,2}`` → ``norm1``, ``conv1``; ``emb_layers.1`` → ``time_emb_proj``;
  ``out_layers.{0,3}`` → ``norm2``, ``conv2``; ``skip_connection`` → ``conv_shortcut``. Inside a
  SpatialTransformer every name is the same in both (``norm``, ``proj_in``, ``transformer_blocks.k.attn1.to_q``,
  ``ff.net.0.proj``, …, ``proj_out``).

VAE (``vae_key_map``): ``encoder.down.i.block.j`` → ``encoder.down_blocks.i.resnets.j``,
``encoder.down.i.downsample.conv`` → ``encoder.down_blocks.i.downsamplers.0.conv``, ``*.mid.block_{1,2}`` →
``*.mid_block.resnets.{0,1}``, ``*.mid.attn_1.{norm,q,k,v,proj_out}`` → ``*.mid_block.attentions.0.{group_norm,
to_q,to_k,to_v,to_out.0}`` (1×1 conv weights reshaped to linear ones), ``decoder.up.i`` →
``decoder.up_blocks.{L-1-i}`` (``upsample.conv`` → ``upsamplers.0.conv``), ``norm_out`` → ``conv_norm_out``,
``nin_shortcut`` → ``conv_shortcut``; ``conv_in``, ``conv_out``, ``quant_conv``, ``post_quant_conv`` keep their
names.

CLIP (``clip_vision_state_dict``): ``conv1`` → ``embeddings.patch_embedding``, ``class_embedding``,
``positional_embedding`` → ``embeddings.position_embedding.weight``, ``ln_pre`` → ``pre_layrnorm``,
``transformer.resblocks.k.attn.in_proj_{weight,bias}`` split into ``q/k/v_proj``, ``attn.out_proj`` →
``self_attn.out_proj``, ``ln_{1,2}`` → ``layer_norm{1,2}``, ``mlp.c_fc``/``c_proj`` → ``mlp.fc1``/``fc2``,
``ln_post`` → ``post_layernorm``, ``proj`` (``[width, dim]``) → ``visual_projection.weight`` (transposed).

Every tensor of each module must be found and every checkpoint tensor under a module's prefix must be used;
anything else is a :class:`ConversionError` naming the keys. ``tests/guidance/test_ldm_convert.py`` checks the
UNet and VAE maps against diffusers' own single-file converter on a synthetic checkpoint.

Safety: ``.safetensors`` checkpoints are read as tensors only. A pickle checkpoint (``.ckpt``, ``.pt``, ``.pth``)
is read with ``torch.load(weights_only=True)`` (memory-mapped): torch's restricted unpickler, which builds tensors,
numbers, strings and containers and refuses anything else (a pickle that would run code), as diffusers and
transformers load ``.bin`` weights (:mod:`.loading`). A checkpoint it refuses is not loaded; convert it once, in an
environment you trust, to safetensors (``pgc-fast convert-zero123`` explains how).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

LDM_UNET = "model.diffusion_model."
LDM_VAE = "first_stage_model."
LDM_CLIP = "cond_stage_model.model.visual."
LDM_PROJECTION = "cc_projection."

# The parts of Zero123's sd-objaverse-finetune-c_concat-256.yaml the conversion reads (used when no YAML is given).
ZERO123_LDM_PARAMS: dict[str, Any] = {
    "linear_start": 0.00085,
    "linear_end": 0.012,
    "timesteps": 1000,
    "image_size": 32,
    "scale_factor": 0.18215,
    "unet_config": {
        "params": {
            "in_channels": 8,
            "out_channels": 4,
            "model_channels": 320,
            "attention_resolutions": [4, 2, 1],
            "num_res_blocks": 2,
            "channel_mult": [1, 2, 4, 4],
            "num_heads": 8,
            "transformer_depth": 1,
            "context_dim": 768,
        }
    },
    "first_stage_config": {
        "params": {
            "embed_dim": 4,
            "ddconfig": {
                "z_channels": 4,
                "resolution": 256,
                "in_channels": 3,
                "out_ch": 3,
                "ch": 128,
                "ch_mult": [1, 2, 4, 4],
                "num_res_blocks": 2,
            },
        }
    },
}

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


class ConversionError(ValueError):
    """The checkpoint does not fit the architecture its configuration describes (the message names the keys)."""


# ----------------------------------------------------------------------------------------------- configs
def read_ldm_params(path: str | Path | None) -> dict[str, Any]:
    """``model.params`` of an ldm YAML (``yaml.safe_load``: data only), or Zero123's when ``path`` is None."""
    if path is None:
        return ZERO123_LDM_PARAMS
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
        params = data["model"]["params"]
        params["unet_config"]["params"], params["first_stage_config"]["params"]["ddconfig"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise ConversionError(
            f"read_ldm_params(): {path} must be an ldm YAML with model.params.unet_config and "
            f"first_stage_config ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
        ) from e
    return params


def unet_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers ``UNet2DConditionModel`` config of an ldm ``openaimodel.UNetModel`` (``model.params``)."""
    u = params["unet_config"]["params"]
    mult = list(u["channel_mult"])
    channels = [int(u["model_channels"]) * m for m in mult]
    attn = [2**i in set(u.get("attention_resolutions", [])) for i in range(len(mult))]
    head_channels = int(u.get("num_head_channels", -1))
    heads = int(u["num_heads"]) if head_channels == -1 else [c // head_channels for c in channels]
    depth = u.get("transformer_depth", 1)
    return dict(
        sample_size=int(params.get("image_size", u.get("image_size", 32))),
        in_channels=int(u["in_channels"]),
        out_channels=int(u["out_channels"]),
        block_out_channels=tuple(channels),
        layers_per_block=int(u["num_res_blocks"]),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        attention_head_dim=heads,
        cross_attention_dim=int(u["context_dim"]),
        transformer_layers_per_block=depth,
        use_linear_projection=bool(u.get("use_linear_in_transformer", False)),
    )


def vae_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers ``AutoencoderKL`` config of an ldm ``AutoencoderKL`` (``model.params``)."""
    dd = params["first_stage_config"]["params"]["ddconfig"]
    n = len(dd["ch_mult"])
    return dict(
        in_channels=int(dd.get("in_channels", 3)),
        out_channels=int(dd.get("out_ch", 3)),
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(int(dd["ch"]) * m for m in dd["ch_mult"]),
        layers_per_block=int(dd["num_res_blocks"]),
        latent_channels=int(dd["z_channels"]),
        sample_size=int(dd.get("resolution", 256)),
        scaling_factor=float(params.get("scale_factor", 0.18215)),
    )


def scheduler_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """The diffusers scheduler config the original built from the ldm betas (its DDIMScheduler arguments)."""
    return {
        "num_train_timesteps": int(params.get("timesteps", 1000)),
        "beta_start": float(params.get("linear_start", 0.00085)),
        "beta_end": float(params.get("linear_end", 0.012)),
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    }


# ----------------------------------------------------------------------------------------------- key maps
def unet_key_map(config: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, str]]]:
    """(diffusers module prefix, ldm module prefix, inner renames) for every UNet module (see the module doc)."""
    n = int(config["layers_per_block"])
    levels = len(config["block_out_channels"])
    out: list[tuple[str, str, Mapping[str, str]]] = [
        ("time_embedding.linear_1.", "time_embed.0.", {}),
        ("time_embedding.linear_2.", "time_embed.2.", {}),
        ("conv_in.", "input_blocks.0.0.", {}),
        ("conv_norm_out.", "out.0.", {}),
        ("conv_out.", "out.2.", {}),
        ("mid_block.resnets.0.", "middle_block.0.", _RESNET),
        ("mid_block.attentions.0.", "middle_block.1.", {}),
        ("mid_block.resnets.1.", "middle_block.2.", _RESNET),
    ]
    for i in range(levels):
        down_attn = "CrossAttn" in config["down_block_types"][i]
        for j in range(n):
            k = 1 + i * (n + 1) + j
            out.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{k}.0.", _RESNET))
            if down_attn:
                out.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{k}.1.", {}))
        if i < levels - 1:
            out.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (n + 1)}.0.op.", {}))
        up_attn = "CrossAttn" in config["up_block_types"][i]
        for j in range(n + 1):
            k = i * (n + 1) + j
            out.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{k}.0.", _RESNET))
            if up_attn:
                out.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{k}.1.", {}))
        if i < levels - 1:
            k = i * (n + 1) + n
            out.append((f"up_blocks.{i}.upsamplers.0.conv.", f"output_blocks.{k}.{2 if up_attn else 1}.conv.", {}))
    return out


def vae_key_map(config: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, str]]]:
    """(diffusers module prefix, ldm module prefix, inner renames) for every VAE module (see the module doc)."""
    n = int(config["layers_per_block"])
    levels = len(config["block_out_channels"])
    out: list[tuple[str, str, Mapping[str, str]]] = [
        ("quant_conv.", "quant_conv.", {}),
        ("post_quant_conv.", "post_quant_conv.", {}),
    ]
    for part in ("encoder", "decoder"):
        out += [
            (f"{part}.conv_in.", f"{part}.conv_in.", {}),
            (f"{part}.conv_out.", f"{part}.conv_out.", {}),
            (f"{part}.conv_norm_out.", f"{part}.norm_out.", {}),
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", _VAE_RESNET),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", _VAE_RESNET),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", _VAE_ATTENTION),
        ]
    for i in range(levels):
        for j in range(n):
            out.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", _VAE_RESNET))
        if i < levels - 1:
            out.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.", {}))
        ldm_i = levels - 1 - i
        for j in range(n + 1):
            out.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{ldm_i}.block.{j}.", _VAE_RESNET))
        if i < levels - 1:
            out.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{ldm_i}.upsample.conv.", {}))
    return out


def ldm_key(key: str, key_map: list[tuple[str, str, Mapping[str, str]]]) -> str | None:
    """The ldm name of diffusers parameter ``key`` (None when no module of the map holds it). The longest
    matching diffusers prefix wins; the inner renames apply to the start of the remainder."""
    best = max((m for m in key_map if key.startswith(m[0])), key=lambda m: len(m[0]), default=None)
    if best is None:
        return None
    prefix, ldm_prefix, inner = best
    rest = key[len(prefix) :]
    for new, old in inner.items():
        if rest.startswith(new + "."):
            return ldm_prefix + old + rest[len(new) :]
    return ldm_prefix + rest


def remap(
    source: Mapping[str, torch.Tensor],
    target_shapes: Mapping[str, torch.Size],
    key_map: list[tuple[str, str, Mapping[str, str]]],
    what: str,
) -> dict[str, torch.Tensor]:
    """The diffusers state dict of a module from ldm tensors ``source`` (keys without the module's ldm prefix).
    1×1 convolutions stored where a linear layer sits (and back) are reshaped; every other mismatch, missing key or
    unused source key is a :class:`ConversionError`."""
    out: dict[str, torch.Tensor] = {}
    missing, bad = [], []
    for key, shape in target_shapes.items():
        name = ldm_key(key, key_map)
        if name is None or name not in source:
            missing.append(f"{key} (ldm {name})")
            continue
        t = source[name]
        if t.shape != shape:
            if t.numel() != math.prod(shape):
                bad.append(f"{name}: {tuple(t.shape)} for {key}: {tuple(shape)}")
                continue
            t = t.reshape(shape)
        out[key] = t
    used = {ldm_key(k, key_map) for k in target_shapes}
    unused = sorted(k for k in source if k not in used)
    if missing or bad or unused:
        raise ConversionError(
            f"{what}: the checkpoint does not fit the configured architecture: "
            + "; ".join(
                f"{label} {len(items)}: {', '.join(items[:4])}"
                for label, items in (("missing", missing), ("wrong shape", bad), ("unused", unused))
                if items
            )
        )
    return out


# ----------------------------------------------------------------------------------------------- CLIP
def clip_vision_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``CLIPVisionConfig`` arguments read off an OpenAI CLIP image tower's tensors (keys without ``visual.``)."""
    width, _, patch, _ = sd["conv1.weight"].shape
    grid = int(round(math.sqrt(sd["positional_embedding"].shape[0] - 1)))
    layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    return dict(
        hidden_size=int(width),
        intermediate_size=int(sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=int(width) // 64,
        image_size=grid * int(patch),
        patch_size=int(patch),
        projection_dim=int(sd["proj"].shape[1]),
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


def clip_vision_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An OpenAI CLIP image tower (keys without ``visual.``) → ``CLIPVisionModelWithProjection`` tensors."""
    v = "vision_model."
    out = {
        f"{v}embeddings.class_embedding": sd["class_embedding"],
        f"{v}embeddings.patch_embedding.weight": sd["conv1.weight"],
        f"{v}embeddings.position_embedding.weight": sd["positional_embedding"],
        "visual_projection.weight": sd["proj"].t().contiguous(),
    }
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"{v}{ours}.{p}"] = sd[f"{theirs}.{p}"]
    layers = {int(k.split(".")[2]) for k in sd if k.startswith("transformer.resblocks.")}
    renames = {
        "self_attn.out_proj": "attn.out_proj",
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    for i in sorted(layers):
        src, dst = f"transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        for p in ("weight", "bias"):
            q, k, val = sd[f"{src}attn.in_proj_{p}"].chunk(3, dim=0)
            out.update({f"{dst}self_attn.q_proj.{p}": q, f"{dst}self_attn.k_proj.{p}": k})
            out[f"{dst}self_attn.v_proj.{p}"] = val
            for ours, theirs in renames.items():
                out[f"{dst}{ours}.{p}"] = sd[f"{src}{theirs}.{p}"]
    return out


# ----------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat tensor dict of an ldm checkpoint: safetensors as is; a pickle (``.ckpt``/``.pt``/``.pth``) through
    ``torch.load(weights_only=True, mmap=True)`` (never full unpickling; see the module docstring), its
    ``state_dict`` entry if it has one (Lightning checkpoints)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"read_checkpoint(): no such file {str(p)!r}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    import pickle

    try:
        data = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError) as e:
        raise ConversionError(
            f"read_checkpoint(): {p} was refused by torch.load(weights_only=True): it holds more than tensors, "
            f"numbers and containers, and unpickling it in full could run code. Convert it to .safetensors once, "
            f"in an environment you trust (see `pgc-fast convert-zero123 --help`), and pass that file "
            f"({str(e).splitlines()[0][:160]})"
        ) from e
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"read_checkpoint(): {p} holds no flat dict of tensors (nor a 'state_dict' entry)")
    return state


def with_ema(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet tensors replaced by their EMA copies when the checkpoint has them, as the original did
    (``model.model_ema.copy_to(model.model)``); ldm names an EMA copy ``model_ema.`` + the name without dots."""
    out = dict(sd)
    if sum(k.startswith("model_ema.") for k in sd) < 100:
        return out
    for key in sd:
        if key.startswith(LDM_UNET):
            ema = "model_ema." + "".join(key[len("model.") :].split("."))
            if ema in sd:
                out[key] = sd[ema]
    return out


def split_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix``, with it removed."""
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
