"""Prompt encoding, once per run: the prompt, its view-dependent variants and their negatives.

SD 1.x/2.x: last hidden state of the CLIP text encoder ([N, 77, D]); SDXL: penultimate hidden states of CLIP-L
and OpenCLIP-bigG concatenated ([N, 77, 2048]) plus bigG's projected pooled embedding ([N, 1280]), as the SDXL
pipeline does. After encoding, the text encoders are moved to the CPU (they are never needed on the GPU again).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgc_fast.guidance import prompts


@dataclass
class TextEmbeddings:
    """Encoded prompts, on the guidance device in the UNet dtype. Row i of each tensor is entry i of
    :func:`prompts.view_prompts` (0 = plain prompt, 1 + view id = its view variant).

    cond / uncond: [6, 77, D]; pooled / uncond_pooled: [6, P] (SDXL) or None.
    """

    cond: torch.Tensor
    uncond: torch.Tensor
    pooled: torch.Tensor | None
    uncond_pooled: torch.Tensor | None


@torch.no_grad()
def encode_prompts(
    prompts: list[str], tokenizers: list, encoders: list, *, sdxl: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode ``prompts`` → (hidden [N, 77, D], pooled [N, P] or None), on ``device``, in the encoders' dtype."""
    hidden, pooled = [], None
    for tok, enc in zip(tokenizers, encoders, strict=False):
        ids = tok(
            prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(next(enc.parameters()).device)
        if sdxl:
            out = enc(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            pooled = out[0]  # the last encoder (bigG with projection): text_embeds
        else:
            hidden.append(enc(ids)[0])
    return torch.cat(hidden, dim=-1).to(device), (pooled.to(device) if pooled is not None else None)


def build_text_embeddings(
    text: str,
    negative: str,
    *,
    tokenizers: list,
    encoders: list,
    sdxl: bool,
    device: torch.device,
    dtype: torch.dtype,
    suppress_face: bool = False,
    zero_empty_negative: bool | None = None,
    offload: bool = True,
) -> TextEmbeddings:
    """Encode the prompt, its 5 view variants and the matching negatives once; then offload the encoders."""
    positives = prompts.view_prompts(text)
    negatives = prompts.view_negatives(negative, suppress_face)
    enc_device = next(encoders[0].parameters()).device
    if enc_device.type != device.type and device.type == "cuda":
        for e in encoders:
            e.to(device)
    cond, pooled = encode_prompts(positives, tokenizers, encoders, sdxl=sdxl, device=device)
    uncond, upooled = encode_prompts(negatives, tokenizers, encoders, sdxl=sdxl, device=device)
    zero = sdxl if zero_empty_negative is None else zero_empty_negative
    if zero:
        empty = torch.tensor([n == "" for n in negatives], device=device).view(-1, 1, 1)
        uncond = torch.where(empty, torch.zeros_like(uncond), uncond)
        if upooled is not None:
            upooled = torch.where(empty.view(-1, 1), torch.zeros_like(upooled), upooled)
    if offload:
        for e in encoders:
            e.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    cast = lambda t: t.to(dtype) if t is not None else None
    return TextEmbeddings(cond.to(dtype), uncond.to(dtype), cast(pooled), cast(upooled))
