"""Shared by the UNet lever tests: one UNet + ControlNet call of a tiny built-in bundle on fixed inputs."""

from __future__ import annotations

import torch


def tiny_unet_call(bundle):
    """A function running ``bundle``'s ControlNet + UNet on fixed inputs (batch 2, 8² latents, 64² condition)."""
    unet, cn = bundle.unet, bundle.controlnet
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 400])
    hid = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    add = None
    if unet.config.addition_embed_type == "text_time":
        pdim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        add = {
            "text_embeds": torch.randn(2, pdim, generator=g),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2),
        }
    cond = torch.rand(2, 3, 64, 64, generator=g)

    def run():
        down, mid = cn(z, t, hid, controlnet_cond=cond, added_cond_kwargs=add, return_dict=False)
        return unet(
            z, t, hid, added_cond_kwargs=add, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample

    return run
