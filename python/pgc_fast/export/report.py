"""``report.html``: one self-contained page per run that opens from disk with no server.

It shows the prompt, the settings, the turntable, the baked texture, the validation images and the loss and
clip-fraction curves. Curves are inline SVG; images are referenced as files relative to the workspace (the
page lives in the workspace), except the texture thumbnail, which is embedded as base64 so the page still shows
it when copied alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgc_fast import config as C
from pgc_fast.export.files import write_text_atomic

__all__ = ["write_report", "svg_line_chart"]


def svg_line_chart(
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    title: str,
    width: int = 520,
    height: int = 200,
    log_y: bool = False,
    color: str = "#2563eb",
) -> str:
    """An inline SVG line chart (no scripts, no external assets). NaN points are skipped."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=False) if y == y and math.isfinite(float(y))]
    if log_y:
        pts = [(x, math.log10(y)) for x, y in pts if y > 0]
    pad_l, pad_r, pad_t, pad_b = 56, 12, 24, 28
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">'
        f'<rect width="100%" height="100%" fill="#fff"/>'
        f'<text x="{pad_l}" y="16" font-family="sans-serif" font-size="13">{html.escape(title)}</text>'
    )
    if not pts:
        return (
            head + f'<text x="{pad_l}" y="{pad_t + h / 2}" font-family="sans-serif" font-size="12" fill="#888">no '
            f"data</text></svg>"
        )
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def sx(x: float) -> float:
        return pad_l + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return pad_t + (1 - (y - y0) / (y1 - y0)) * h

    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts))

    def fmt(v: float) -> str:
        v = 10**v if log_y else v
        return f"{v:.3g}"

    axes = (
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#999"/>'
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#999"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end" font-family="sans-serif" '
        f'font-size="10">{fmt(y1)}</text>'
        f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end" font-family="sans-serif" '
        f'font-size="10">{fmt(y0)}</text>'
        f'<text x="{pad_l}" y="{height - 8}" font-family="sans-serif" font-size="10">step {x0:g}</text>'
        f'<text x="{pad_l + w}" y="{height - 8}" text-anchor="end" font-family="sans-serif" '
        f'font-size="10">{x1:g}</text>'
    )
    return head + axes + f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.5"/></svg>'


def _thumb_b64(path: Path, size: int = 512) -> str | None:
    try:
        from PIL import Image

        im = Image.open(path).convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()
    except (OSError, ValueError):  # unreadable image: the report links the file instead
        return None


def write_report(ws: Path, cfg: C.RunConfig, metrics: dict[str, Any], files: dict[str, Any]) -> Path:
    """Write ``ws/report.html`` (opens from disk) and return its path."""
    ws = Path(ws)
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>pgc-fast report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#111}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}"
        "img{max-width:100%;image-rendering:auto}.row{display:flex;gap:16px;flex-wrap:wrap}"
        "h2{border-bottom:1px solid #eee;padding-bottom:4px}code{background:#f4f4f4;padding:1px 4px}</style>",
        "</head><body>",
        "<h1>pgc-fast run</h1>",
        f"<p><b>Prompt:</b> {e(cfg.guidance.text) or '<i>(none)</i>'}</p>",
    ]
    if cfg.guidance.negative:
        parts.append(f"<p><b>Negative:</b> {e(cfg.guidance.negative)}</p>")
    parts.append(
        "<table>"
        + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in _summary(cfg, metrics))
        + "</table>"
    )
    parts += _media(ws, files)
    parts += _curves(metrics.get("history", {}))
    parts += _validation_and_config(ws, cfg, metrics)
    out = ws / "report.html"
    write_text_atomic(out, "".join(parts))
    return out


