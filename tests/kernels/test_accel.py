"""The chunked-attention processor gives the stock diffusers VAE's outputs and gradients."""
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from pgc_fast.accel import use_chunked_attention  # noqa: E402


def _tiny_vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=32,
    ).double()


def test_vae_encoder_matches_stock_attention():
    vae = _tiny_vae()
    x = torch.rand(2, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    ref = vae.encode(x).latent_dist.mean
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    # Tiny VAE has head dim 64: force the swap for every self-attention module.
    assert use_chunked_attention(vae, min_head_dim=1) == 2
    out = vae.encode(x).latent_dist.mean
    (gout,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gout, gref, rtol=1e-9, atol=1e-11)


def test_default_threshold_leaves_small_heads_alone():
    assert use_chunked_attention(_tiny_vae()) == 0
