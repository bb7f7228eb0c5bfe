"""The CLIP image encoder of the CLIP reference loss (the original's ``--guidance_o clip``: OpenAI CLIP ViT-B/16,
its guidance/clip_utils.py): ``CLIPVisionModelWithProjection`` from a hub id or local directory, or the built-in
``tiny-clip`` (seeded random, 32² inputs) for tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from pgc_fast.config.schema import CLIP_BUILTINS
from pgc_fast.guidance.models.loading import GuidanceLoadError, _raise_missing, _refused_pickle, _resolve, hf_token
from pgc_fast.guidance.models.zero123 import CLIP_MEAN, CLIP_STD, TINY_CLIP_CONFIG


@dataclass
class ClipImageEncoder:
    """A frozen CLIP image tower and its input convention (size, mean, std)."""

    model: Any
    size: int
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


def load_clip_image_encoder(
    name: str,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | None = None,
    token_file: str | None = "TOKEN",
    seed: int = 0,
) -> ClipImageEncoder:
    """``tiny-clip``, or a hub id / local directory holding a CLIP model (config.json + weights); frozen."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    device = torch.device(device)
    if name in CLIP_BUILTINS:
        torch.manual_seed(seed)
        model: Any = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_CONFIG))
        model = model.to(device=device, dtype=dtype)
        size = int(TINY_CLIP_CONFIG["image_size"])
        model.requires_grad_(False).eval()
        return ClipImageEncoder(model, size)
    problems: list[str] = []
    path = _resolve(name, [""], cache_dir=cache_dir, token=hf_token(token_file), half=False, problems=problems)
    if problems or path is None:
        _raise_missing(problems, [name], cache_dir, builtins=CLIP_BUILTINS, flag="--guidance.clip_model")
    assert path is not None
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(str(path), torch_dtype=dtype)
        model = model.to(device)
    except Exception as e:
        why = "its .bin weights are a pickle holding more than tensors" if _refused_pickle(e) else str(e)
        raise GuidanceLoadError(
            f"loading the CLIP image encoder from {path} failed: {why.splitlines()[0][:300]}"
        ) from e
    model.requires_grad_(False).eval()
    pre = path / "preprocessor_config.json"
    fe = json.loads(pre.read_text()) if pre.is_file() else {}
    crop = fe.get("crop_size", model.config.image_size)
    size = int(crop.get("height", model.config.image_size) if isinstance(crop, dict) else crop)
    return ClipImageEncoder(
        model,
        size,
        tuple(fe.get("image_mean", CLIP_MEAN)),
        tuple(fe.get("image_std", CLIP_STD)),
    )
