"""Neural 3D fields of PGC-3D: a multi-resolution hash-grid encoding followed by a small MLP.

The original (fudan-zvg/PGC-3D, the original's Rasterizer_mesh) represents the texture of a fixed mesh, the DMTet SDF
and the PBR material as fields queried at rasterised surface points::

    c(p) = sigmoid(MLP(HashGrid((p + bound) / (2 bound)))) · 0.9 + 0.05          # TextureField, RGB
    z(p) = MLP(HashGrid(...))                                                     # TextureField(latent=True), 4 ch
    [s, δ] = MLP_{64→32→32→4}(HashGrid(...))                                      # Field(4, hidden=(32, 32)), DMTet
    m(p) = MLP_{64→32→9}(HashGrid(...))                                           # Field(9), PBR material (pre-sigmoid)

with HashGrid = 16 levels × 4 features, 2^16 rows per level, resolutions 16 → 4096, trilinear, table initialised
U(−1e-4, 1e-4); MLP = Linear layers with bias and ReLU between them (PyTorch default init). The encoding is
:func:`pgc_kernels.hash_grid_encode` (Triton on CUDA, its torch twin elsewhere).

Typical use in a training step (the renderer gives world positions and coverage per pixel)::

    field = TextureField(bound=1.0).cuda()
    opt = torch.optim.Adam(field.param_groups(lr=1e-3), betas=(0.9, 0.99), eps=1e-15)
    albedo = field.query_masked(pos_bhw3, covered_bhw, background=1.0)   # [B, H, W, 3], field only where covered
    img = albedo * mask_aa + bg * (1 - mask_aa)                              # compositing stays in the renderer
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from pgc_kernels import hash_grid_encode

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class HashGridEncoding(nn.Module):
    """Learnable multi-resolution hash-grid table + :func:`pgc_kernels.hash_grid_encode`.

    Args:
        num_levels: L (the original: 16).
        level_dim: F, features per level (the original: 4).
        log2_table_size: log2 T, rows per level (the original: 16).
        base_resolution: coarsest resolution (16).
        finest_resolution: finest resolution (4096).
        interpolation: "linear" (the original) or "smoothstep".
        table_dtype: storage dtype of the table parameter. float32 (default) keeps the optimiser state and the
            gradient in float32 at little cost: a float32 row of 4 features (16 B) is one 32-byte memory sector,
            as a float16 one is. float16/bfloat16 halve the table's memory; their gradients are rounded to that
            dtype (float16 gradients underflow below 6e-8 without loss scaling).
        init_scale: the table is initialised U(−init_scale, init_scale) (the original: 1e-4).
        deterministic: table-gradient accumulation (see :func:`pgc_kernels.hash_grid_encode`); None follows
            ``torch.are_deterministic_algorithms_enabled()``.
        backend: "auto" | "triton" | "torch", passed to the kernel.

    Input [N, 3] float32 in [0, 1]^3 (clamped outside); output [N, L·F] float32.
    """

    def __init__(
        self,
        num_levels: int = 16,
        level_dim: int = 4,
        log2_table_size: int = 16,
        base_resolution: float = 16,
        finest_resolution: float = 4096,
        interpolation: Literal["linear", "smoothstep"] = "linear",
        table_dtype: torch.dtype = torch.float32,
        init_scale: float = 1e-4,
        deterministic: bool | None = None,
        backend: Literal["auto", "triton", "torch"] = "auto",
    ) -> None:
        super().__init__()
        for name, v in (("num_levels", num_levels), ("level_dim", level_dim), ("log2_table_size", log2_table_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"HashGridEncoding(): {name} must be a positive int, got {v!r}")
        if log2_table_size > 30:
            raise ValueError(f"HashGridEncoding(): log2_table_size must be <= 30, got {log2_table_size}")
        if table_dtype not in _FLOAT_DTYPES:
            raise ValueError(f"HashGridEncoding(): table_dtype must be float32|float16|bfloat16, got {table_dtype}")
        if not (base_resolution >= 1 and finest_resolution >= base_resolution):
            raise ValueError(
                "HashGridEncoding(): resolutions must satisfy 1 <= base_resolution <= finest_resolution"
                f", got {base_resolution}, {finest_resolution}"
            )
        if interpolation not in ("linear", "smoothstep"):
            raise ValueError(
                f"HashGridEncoding(): interpolation must be 'linear' or 'smoothstep', got {interpolation!r}"
            )
        self.num_levels = num_levels
        self.level_dim = level_dim
        self.table_size = 2**log2_table_size
        self.base_resolution = base_resolution
        self.finest_resolution = finest_resolution
        self.interpolation = interpolation
        self.deterministic = deterministic
        self.backend = backend
        self.output_dim = num_levels * level_dim
        table = torch.empty(num_levels, self.table_size, level_dim, dtype=torch.float32).uniform_(
            -init_scale, init_scale
        )
        self.table = nn.Parameter(table.to(table_dtype))  # [L, T, F]

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        """x01: float32 [N, 3] in [0, 1]^3 on the table's device → float32 [N, L·F]."""
        out = hash_grid_encode(
            x01,
            self.table,
            base_resolution=self.base_resolution,
            finest_resolution=self.finest_resolution,
            interpolation=self.interpolation,
            deterministic=self.deterministic,
            backend=self.backend,
        )
        return out.float()

    def extra_repr(self) -> str:
        return (
            f"levels={self.num_levels}, level_dim={self.level_dim}, table_size={self.table_size}, "
            f"resolution={self.base_resolution}->{self.finest_resolution}, {self.interpolation}, "
            f"table_dtype={self.table.dtype}"
        )


