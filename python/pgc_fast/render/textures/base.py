"""The Texture protocol: what the renderer samples for a surface's colour and what the loop optimises and bakes.

A new texture kind (a PBR material next) implements it; the scene and the exporter call only these members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from pgc_fast.render.backends import RasterBackend
    from pgc_fast.render.renderer import RenderMesh
    from pgc_fast.render.textures.bake import BakedTexture


class Texture(Protocol):
    """``domain`` says how the renderer samples it (render/renderer.py): "position" (called at surface points
    [N,3] → [N,C]), "uv" (``sample(backend, uv)`` at interpolated UVs; the mesh must carry UVs: ``needs_uvs``)
    or "vertex" (per-vertex colours)."""

    domain: str
    needs_uvs: bool

    def param_groups(self, lr: float, grid_lr_scale: float) -> list[dict[str, Any]]:
        """Optimiser groups (the original's: grids at grid_lr_scale × lr, MLPs at lr)."""
        ...

    def jittered(self, generator: torch.Generator | None, amount: float = 1e-3) -> Texture | Callable[..., Any]:
        """What a training render samples when ``texture.pos_perturb`` is on (the texture itself when the kind
        has no query position to jitter)."""
        ...

    def init_from_vertex_colors(self, mesh: RenderMesh, backend: RasterBackend, **kwargs: Any) -> bool:
        """Initialise from ``mesh.colors`` (the original's ``--init_texture``); True when done."""
        ...

    def bake(self, mesh: RenderMesh, backend: RasterBackend, resolution: int, dilation: int) -> BakedTexture:
        """The texture as a ``resolution``² UV image (renderer rows: row 0 = v = 0) with its atlas."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...
