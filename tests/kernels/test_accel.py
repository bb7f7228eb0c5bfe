"""The chunked-attention processor gives the stock diffusers VAE's outputs and gradients."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from pgc_fast.guidance.models.accel import use_chunked_attention  # noqa: E402


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


def _triton_device(monkeypatch) -> tuple[str, str]:
    """(device, backend) for the fused-GroupNorm checks: Triton runs on CUDA tensors, or on CPU tensors under the
    interpreter; without either the torch twin still checks the module wiring. On CUDA, TF32 is turned off so the
    float32 convolutions around the kernel do not swamp the 1e-4 comparison with their own 1e-3 rounding."""
    import os

    interp = os.environ.get("TRITON_INTERPRET") == "1"
    dev = "cuda" if torch.cuda.is_available() and not interp else "cpu"
    if dev == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    return dev, "triton" if dev == "cuda" or interp else "torch"


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


def test_fused_group_norm_matches_stock_vae(monkeypatch):
    from pgc_fast.guidance.models.accel import use_fused_group_norm

    dev, backend = _triton_device(monkeypatch)
    vae = _tiny_vae().to(dev)
    x = torch.rand(2, 3, 24, 24, dtype=torch.float64, device=dev, requires_grad=True)
    ref = vae.encode(x).latent_dist.mean
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    n = use_fused_group_norm(vae, backend=backend)
    # per coder: 2 down/up blocks × resnets × 2 norms + mid 2 resnets × 2 + attention 1 + conv_norm_out 1
    assert n == 2 * (2 * 1 * 2 + 2 * 2 + 1 + 1) + 2 * 2  # the decoder's up blocks have layers_per_block + 1
    assert not any(type(m) is torch.nn.GroupNorm for m in vae.encoder.modules())
    out = vae.float().encode(x.float()).latent_dist.mean
    (gout,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gout, gref, rtol=1e-3, atol=1e-4)


def test_frozen_convs_same_gradients_and_no_saved_input():
    from pgc_fast.guidance.models.accel import use_frozen_convs

    vae = _tiny_vae().requires_grad_(False)
    x = torch.rand(2, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    ref = vae.encode(x).latent_dist.mean
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    assert use_frozen_convs(vae) > 0
    out = vae.encode(x).latent_dist.mean
    (gout,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(gout, gref, rtol=1e-10, atol=1e-12)

    conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1).double().requires_grad_(False)
    use_frozen_convs(conv)
    xin = torch.randn(1, 4, 9, 7, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        conv(xin)
    assert list(xin.shape) not in [list(s) for s in saved]  # only the weight is kept
    assert torch.autograd.gradcheck(lambda t: conv(t), (xin,))
    conv.weight.requires_grad_(True)  # unfrozen: stock path, weight gets a gradient
    conv(xin).sum().backward()
    assert conv.weight.grad is not None


def test_fused_group_norm_matches_stock_unet_and_controlnet(monkeypatch):
    from pgc_fast.guidance.models.accel import use_fused_group_norm
    from pgc_fast.guidance.models.builtin import build_builtin

    dev, backend = _triton_device(monkeypatch)
    bundle = build_builtin("tiny-sdxl", control_types=("depth",), dtype=torch.float32)
    unet, cn = bundle.unet.to(dev), bundle.controlnet.to(dev)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float32)
    t = torch.tensor([10, 400])
    hid = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g, dtype=torch.float32)
    add = {
        "text_embeds": torch.randn(
            2,
            unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim,
            generator=g,
            dtype=torch.float32,
        ),
        "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2, dtype=torch.float32),
    }
    cond = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float32)
    z, t, hid, cond = (v.to(dev) for v in (z, t, hid, cond))
    add = {k: v.to(dev) for k, v in add.items()}

    def run():
        down, mid = cn(z, t, hid, controlnet_cond=cond, added_cond_kwargs=add, return_dict=False)
        return unet(
            z, t, hid, added_cond_kwargs=add, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample

    ref = run()
    assert use_fused_group_norm(unet, backend=backend) > 0 and use_fused_group_norm(cn, backend=backend) > 0
    assert not any(type(m) is torch.nn.GroupNorm for m in [*unet.modules(), *cn.modules()])
    out = run()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_compile_blocks_same_outputs_and_shared_graphs():
    """Regional compilation wraps every ResNet/transformer block; blocks of one shape share compiled code. The
    'eager' dynamo backend keeps this a CPU-cheap check of the mechanics (inductor itself runs on the GPU bench)."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter

    from pgc_fast.guidance.models.accel import compile_blocks
    from pgc_fast.guidance.models.builtin import build_builtin

    torch._dynamo.reset()
    unet = build_builtin("tiny-sdxl", dtype=torch.float32).unet
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([10, 400])
    hid = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    pdim = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    add = {"text_embeds": torch.randn(2, pdim, generator=g), "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2)}
    ref = unet(z, t, hid, added_cond_kwargs=add).sample
    counter = CompileCounter()
    n = compile_blocks(unet, backend=counter)
    kinds = {type(m).__name__ for m in unet.modules() if getattr(m, "_compiled_call_impl", None) is not None}
    assert n > 0 and kinds == {"ResnetBlock2D", "BasicTransformerBlock"}
    out = unet(z, t, hid, added_cond_kwargs=add).sample
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert 0 < counter.frame_count < n  # shared graphs: fewer compiles than blocks
    assert compile_blocks(torch.nn.Linear(2, 2)) == 0
    torch._dynamo.reset()


@pytest.mark.parametrize("triton_bias", [False, True])
def test_all_vae_levers_together_match_stock(monkeypatch, triton_bias):
    """fast_vae's combination: frozen convs whose bias (and a ResNet block's residual) is added in one pass by
    pgc_kernels.bias_add, fused GroupNorm+SiLU, channels-last — same latents and pixel gradients as stock."""
    import os

    import pgc_fast.guidance.models.accel as A

    if triton_bias:
        if os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("the Triton bias pass on CPU needs TRITON_INTERPRET=1")
        monkeypatch.setattr(A, "_TRITON_BIAS_ON_CPU", True)
    vae = _tiny_vae().float().requires_grad_(False)
    x = torch.rand(2, 3, 24, 24, requires_grad=True)
    ref = vae.encode(2 * x - 1).latent_dist.mean
    (gref,) = torch.autograd.grad(ref.square().sum(), x)
    assert A.use_frozen_convs(vae) > 0 and A.use_fused_group_norm(vae, backend="torch") > 0
    calls = []
    real = A.FrozenConv2dFunction.apply
    monkeypatch.setattr(A.FrozenConv2dFunction, "apply", lambda *a: calls.append(a[-1] is not None) or real(*a))
    vae = vae.to(memory_format=torch.channels_last)
    xin = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = vae.encode(2 * xin - 1).latent_dist.mean
    (gout,) = torch.autograd.grad(out.square().sum(), xin)
    assert any(calls)  # some convs took a residual (the fused ResNet tail)
    downs = [m for m in vae.encoder.modules() if type(m).__name__ == "Downsample2D"]
    assert downs and all(getattr(m.forward, "__func__", None) is A._downsample_forward for m in downs)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gout, gref, rtol=1e-4, atol=1e-5)
