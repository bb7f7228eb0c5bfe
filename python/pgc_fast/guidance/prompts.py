"""View-dependent prompts: the one view-bin function (front/side/back/overhead/bottom) used by prompts and the toy
prior alike."""

from __future__ import annotations

import torch

VIEW_NAMES = ("front", "side", "back", "overhead", "bottom")


# ----------------------------------------------------------------------------------------------- views
def view_ids(
    azimuth_deg: torch.Tensor, polar_deg: torch.Tensor, angle_front: float = 90.0, angle_overhead: float = 30.0
) -> torch.Tensor:
    """View-direction bin per sample: 0 front, 1 side, 2 back, 3 overhead, 4 bottom (int64, same device).

    Azimuth 0 = camera on +Z looking at the object's front; polar from +Y (0 = straight above). Bins are
    centred on the views (fixes a bug of the original): front |phi| < F/2, back |phi - 180| < F/2, side otherwise;
    polar <= angle_overhead -> overhead, polar >= 180 - angle_overhead -> bottom."""
    phi = torch.remainder(azimuth_deg.float() + 180.0, 360.0) - 180.0  # (-180, 180]
    a = phi.abs()
    ids = torch.where(a < angle_front / 2, 0, torch.where(a > 180.0 - angle_front / 2, 2, 1))
    polar = polar_deg.float()
    ids = torch.where(polar <= angle_overhead, 3, ids)
    ids = torch.where(polar >= 180.0 - angle_overhead, 4, ids)
    return ids.long()


def view_prompts(text: str) -> list[str]:
    """The prompt and its view-dependent variants: [text, "text, front view", ..., "text, bottom view"]."""
    return [text] + [f"{text}, {v} view" for v in VIEW_NAMES]


def view_negatives(negative: str, suppress_face: bool) -> list[str]:
    """Negative prompt per entry of :func:`view_prompts`; with ``suppress_face`` non-front views add "face"."""
    out = [negative]
    for v in VIEW_NAMES:
        if suppress_face and v != "front":
            out.append(f"{negative}, face" if negative else "face")
        else:
            out.append(negative)
    return out