class Field(nn.Module):
    """Generic field p ↦ MLP(HashGrid((p + bound) / (2·bound))) with raw (pre-activation) outputs.

    Args:
        out_dims: number of outputs (texture 3, latent 4, DMTet [s, δ] 4, PBR material 9).
        hidden: widths of the hidden layers (the original: (32,) for texture/material, (32, 32) for DMTet).
        bound: positions are expected in [−bound, bound]^3 (the original: 1); outside, the encoding clamps.
        mlp_dtype: dtype the MLP computes in: float32 (default), float16 or bfloat16. Weights stay float32
            parameters (cast on the fly), outputs are returned as float32. float16 gradients can underflow without
            loss scaling (the original used a GradScaler); bfloat16 needs none.
        **encoding_kwargs: passed to :class:`HashGridEncoding` (num_levels, level_dim, log2_table_size,
            base_resolution, finest_resolution, interpolation, table_dtype, init_scale, deterministic, backend).

    Forward: positions float32 [..., 3] (world space) on the module's device → float32 [..., out_dims].
    """

    def __init__(
        self,
        out_dims: int,
        hidden: Sequence[int] = (32,),
        *,
        bound: float = 1.0,
        mlp_dtype: torch.dtype = torch.float32,
        **encoding_kwargs,
    ) -> None:
        super().__init__()
        if isinstance(out_dims, bool) or not isinstance(out_dims, int) or out_dims < 1:
            raise ValueError(f"Field(): out_dims must be a positive int, got {out_dims!r}")
        hidden = tuple(hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"Field(): hidden must be a sequence of positive ints, got {hidden!r}")
        if not (isinstance(bound, (int, float)) and bound > 0):
            raise ValueError(f"Field(): bound must be a positive number, got {bound!r}")
        if mlp_dtype not in _FLOAT_DTYPES:
            raise ValueError(f"Field(): mlp_dtype must be float32|float16|bfloat16, got {mlp_dtype}")
        self.encoding = HashGridEncoding(**encoding_kwargs)
        self.bound = float(bound)
        self.out_dims = out_dims
        self.mlp_dtype = mlp_dtype
        dims = (self.encoding.output_dim, *hidden, out_dims)
        # PyTorch's default Linear init, as the original's MLP (only the grid gets U(−1e-4, 1e-4)).
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=True) for a, b in zip(dims[:-1], dims[1:], strict=False))

    def encode(self, positions: torch.Tensor) -> torch.Tensor:
        """float32 [..., 3] world positions → float32 [..., L·F] hash-grid features."""
        if not isinstance(positions, torch.Tensor) or positions.shape[-1:] != (3,) or positions.dtype != torch.float32:
            got = (
                f"{str(positions.dtype).replace('torch.', '')} {list(positions.shape)}"
                if isinstance(positions, torch.Tensor)
                else type(positions).__name__
            )
            raise ValueError(f"{type(self).__name__}(): positions must be a float32 tensor [..., 3], got {got}")
        lead = positions.shape[:-1]
        x01 = (positions.reshape(-1, 3) + self.bound) / (2.0 * self.bound)
        return self.encoding(x01).reshape(*lead, self.encoding.output_dim)

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        """float32 [..., L·F] features → float32 [..., out_dims] (computed in ``mlp_dtype``)."""
        dt = self.mlp_dtype
        h = h.to(dt)
        for i, layer in enumerate(self.layers):
            layer = cast(nn.Linear, layer)  # __init__ fills the list with nn.Linear only
            h = F.linear(h, layer.weight.to(dt), layer.bias.to(dt))
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h.float()

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encode(positions))

    def query_masked(
        self, positions: torch.Tensor, mask: torch.Tensor, background: float | torch.Tensor = 0.0
    ) -> torch.Tensor:
        """Evaluate the field only where ``mask`` is set; ``background`` elsewhere.

        Args:
            positions: float32 [B, H, W, 3] world positions (values under an unset mask are ignored).
            mask: bool [B, H, W] or [B, H, W, 1] (e.g. rasteriser coverage ``triangle_id > 0``), same device.
            background: a float, or a float tensor broadcastable to [B, H, W, C] (a colour [C], an image
                [B, H, W, C]); C = this field's output width.

        Returns:
            float32 [B, H, W, C]: the field's output (after :meth:`forward`'s activation) on covered pixels,
            ``background`` on the others. Differentiable w.r.t. the field's parameters (and positions), and
            w.r.t. a tensor background on uncovered pixels. Costs one host sync (``nonzero``).
        """
        name = type(self).__name__
        if not isinstance(positions, torch.Tensor) or positions.dim() != 4 or positions.shape[-1] != 3:
            got = list(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
            raise ValueError(f"{name}.query_masked(): positions must be a tensor [B, H, W, 3], got {got}")
        if mask.dim() == 4 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.dtype != torch.bool or mask.shape != positions.shape[:3] or mask.device != positions.device:
            raise ValueError(
                f"{name}.query_masked(): mask must be a bool tensor {list(positions.shape[:3])} on "
                f"{positions.device}, got {str(mask.dtype).replace('torch.', '')} {list(mask.shape)} "
                f"on {mask.device}"
            )
        b, h, w, _ = positions.shape
        c = self.out_dims
        bg = torch.as_tensor(background, dtype=torch.float32, device=positions.device)
        out = bg.expand(b, h, w, c).reshape(b * h * w, c).clone()
        idx = mask.reshape(-1).nonzero().squeeze(1)
        if idx.numel():
            vals = self(positions.reshape(-1, 3).index_select(0, idx))
            out = out.index_put((idx,), vals)
        return out.reshape(b, h, w, c)

    def param_groups(self, lr: float, grid_lr_scale: float = 10.0) -> list[dict]:
        """Optimiser groups as the original: the table at ``grid_lr_scale · lr`` (10×), the MLP at ``lr``."""
        return [
            {"params": [self.encoding.table], "lr": lr * grid_lr_scale, "name": "encoding"},
            {"params": list(self.layers.parameters()), "lr": lr, "name": "mlp"},
        ]
