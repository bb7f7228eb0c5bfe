"""Variational Score Distillation (ProlificDreamer, arXiv 2305.16213, eq. 9), camera ordering fixed.

g_z = w(t) [eps_hat_pretrained(z_t; y_view, t) - eps_lora(z_t; y, t, camera)], where eps_hat uses CFG (diffusers
convention by default, s = 7.5 in the README) and eps_lora is a LoRA-adapted copy of the same UNet conditioned
on the camera pose (a TimestepEmbedding(16 → time-embed dim) of the flattened 4x4 camera-to-world matrix,
added to the time embedding). The LoRA is trained each step on the current (detached) latents with the
standard denoising loss at t' ~ U[0, 1000), camera dropped with probability 0.1.

A bug of the original, fixed: the original fed class labels [camera; zeros] while its prompt batch was [negative;
positive], so the estimate it used was the camera-less one. Here the LoRA estimate is a single call with the
positive (view-independent) prompt and the sample's own camera.

Memory: instead of a second UNet copy (the original's ``pipe_lora``), the LoRA is a peft adapter on the one
UNet, switched off for the pretrained prediction (``unet.disable_adapters()``).

The LoRA update happens inside :meth:`Guidance.step` (its own AdamW, its own backward on a graph that is
disconnected from the scene), so the training loop needs to know nothing about it. In fp16 (the CUDA default) the
LoRA loss is scaled by a GradScaler of its own (which syncs once per step); bf16 needs none.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from pgc_fast.config.schema import GuidanceConfig
from pgc_fast.guidance import schedule
from pgc_kernels import sds_grad

if TYPE_CHECKING:
    from pgc_fast.guidance.engine import Batch, Guidance, MethodOutput


class VSDState:
    """LoRA adapter + camera embedding + their optimiser, attached to the guidance UNet (left switched off).

    Args:
        unet: the guidance's (uncompiled) UNet; gets a peft adapter named ``vsd``.
        cfg: the guidance configuration (``vsd_lora_rank``, ``vsd_lora_lr``).
        device, dtype: the UNet's; fp16 turns on the LoRA's own GradScaler.
    """

    def __init__(self, unet: Any, cfg: GuidanceConfig, device: torch.device, dtype: torch.dtype):
        try:
            from peft import LoraConfig
        except ImportError as e:  # pragma: no cover - peft is in the 'full' extra
            raise ImportError("VSD needs peft: pip install peft (or pgc-fast[full])") from e
        from diffusers.models.embeddings import TimestepEmbedding

        self.unet = unet
        unet.add_adapter(
            LoraConfig(
                r=cfg.vsd_lora_rank,
                lora_alpha=cfg.vsd_lora_rank,
                init_lora_weights="gaussian",
                target_modules=["to_k", "to_q", "to_v", "to_out.0"],
            ),
            adapter_name="vsd",
        )
        self.lora_params = []
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.data = p.data.float()  # fp32 master weights for Adam; peft casts activations per layer
                p.requires_grad_(True)
                self.lora_params.append(p)
        time_dim = unet.time_embedding.linear_2.out_features
        self.camera = TimestepEmbedding(16, time_dim).to(device)  # fp32
        self.params = self.lora_params + list(self.camera.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=cfg.vsd_lora_lr, betas=(0.9, 0.99), eps=1e-15)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        unet.disable_adapters()

    def state_dict(self) -> dict:
        """LoRA weights, camera MLP and optimiser state (the original never saved them, a bug of the original)."""
        lora = {n: p.detach().clone() for n, p in self.unet.named_parameters() if "lora_" in n}
        return {
            "lora": lora,
            "camera": self.camera.state_dict(),
            "opt": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        params = dict(self.unet.named_parameters())
        missing = [n for n in state["lora"] if n not in params]
        if missing:
            raise ValueError(
                f"VSDState.load_state_dict(): state must match this UNet's LoRA, got unknown keys {missing[:3]}"
            )
        with torch.no_grad():
            for n, v in state["lora"].items():
                params[n].copy_(v)
        self.camera.load_state_dict(state["camera"])
        self.opt.load_state_dict(state["opt"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    @contextlib.contextmanager
    def disabled(self):
        """The pretrained UNet (adapter off, no class embedding): the resting state, so nothing to switch."""
        assert self.unet.class_embedding is None
        yield

    @contextlib.contextmanager
    def enabled(self):
        unet = self.unet
        unet.enable_adapters()
        unet.class_embedding = self.camera
        try:
            yield
        finally:
            unet.class_embedding = None
            unet.disable_adapters()

    def lora_eps(self, g: Guidance, z_t: torch.Tensor, t: torch.Tensor, cams: torch.Tensor, orig_hw) -> torch.Tensor:
        """The LoRA's camera-conditioned eps (call inside :meth:`enabled`), positive view-independent prompt."""
        ids = torch.zeros(z_t.shape[0], dtype=torch.long, device=g.device)
        hidden, added = g.embeddings(ids, orig_hw, cfg=False, invariant=True)
        return g.unet_eps(z_t, t, hidden, added, [], class_labels=cams)


