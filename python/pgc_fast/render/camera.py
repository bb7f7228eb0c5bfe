"""Cameras: orbit sampling, right-handed look-at, projection, turntable, relative angles.

Conventions (all float32 torch tensors; ``B`` = number of views):

* World: Y up, the object at the origin (the mesh is normalised to max-abs 0.8 by the pipeline).
* Spherical coordinates as in the original (the original's nerf/provider.py, rand_poses / circle_poses): ``theta`` is
the polar angle from +Y
  (0 = straight above, 90° = on the equator), ``phi`` the azimuth with ``phi = 0`` on +Z and ``phi = 90°``
  on +X; the camera centre is ``c = r·(sinθ sinφ, cosθ, sinθ cosφ)``.
* Camera frame = OpenCV: camera-to-world rotation ``R = [right | down | forward]`` (columns),
  ``forward = normalize(target − c)``, ``right = normalize(forward × up)``, ``down = forward × right``.
  This frame is RIGHT-HANDED (``det R = +1``; right × down = forward). The original built
  ``right = forward × (0,−1,0)``, which gives ``det R = −1`` and mirrors every render (a bug of the original); here,
  seen from
  ``phi = 0`` (camera on +Z), world +X appears on the image's right, as in any viewer.
* ``c2w`` = [[R, c], [0, 0, 0, 1]]; world → camera is ``x_cam = Rᵀ (x − c)``; the camera looks along +z_cam.
* Projection (the original's D3D-style matrix), pinhole with the principal point at the image centre::

      P = [[2 fx/W, 0,      0,         0       ],
           [0,      2 fy/H, 0,         0       ],
           [0,      0,      F/(F−n),  −F n/(F−n)],
           [0,      0,      1,         0       ]]

  with focal lengths ``fx = fy = focal`` in pixels, near ``n`` = 0.1, far ``F`` = 1000. So ``w_clip = z_cam``,
  ``z/w ∈ [0, 1]`` between the planes, and NDC y grows downwards: the rasteriser's row 0 (clip y = −1) is the
  image TOP, no flip needed. A point lands at pixel (continuous, pixel centres at ``i + 0.5``)
  ``x_px = fx·x_cam/z_cam + W/2``, ``y_px = fy·y_cam/z_cam + H/2``.
* ``mvp = P · w2c``; clip positions are ``[x, y, z, 1] @ mvpᵀ``.

Everything random takes a ``torch.Generator`` (CPU) so a seed reproduces the same cameras on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

__all__ = [
    "Cameras",
    "OrbitSampler",
    "look_at",
    "perspective",
    "orbit_centers",
    "orbit_cameras",
    "turntable",
]

_WORLD_UP = (0.0, 1.0, 0.0)


def _check_batch(name: str, t: torch.Tensor, shape_tail: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 1 + len(shape_tail) or tuple(t.shape[1:]) != shape_tail:
        want = "[B" + "".join(f",{s}" for s in shape_tail) + "]"
        raise ValueError(f"{name}: must have shape {want}, got {list(t.shape)}")


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None, up: torch.Tensor | None = None) -> torch.Tensor:
    """Right-handed OpenCV-style camera-to-world matrices.

    eye, target, up: float [B,3] (target defaults to the origin, up to +Y). Returns float [B,4,4] with
    rotation columns (right, down, forward), ``det = +1``. Where ``forward`` is parallel to ``up`` (camera
    straight above/below) a fallback up axis (+Z) is used instead of producing NaNs.
    """
    _check_batch("look_at(): eye", eye, (3,))
    B = eye.shape[0]
    if target is None:
        target = torch.zeros_like(eye)
    if up is None:
        up = eye.new_tensor(_WORLD_UP).expand(B, 3)
    _check_batch("look_at(): target", target, (3,))
    _check_batch("look_at(): up", up, (3,))
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.linalg.cross(fwd, up, dim=-1)
    # Degenerate when forward ∥ up: pick another up axis for those rows only.
    bad = right.norm(dim=-1) < 1e-6
    if bool(bad.any()):
        alt = eye.new_tensor((0.0, 0.0, 1.0)).expand(B, 3)
        right = torch.where(bad[:, None], torch.linalg.cross(fwd, alt, dim=-1), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(fwd, right, dim=-1)
    c2w = torch.zeros(B, 4, 4, dtype=eye.dtype, device=eye.device)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = down
    c2w[:, :3, 2] = fwd
    c2w[:, :3, 3] = eye
    c2w[:, 3, 3] = 1.0
    return c2w


def perspective(
    focal_x: torch.Tensor, focal_y: torch.Tensor, width: int, height: int, near: float = 0.1, far: float = 1000.0
) -> torch.Tensor:
    """The projection matrix P of the module docstring. focal_x/focal_y: float [B] in pixels → float [B,4,4]."""
    if not (far > near > 0):
        raise ValueError(f"perspective(): need far > near > 0, got near={near}, far={far}")
    B = focal_x.shape[0]
    P = torch.zeros(B, 4, 4, dtype=focal_x.dtype, device=focal_x.device)
    P[:, 0, 0] = 2.0 * focal_x / width
    P[:, 1, 1] = 2.0 * focal_y / height
    P[:, 2, 2] = far / (far - near)
    P[:, 2, 3] = -far * near / (far - near)
    P[:, 3, 2] = 1.0
    return P


@dataclass
class Cameras:
    """A batch of B pinhole cameras (see the module docstring for every convention).

    c2w: float32 [B,4,4] camera-to-world (right, down, forward, centre); focal: float32 [B] focal length in
    pixels (square pixels); height/width: image size in pixels; near/far: clip planes. theta/phi/radius:
    float32 [B] spherical coordinates of the un-jittered orbit position (radians; radius in world units),
    kept for view-dependent prompts and camera conditioning.
    """

    c2w: torch.Tensor
    focal: torch.Tensor
    height: int
    width: int
    near: float = 0.1
    far: float = 1000.0
    theta: torch.Tensor | None = None
    phi: torch.Tensor | None = None
    radius: torch.Tensor | None = None

    def __post_init__(self) -> None:
        _check_batch("Cameras(): c2w", self.c2w, (4, 4))
        if self.focal.dim() != 1 or self.focal.shape[0] != self.c2w.shape[0]:
            raise ValueError(f"Cameras(): focal must have shape [B]={self.c2w.shape[0]}, got {list(self.focal.shape)}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"Cameras(): height/width must be positive, got {self.height}x{self.width}")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def device(self) -> torch.device:
        return self.c2w.device

    @property
    def resolution(self) -> tuple[int, int]:
        """(H, W)."""
        return (self.height, self.width)

    @property
    def position(self) -> torch.Tensor:
        """Camera centres, float [B,3] world."""
        return self.c2w[:, :3, 3]

    @property
    def forward(self) -> torch.Tensor:
        """Viewing directions (unit), float [B,3] world."""
        return self.c2w[:, :3, 2]

    def w2c(self) -> torch.Tensor:
        """World-to-camera float [B,4,4]: [[Rᵀ, −Rᵀc], [0,0,0,1]] (exact rigid inverse)."""
        R = self.c2w[:, :3, :3]
        t = self.c2w[:, :3, 3:]
        out = torch.zeros_like(self.c2w)
        out[:, :3, :3] = R.transpose(1, 2)
        out[:, :3, 3:] = -R.transpose(1, 2) @ t
        out[:, 3, 3] = 1.0
        return out

    def proj(self) -> torch.Tensor:
        """Projection float [B,4,4] (module docstring)."""
        return perspective(self.focal, self.focal, self.width, self.height, self.near, self.far)

    def mvp(self) -> torch.Tensor:
        """P · w2c, float [B,4,4]."""
        return self.proj() @ self.w2c()

    def to_clip(self, points: torch.Tensor) -> torch.Tensor:
        """World points float [V,3] (shared) or [B,V,3] → clip positions float32 [B,V,4] (contiguous)."""
        if points.dim() == 2:
            points = points.unsqueeze(0).expand(len(self), -1, -1)
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != len(self):
            raise ValueError(
                f"Cameras.to_clip(): points must be [V,3] or [B={len(self)},V,3], got {list(points.shape)}"
            )
        ph = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
        return (ph @ self.mvp().transpose(1, 2).to(ph.dtype)).float().contiguous()

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points [V,3] or [B,V,3] → camera-space points [B,V,3] (x right, y down, z forward)."""
        if points.dim() == 2:
            points = points.unsqueeze(0).expand(len(self), -1, -1)
        w2c = self.w2c().to(points.dtype)
        return points @ w2c[:, :3, :3].transpose(1, 2) + w2c[:, None, :3, 3]

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """World points [V,3] or [B,V,3] → continuous pixel coordinates [B,V,2] as (x, y); pixel (i, j)'s
        centre is at (j + 0.5, i + 0.5), row 0 at the top."""
        pc = self.to_camera(points)
        f = self.focal.to(pc.dtype)[:, None]
        x = f * pc[..., 0] / pc[..., 2] + self.width / 2
        y = f * pc[..., 1] / pc[..., 2] + self.height / 2
        return torch.stack([x, y], dim=-1)

    def to(self, device: torch.device | str) -> Cameras:
        def mv(t):
            return None if t is None else t.to(device)

        return replace(
            self,
            c2w=self.c2w.to(device),
            focal=self.focal.to(device),
            theta=mv(self.theta),
            phi=mv(self.phi),
            radius=mv(self.radius),
        )

    def __getitem__(self, idx) -> Cameras:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)

        def sel(t):
            return None if t is None else t[idx]

        return replace(
            self,
            c2w=self.c2w[idx],
            focal=self.focal[idx],
            theta=sel(self.theta),
            phi=sel(self.phi),
            radius=sel(self.radius),
        )

    def relative_angles(self, front_phi_deg: float = 0.0) -> dict[str, torch.Tensor]:
        """Angles for camera-conditioned guidance, float32 [B] each, degrees:
        ``azimuth`` = φ − front wrapped to (−180, 180], ``elevation`` = 90 − θ (up is positive),
        ``polar`` = θ, ``radius`` (world units)."""
        theta, phi = self._angles()
        az = torch.rad2deg(phi) - front_phi_deg
        az = torch.remainder(az + 180.0, 360.0) - 180.0
        az = torch.where(az <= -180.0, az + 360.0, az)
        radius = self.radius if self.radius is not None else self.position.norm(dim=-1)
        return {
            "azimuth": az,
            "elevation": 90.0 - torch.rad2deg(theta),
            "polar": torch.rad2deg(theta),
            "radius": radius,
        }

    def _angles(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.theta is not None and self.phi is not None:
            return self.theta, self.phi
        c = self.position
        r = c.norm(dim=-1).clamp_min(1e-12)
        theta = torch.acos((c[:, 1] / r).clamp(-1, 1))
        phi = torch.remainder(torch.atan2(c[:, 0], c[:, 2]), 2 * math.pi)
        return theta, phi


def orbit_centers(radius: torch.Tensor, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """c = r·(sinθ sinφ, cosθ, sinθ cosφ); all float [B] (radians) → float [B,3]."""
    return torch.stack(
        [
            radius * torch.sin(theta) * torch.sin(phi),
            radius * torch.cos(theta),
            radius * torch.sin(theta) * torch.cos(phi),
        ],
        dim=-1,
    )


def orbit_cameras(
    radius,
    theta_deg,
    phi_deg,
    focal_px,
    height: int,
    width: int | None = None,
    near: float = 0.1,
    far: float = 1000.0,
    device: torch.device | str = "cpu",
) -> Cameras:
    """Cameras looking at the origin from given orbit positions (no jitter).

    radius, theta_deg (polar from +Y), phi_deg (azimuth, 0 = +Z), focal_px: floats or sequences/tensors of
    length B (scalars broadcast).
    """
    vals = [torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in (radius, theta_deg, phi_deg, focal_px)]
    B = max(v.numel() for v in vals)
    for v in vals:
        if v.numel() not in (1, B):
            raise ValueError(f"orbit_cameras(): arguments must be scalars or share one length B={B}, got {v.numel()}")
    r, th, ph, f = (v.expand(B).clone().to(device) for v in vals)
    th, ph = torch.deg2rad(th), torch.deg2rad(ph)
    c2w = look_at(orbit_centers(r, th, ph))
    return Cameras(
        c2w=c2w,
        focal=f,
        height=height,
        width=width or height,
        near=near,
        far=far,
        theta=th,
        phi=torch.remainder(ph, 2 * math.pi),
        radius=r,
    )


def turntable(
    n_views: int = 100,
    height: int = 512,
    width: int | None = None,
    radius: float = 2.25,
    theta_deg: float = 60.0,
    focal_ratio: float = 1.025,
    device: torch.device | str = "cpu",
) -> Cameras:
    """The original's test path: φ = i/n·360°, θ = 60°, r = mean(radius_range) = 2.25, focal = 1.025·H."""
    if n_views < 1:
        raise ValueError(f"turntable(): n_views must be >= 1, got {n_views}")
    phi = torch.arange(n_views, dtype=torch.float32) / n_views * 360.0
    return orbit_cameras(radius, theta_deg, phi, focal_ratio * height, height, width, device=device)


@dataclass
class OrbitSampler:
    """Random training cameras as the original samples them (the original's nerf/provider.py, rand_poses), right-handed.

    Per view: radius ~ U[radius_range]; θ ~ U[theta_range] (degrees, polar from +Y; [45°, 100°] = elevation
    +45°…−10°); φ ~ U[phi_range] (degrees). With probability ``uniform_sphere_rate`` (one draw per batch, as
    the original) the directions are instead uniform on the upper hemisphere. One focal per batch:
    ``focal = H·U[focal_range]``. With ``jitter``: centre += U(−jitter_center, jitter_center)³, look-at
    target += N(0, jitter_target²), up += N(0, jitter_up²) — the original's magnitudes (0.1, √0.2, √0.02).
    The returned theta/phi/radius are those of the sampled orbit position before jitter.
    """

    height: int = 512
    width: int | None = None
    radius_range: tuple[float, float] = (2.0, 2.5)
    theta_range: tuple[float, float] = (45.0, 100.0)
    phi_range: tuple[float, float] = (0.0, 360.0)
    focal_range: tuple[float, float] = (0.7, 1.35)
    uniform_sphere_rate: float = 0.0
    jitter: bool = False
    jitter_center: float = 0.1
    jitter_target: float = math.sqrt(0.2)
    jitter_up: float = math.sqrt(0.02)
    near: float = 0.1
    far: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("radius_range", "theta_range", "phi_range", "focal_range"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"OrbitSampler(): {name} must be (low, high) with low <= high, got {(lo, hi)}")
        if self.radius_range[0] <= 0 or self.focal_range[0] <= 0:
            raise ValueError("OrbitSampler(): radius_range and focal_range must be positive")
        if not 0.0 <= self.uniform_sphere_rate <= 1.0:
            raise ValueError(f"OrbitSampler(): uniform_sphere_rate must be in [0, 1], got {self.uniform_sphere_rate}")

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        focal_range: Sequence[float] | None = None,
    ) -> Cameras:
        """Draw ``batch_size`` cameras. Random numbers come from ``generator`` (a CPU generator; the same seed
        gives the same cameras on every device). ``focal_range`` overrides the sampler's (focal schedule)."""
        if batch_size < 1:
            raise ValueError(f"OrbitSampler.sample(): batch_size must be >= 1, got {batch_size}")
        g = generator

        def U(lo: float, hi: float, *shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=g) * (hi - lo) + lo

        B = batch_size
        radius = U(*self.radius_range, B)
        if float(torch.rand((), generator=g)) < self.uniform_sphere_rate:
            d = torch.randn(B, 3, generator=g)
            d[:, 1] = d[:, 1].abs()
            d = torch.nn.functional.normalize(d, dim=-1)
            theta = torch.acos(d[:, 1].clamp(-1, 1))
            phi = torch.remainder(torch.atan2(d[:, 0], d[:, 2]), 2 * math.pi)
        else:
            theta = torch.deg2rad(U(*self.theta_range, B))
            phi = torch.remainder(torch.deg2rad(U(*self.phi_range, B)), 2 * math.pi)
        fr = tuple(focal_range) if focal_range is not None else self.focal_range
        focal = (U(fr[0], fr[1], 1) * self.height).expand(B).clone()
        centers = orbit_centers(radius, theta, phi)
        target = torch.zeros(B, 3)
        up = torch.tensor(_WORLD_UP).expand(B, 3).clone()
        if self.jitter:
            centers = centers + U(-self.jitter_center, self.jitter_center, B, 3)
            target = target + torch.randn(B, 3, generator=g) * self.jitter_target
            up = up + torch.randn(B, 3, generator=g) * self.jitter_up
        c2w = look_at(centers, target, up)
        cams = Cameras(
            c2w=c2w,
            focal=focal,
            height=self.height,
            width=self.width or self.height,
            near=self.near,
            far=self.far,
            theta=theta,
            phi=phi,
            radius=radius,
        )
        return cams.to(device)