def _summary(cfg: C.RunConfig, metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    g = cfg.guidance
    summary: list[tuple[str, Any]] = [
        ("mesh", cfg.mesh.path),
        ("model", C.resolved_model(g)),
        (
            "guidance",
            f"{g.family} {g.loss}"
            + (f" + ControlNet {', '.join(g.controlnets)}" if g.controlnets else "")
            + f", CFG {g.guidance_scale:g}",
        ),
        ("PGC", f"tau {g.pgc_tau:g}, {g.pgc_variant}/{g.pgc_norm}" if g.pgc_tau is not None else "off"),
        ("texture", f"{cfg.texture.kind} (export {cfg.texture.export_resolution}²)"),
        (
            "steps",
            f"{metrics.get('steps')} × {metrics.get('views_per_step', cfg.views_per_step)} views at "
            f"{cfg.render.resolution}²"
            + (f" ({metrics['world_size']} processes)" if (metrics.get("world_size") or 1) > 1 else ""),
        ),
        (
            "device / precision / rasteriser",
            f"{metrics.get('device')} / {metrics.get('precision')} / {metrics.get('render_backend')}",
        ),
        (
            "speed",
            (f"{metrics['it_per_s']:.3g} it/s" if metrics.get("it_per_s") else "n/a")
            + (
                f" overall, {metrics['steady_s_per_it']:.3g} s/it after the first steps (compile, JIT)"
                if metrics.get("steady_s_per_it")
                else ""
            ),
        ),
    ]
    mem = metrics.get("memory", {})
    if mem:
        summary.append(("peak memory", ", ".join(f"{k} {v:.0f}" for k, v in mem.items())))
    clip = metrics.get("clip", {})
    if clip.get("enabled"):
        summary.append(
            ("pixels clipped", f"mean {100 * clip['mean_clip_frac']:.2f}%, last {100 * clip['last_clip_frac']:.2f}%")
        )
    if metrics.get("video"):
        summary.append(("video", metrics["video"]))
    return summary


def _media(ws: Path, files: dict[str, Any]) -> list[str]:
    parts = ["<h2>Turntable</h2><div class='row'>"]
    if "turntable_mp4" in files:
        parts.append("<video src='turntable.mp4' controls loop autoplay muted width='512'></video>")
    if "turntable_gif" in files:
        parts.append("<img src='turntable.gif' width='512' alt='turntable'>")
    if "turntable_maps_gif" in files:
        parts.append("<img src='turntable_maps.gif' width='1024' alt='material maps turntable'>")
    parts.append("</div>")
    parts += _pbr_maps(ws)
    tex = ws / "texture.png"
    if tex.exists():
        b64 = _thumb_b64(tex)
        src = f"data:image/png;base64,{b64}" if b64 else "texture.png"
        parts.append(
            f"<h2>Texture</h2><a href='texture.png'><img src='{src}' width='512' alt='texture'></a>"
            "<p>Files: <a href='mesh.obj'>mesh.obj</a> + <a href='mesh.mtl'>mesh.mtl</a> + "
            "<a href='texture.png'>texture.png</a>, <a href='mesh.glb'>mesh.glb</a></p>"
        )
    return parts


def _pbr_maps(ws: Path) -> list[str]:
    """A PBR run's maps (export/pbr.py): base colour, occlusion / roughness / metallic, normal, and the files."""
    names = [n for n in ("texture_kd.png", "texture_ks.png", "texture_n.png") if (ws / n).exists()]
    if not names:
        return []
    parts = ["<h2>Material</h2><div class='row'>"]
    for n in names:
        b64 = _thumb_b64(ws / n)
        src = f"data:image/png;base64,{b64}" if b64 else n
        parts.append(f"<figure><a href='{n}'><img src='{src}' width='256' alt='{n}'></a><figcaption>{n}</figcaption>")
        parts.append("</figure>")
    parts.append(
        "</div><p>Files: <a href='mesh.glb'>mesh.glb</a> (glTF metallic-roughness, normal and occlusion maps), "
        "<a href='mesh.obj'>mesh.obj</a> + <a href='mesh.mtl'>mesh.mtl</a>, <a href='probe.hdr'>probe.hdr</a></p>"
    )
    return parts


def _curves(hist: dict[str, Any]) -> list[str]:
    steps = hist.get("step", [])
    parts = ["<h2>Curves</h2><div class='row'>"]
    loss = hist.get("loss", [])
    parts.append(
        svg_line_chart(steps, loss, title="loss", log_y=all((v or 0) > 0 for v in loss if v == v) and bool(loss))
    )
    cf = hist.get("clip_frac", [])
    if any(v == v for v in cf):
        parts.append(svg_line_chart(steps, [100 * v for v in cf], title="pixels clipped by PGC (%)", color="#dc2626"))
    parts.append("</div>")
    return parts


def _validation_and_config(ws: Path, cfg: C.RunConfig, metrics: dict[str, Any]) -> list[str]:
    e = html.escape
    parts = []
    vals = sorted((ws / "validation").glob("*.png")) if (ws / "validation").is_dir() else []
    if vals:
        parts.append("<h2>Validation</h2><div class='row'>")
        for p in vals[-12:]:
            parts.append(
                f"<figure><img src='validation/{e(p.name)}' width='200'><figcaption>{e(p.stem)}</figcaption></figure>"
            )
        parts.append("</div>")
    phases = metrics.get("phases_s", {})
    if phases:
        parts.append(
            "<h2>Timings</h2><table>"
            + "".join(f"<tr><th>{e(k)}</th><td>{v:.2f} s</td></tr>" for k, v in phases.items())
            + "</table>"
        )
    parts.append("<h2>Configuration</h2><table>")
    for sec, vals_ in C.to_dict(cfg).items():
        for k, v in vals_.items():
            parts.append(f"<tr><th>{e(sec)}.{e(k)}</th><td><code>{e(repr(v))}</code></td></tr>")
    parts.append("</table></body></html>")
    return parts
