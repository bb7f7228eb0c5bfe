"""The speed levers wired into build_guidance (issue 21): the pinned SDPA backend, FP8's refusals, the persistent
compile cache, and where the VAE levers are applied."""

from __future__ import annotations

import os

import pytest
import torch
from unet_support import tiny_unet_call

from pgc_fast.config import GuidanceConfig
from pgc_fast.guidance import build_builtin, build_guidance
from pgc_fast.guidance.models import accel, fp8

pytest.importorskip("diffusers")


def _bundle():
    return build_builtin("tiny-sd", control_types=("depth",))


def test_pinned_math_backend_same_outputs_as_auto():
    from diffusers.models.attention_processor import Attention

    bundle = _bundle()
    run = tiny_unet_call(bundle)
    ref = run()
    n = accel.use_sdpa_backend(bundle.unet, "math") + accel.use_sdpa_backend(bundle.controlnet, "math")
    attn = [m for m in [*bundle.unet.modules(), *bundle.controlnet.modules()] if isinstance(m, Attention)]
    assert n == len(attn) > 0
    assert all(isinstance(m.processor, accel.PinnedSDPAProcessor) for m in attn)
    torch.testing.assert_close(run(), ref, rtol=1e-5, atol=1e-5)  # CPU auto = flash-CPU kernel: float32 rounding
    assert accel.use_sdpa_backend(bundle.unet, "auto") == 0
    with pytest.raises(ValueError, match="backend must be cudnn"):
        accel.PinnedSDPAProcessor("fastest")


def test_pinned_backend_traces_under_regional_compile():
    import torch._dynamo

    torch._dynamo.reset()
    bundle = _bundle()
    accel.use_sdpa_backend(bundle.unet, "math")
    accel.use_sdpa_backend(bundle.controlnet, "math")
    run = tiny_unet_call(bundle)
    with torch.no_grad():
        ref = run()
        accel.compile_blocks(bundle.unet, backend="aot_eager")
        out = run()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_build_guidance_refuses_levers_this_device_lacks():
    bundle = _bundle()
    cfg = GuidanceConfig(text="a panda", controlnets=("depth",), control_scales=(1.0,))
    if not fp8.fp8_supported("cuda"):
        with pytest.raises(ValueError, match=r"cfg.fp8: FP8 matrix products need .*9.0 or newer"):
            build_guidance(GuidanceConfig(**{**cfg.__dict__, "fp8": True}), bundle, seed=0, iters=10)
    with pytest.raises(ValueError, match="cfg.attention=cudnn needs a CUDA device"):
        build_guidance(GuidanceConfig(**{**cfg.__dict__, "attention": "cudnn"}), _bundle(), seed=0, iters=10)
    with pytest.raises(ValueError, match="fp8 cannot be combined with loss=vsd"):
        build_guidance(GuidanceConfig(text="a", loss="vsd", fp8=True), build_builtin("tiny-sdxl"), seed=0, iters=10)
    g = build_guidance(GuidanceConfig(**{**cfg.__dict__, "attention": "math"}), _bundle(), seed=0, iters=10)
    assert any(isinstance(getattr(m, "processor", None), accel.PinnedSDPAProcessor) for m in g.unet.modules())


def test_persistent_compile_cache_goes_to_the_user_cache_unless_set(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "PGC_FAST_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    monkeypatch.setattr(os, "environ", env)
    want = str(tmp_path / "xdg" / "pgc-fast" / "inductor")
    assert accel.persistent_compile_cache() == want and os.path.isdir(want)
    assert accel.persistent_compile_cache(str(tmp_path / "other")) == want  # already set: kept
    env.pop("TORCHINDUCTOR_CACHE_DIR")
    env["PGC_FAST_CACHE_DIR"] = str(tmp_path / "mine")
    assert accel.persistent_compile_cache() == str(tmp_path / "mine" / "inductor")
    env["TORCHINDUCTOR_CACHE_DIR"] = "/somewhere/the/user/chose"
    assert accel.persistent_compile_cache() == "/somewhere/the/user/chose"
    env.pop("TORCHINDUCTOR_CACHE_DIR")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert accel.persistent_compile_cache(str(blocker)) is None  # cannot create a directory there: torch's default
    import torch._inductor.config as icfg

    assert icfg.fx_graph_cache and icfg.autotune_local_cache


def test_vae_levers_only_where_they_pay():
    """fast_vae's levers: on CUDA at SDXL's 1024² (they cost time at 512² and 256²), on the CPU at every size."""
    from pgc_fast.guidance.build import FAST_VAE_MIN_RESOLUTION, apply_speed_levers, vae_levers_pay

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert FAST_VAE_MIN_RESOLUTION == 1024
    assert not vae_levers_pay(256, cuda) and not vae_levers_pay(512, cuda) and vae_levers_pay(1024, cuda)
    assert vae_levers_pay(64, cpu)

    def frozen(b) -> bool:
        return any(getattr(m, "_pgc_frozen_conv", False) for m in b.vae.modules())

    on, off = _bundle(), _bundle()
    apply_speed_levers(GuidanceConfig(), on, cpu)
    apply_speed_levers(GuidanceConfig(fast_vae=False), off, cpu)
    assert frozen(on) and not frozen(off)
