"""Pure-torch twins of every pgc_kernels op: same signatures, run anywhere (CPU included).

They are the CPU fallback (``backend="torch"``), the oracle the tests compare the Triton kernels
against, and the baseline the benchmarks time.
"""
from __future__ import annotations


# --- chunked_attention -------------------------------------------------------------------------------
def chunked_attention_reference(q, k, v, *, scale=None, chunk_size=None, backend="torch"):
    """Twin of :func:`pgc_kernels.chunked_attention`: ``softmax(scale · q kᵀ) v`` by PyTorch SDPA with the
    math backend (materialises the full [B,H,N,M] matrix). q [B,H,N,D], k [B,H,M,D], v [B,H,M,Dv], any
    device/dtype; returns [B,H,N,Dv]. ``chunk_size``/``backend`` are accepted for signature parity and ignored."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    s = float(scale) if scale is not None else q.shape[-1] ** -0.5
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, scale=s)


# --- group_norm_silu ---------------------------------------------------------------------------------
def group_norm_silu_reference(x, num_groups, weight=None, bias=None, eps=1e-5, *, silu=True, backend="torch"):
    """Twin of :func:`pgc_kernels.group_norm_silu`: ``F.silu(F.group_norm(x, …))`` (``silu=False``: GroupNorm
    alone), as diffusers' ResnetBlock2D computes it. x [B,C,*spatial] any float dtype/device; weight/bias
    [C] cast to x's dtype; returns x's shape and dtype. ``backend`` is accepted for signature parity."""
    import torch.nn.functional as F

    w = weight.to(x.dtype) if weight is not None else None
    b = bias.to(x.dtype) if bias is not None else None
    y = F.group_norm(x, num_groups, w, b, eps)
    return F.silu(y) if silu else y