def run(g: Guidance, batch: Batch) -> MethodOutput:
    """VSD gradient of the batch (pretrained CFG estimate minus the camera-conditioned LoRA estimate), then one
    update of the LoRA on the same latents."""
    from pgc_fast.guidance.engine import MethodOutput

    cfg = g.cfg
    st = g.vsd
    assert st is not None
    b = batch.z.shape[0]
    t = g.sample_t(b, batch.step, dreamtime=cfg.dreamtime)
    noise = torch.randn(batch.z.shape, device=g.device, generator=g.generator)
    abar = g.alphas[t]
    z_det = batch.z.detach().float()
    z_t = schedule.add_noise(z_det, noise, abar)
    eps_c, eps_u = g.predict_cfg(z_t, t, batch.ids, batch.controls, batch.orig_hw)
    cams = (
        batch.c2w.reshape(b, 16).float().to(g.device) if batch.c2w is not None else torch.zeros(b, 16, device=g.device)
    )
    with torch.no_grad(), st.enabled():
        eps_lora = st.lora_eps(g, z_t, t, cams, batch.orig_hw)
    w = schedule.sds_weight(abar, cfg.weighting) * cfg.grad_scale
    grad = sds_grad(
        eps_c,
        eps_u,
        eps_lora,
        w,
        cfg.guidance_scale,
        convention=g.convention,
        cfg_rescale=cfg.cfg_rescale,
        clamp=cfg.latent_clamp,
        clip=cfg.latent_clip,
    )
    lora_loss = update_lora(g, st, z_det, cams, batch.orig_hw)
    return MethodOutput(grad=grad, stats={"t": t, "weight": w, "lora_loss": lora_loss})


def update_lora(g: Guidance, st: VSDState, z_det: torch.Tensor, cams: torch.Tensor, orig_hw) -> torch.Tensor:
    """One AdamW step of the LoRA + camera MLP on the standard denoising loss of the (detached) latents at
    t' ~ U[vsd_t_range], camera dropped with probability ``vsd_camera_dropout``. Returns the loss (detached)."""
    cfg = g.cfg
    b = z_det.shape[0]
    lo, hi = schedule.t_bounds(cfg.vsd_t_range, g.num_train_timesteps)
    t2 = schedule.sample_timesteps(b, lo, hi, g.device, g.generator)
    noise2 = torch.randn(z_det.shape, device=g.device, generator=g.generator)
    a2 = g.alphas[t2]
    z2 = schedule.add_noise(z_det, noise2, a2)
    keep = (torch.rand(b, 1, device=g.device, generator=g.generator) >= cfg.vsd_camera_dropout).float()
    with torch.enable_grad(), st.enabled():
        ids = torch.zeros(b, dtype=torch.long, device=g.device)
        hidden, added = g.embeddings(ids, orig_hw, cfg=False, invariant=True)
        out = g.unet(
            z2.to(g.dtype),
            t2,
            encoder_hidden_states=hidden,
            added_cond_kwargs=added,
            class_labels=cams * keep,
            return_dict=False,
        )[0]
        if g.prediction_type == "v_prediction":
            target = a2.sqrt().view(-1, 1, 1, 1) * noise2 - (1 - a2).sqrt().view(-1, 1, 1, 1) * z_det
        else:
            target = noise2
        lora_loss = F.mse_loss(out.float(), target)
        st.scaler.scale(lora_loss).backward()
    st.scaler.step(st.opt)
    st.scaler.update()
    st.opt.zero_grad(set_to_none=True)
    return lora_loss.detach()
