"""GPU benchmark of one DMTet step of the original's command G (``-O0 -O4 --guidance controlnet``: DMTet grid 256,
normal-SDS + RGB-SDS, depth ControlNet, PGC on both), ours vs a reference twin written the original's way, in one
process, on the same mesh, views, resolution and random full-size SDXL + depth-ControlNet weights (``sdxl-random``).

Ours: ``pgc_fast.train.step.train_step`` as ``pgc-fast generate`` runs it (DMTetGeometry: SDF field at every grid
vertex, deformation, ``marching_tets_torch`` without ``torch.unique``, area-weighted normals; normal and RGB maps
through ONE VAE batch and ONE UNet + ControlNet call; bf16 autocast on CUDA; PGC on both inputs).

Reference (:class:`OriginalDMTetStep`, the original's Rasterizer_MLP + Trainer.train_step): eager, fp16 autocast +
GradScaler, the geometry field under autocast, Kaolin's marching tets (``torch.unique`` of the valid tets' edges
every step: ``pgc_fast.mesh.tets.marching_tets_kaolin_torch``), faces reversed and normals negated as the original,
the texture field queried at every pixel, unnormalised interpolated normals, random albedo/Lambertian shading, then
two separate guidance passes (normal map at scale 50, RGB at scale 100), each its own VAE encode and UNet + ControlNet
call, the original's eager PGC hook on both inputs, Adam over its four parameter groups. Both start from the same
initialised geometry field (ours' fit initialisation, the original's 500 steps over 2·10⁶ points by default).

Prints ms per step (median of synced steps, and pipelined), peak GPU memory per pipeline, the ratio, the extracted
mesh's size, and our geometry part (field query + extraction + normals + rasterisation, forward and backward) as a
share of our step. ``--results FILE`` appends the table (benches/RESULTS.md).

    python benches/gpu_dmtet_step.py --mesh ../shared/data/panda_spear_shield.obj --results benches/RESULTS.md

CPU smoke run (tests/pipeline/test_dmtet_bench.py): ``--device cpu --model tiny-sdxl --res 32 --tet-res 32 --views 1
--sdf-init direct`` (the direct initialisation's per-vertex offset is added in the twin too, so both extract the same
surface; after the fit initialisation, the original's, that offset is zero).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import os
import statistics
import tempfile
import time

import torch

from _gpu_common import add_panda_args, commit, emit, panda_argv, script_parser, sync, train_session
from pgc_fast.parity.original_step import OriginalStep, SpecifyGradient, original_pgc_hook


def _timed(fn, iters: int, warmup: int, device: str) -> tuple[float, float]:
    """(median ms of synced steps, mean ms of back-to-back steps with one sync at the end)."""
    for _ in range(warmup):
        fn()
    sync(device)
    synced = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        synced.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return statistics.median(synced), (time.perf_counter() - t0) * 1e3 / iters


def _peak_reset(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


# ------------------------------------------------------------------------------------------------ ours
def build_config(a: argparse.Namespace, workspace: str):
    """Command G as written, at the benchmark's views / resolution / grid / model."""
    from pgc_fast import config as C
    from pgc_fast.cli import build_parser
    from pgc_fast.cli.generate import resolve_generate

    flags, extra = ("-O0", "-O4", "--guidance", "controlnet"), ["--iters", "1000"]
    argv = panda_argv(flags, mesh=a.mesh, model=a.model, device=a.device, workspace=workspace, extra=extra)
    cfg, _notes = resolve_generate(build_parser().parse_args(argv))
    over = {
        "optim.batch_size": a.views,
        "render.resolution": a.res,
        "mesh.tet_res": a.tet_res,
        "mesh.sdf_init_iters": a.init_iters,
        "mesh.sdf_init": a.sdf_init,
        "guidance.compile": a.compile,
    }
    if a.bg:
        over["render.bg_image"] = a.bg
    if a.device == "cpu":
        over["render.backend"] = "cpu"
    return C.override(cfg, **over)


def ours_session(cfg, device: str):
    """What run() sets up before its loop (scene, initialised geometry, guidance, optimiser), and a step function."""
    init_s = []

    def init(scene) -> None:
        t0 = time.perf_counter()
        scene.init_geometry(seed=cfg.optim.seed)
        sync(device)
        init_s.append(time.perf_counter() - t0)

    step, scene, _, _, autocast_dtype = train_session(cfg, device, init=init)
    return step, scene, autocast_dtype, init_s[0]


def geometry_ms(scene, cams, autocast_dtype, iters: int, warmup: int, device: str) -> tuple[float, float]:
    """Our geometry part alone (ms): forward (field query, deformation, marching tets, normals, rasterisation) and
    forward + backward (a loss on the vertices and normals back to the field)."""
    geo, be = scene.geometry, scene.renderer.backend

    def fwd():
        with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            geo.new_step()
            m = geo.render_mesh()
            rast = be.rasterize(cams.to_clip(m.vertices), m.faces, cams.resolution)
        return m, rast

    def fwd_bwd():
        m, _ = fwd()
        (m.vertices.sum() + m.normals.sum()).backward()

    f, _ = _timed(fwd, iters, warmup, device)
    fb, _ = _timed(fwd_bwd, iters, warmup, device)
    for p in geo.parameters():
        p.grad = None
    return f, fb


# ------------------------------------------------------------------------------------------------ the original's way
class OriginalDMTetStep(OriginalStep):
    """One DMTet step of the original (module docstring), on :class:`OriginalStep`'s VAE / ControlNet / UNet code.

    Args:
        bundle: SDXL + depth ControlNet :class:`pgc_fast.guidance.ModelBundle` (fp16 on CUDA).
        geo_field: a :class:`pgc_fast.fields.SDFField` (its raw 4 outputs are used, as the original's MLP).
        grid_vertices, tets: the tet grid on the device (float [N, 3], int64 [T, 4]).
        tex_field: the texture :class:`pgc_fast.fields.TextureField`.
        backend, background, prompt_embeds, pooled, resolution: as :class:`OriginalStep`.
        tet_res: the grid resolution (deformation scale 1.8 / (2·tet_res)).
        sdf_offset: ours' per-vertex s₀ [N] (zero after the fit initialisation, the original's), added to the field.
        lr: (geometry, texture) learning rates, the original's lr_fine (grids at 10×).
    """

    def __init__(self, bundle, geo_field, grid_vertices, tets, tex_field, backend, background, emb, pooled, *, res,
                 tet_res, sdf_offset=None, lr=(1e-5, 1e-3)):  # fmt: skip
        super().__init__(bundle, None, backend, tex_field, background, emb, pooled, resolution=res)
        self.geo, self.grid, self.tets = geo_field, grid_vertices, tets
        self.offset = torch.zeros_like(grid_vertices[:, 0]) if sdf_offset is None else sdf_offset
        self.deform = 1.8 / (2 * tet_res)
        groups = geo_field.param_groups(lr[0], 10.0) + tex_field.param_groups(lr[1], 10.0)
        self.opt = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
        self.cpu_gen = torch.Generator().manual_seed(0)  # the shading draw (the original: python's random)
        self.mesh_faces = 0

    def extract(self):
        """get_geometry under the step's autocast, tanh deformation, Kaolin's marching tets, faces [0, 2, 1],
        pytorch3d's (area-weighted) vertex normals of the reversed faces, negated: outward."""
        from pgc_fast.mesh.ops import vertex_normals
        from pgc_fast.mesh.tets import marching_tets_kaolin_torch

        with torch.autocast(self.dev, dtype=self.amp_dtype, enabled=self.amp):
            g = self.geo.mlp(self.geo.encode(self.grid))
        v = self.grid + self.deform * torch.tanh(g[:, 1:].float())
        verts, faces = marching_tets_kaolin_torch(v, g[:, 0].float() + self.offset, self.tets)
        faces = faces[:, [0, 2, 1]]
        self.mesh_faces = faces.shape[0]
        return verts, faces, -vertex_normals(verts, faces)

    def render_dmtet(self, cams, gen: torch.Generator):
        """The original's Rasterizer_MLP.forward: interpolate, field at every pixel, random shading, composite."""
        verts, faces, vn = self.extract()
        fi = faces.int()
        clip = cams.to_clip(verts)
        h, w = cams.height, cams.width
        rast = self.backend.rasterize(clip, fi, (h, w))
        b = clip.shape[0]
        pos = self.backend.interpolate(verts[None].expand(b, -1, -1).contiguous(), rast, fi)
        nrm = self.backend.interpolate(vn[None].expand(b, -1, -1).contiguous(), rast, fi)  # unnormalised
        z_cam = self.backend.interpolate(cams.to_camera(verts)[..., 2:3].contiguous(), rast, fi)
        mask = self.backend.antialias((rast[..., 3:] > 0).float(), rast, clip, fi)
        with torch.autocast(self.dev, dtype=self.amp_dtype, enabled=self.amp):
            albedo = self.field(pos.reshape(-1, 3)).reshape(b, h, w, 3)
            if float(torch.rand((), generator=gen)) > 0.2:  # lambertian, ambient 0.1, one light jitter per batch
                light = torch.nn.functional.normalize(cams.position + torch.randn(3, generator=gen).to(pos), dim=-1)
                lam = (nrm * light[:, None, None, :]).sum(-1, keepdim=True).clamp(min=0)
                albedo = albedo * (0.1 + 0.9 * lam)
        img = albedo * mask + self.background.permute(1, 2, 0)[None] * (1 - mask)
        depth = z_cam * mask + 1.2 * z_cam.max() * (1 - mask)
        cf = lambda t: t.permute(0, 3, 1, 2).contiguous()
        return cf(img), cf((nrm + 1) / 2), cf(depth)

    def __call__(self, chunks: list, generator: torch.Generator) -> dict:
        """One optimiser step over camera batches ``chunks``: one chunk is one GPU's share of the original's
        data-parallel step (it ran 2 views on each of two GPUs); several run one after another with gradients
        averaged, as DDP averages them, each with its own extraction as each of the original's ranks did."""
        self.opt.zero_grad(set_to_none=True)
        total = 0.0
        for cams in chunks:
            loss = self.chunk_loss(cams, generator) / len(chunks)
            self.scaler.scale(loss).backward()
            total = total + loss.detach()
        self.scaler.unscale_(self.opt)
        self.scaler.step(self.opt)
        self.scaler.update()
        return {"loss": total}

    def chunk_loss(self, cams, generator: torch.Generator) -> torch.Tensor:
        img, normals, depth = self.render_dmtet(cams, self.cpu_gen)
        b = img.shape[0]
        loss = img.new_zeros(())
        with torch.autocast(self.dev, dtype=self.amp_dtype, enabled=self.amp):
            cond = self.depth_condition(depth)
            for x, scale in ((normals, 50.0), (img, 100.0)):  # two passes, as the original's two train_step calls
                self.s = scale
                z = self.encode(x, generator)
                t = torch.randint(20, 501, (b,), device=z.device, generator=generator)
                noise = torch.randn(z.shape, device=z.device, dtype=z.dtype, generator=generator)
                loss = loss + SpecifyGradient.apply(z, self.latent_grad(z, t, noise, cond)).sum()
        img.register_hook(original_pgc_hook(self.tau, self.scaler))
        normals.register_hook(original_pgc_hook(self.tau, self.scaler))
        return loss


def reference_session(geo: dict, a: argparse.Namespace):
    """The twin, on our initialised geometry field (``geo``: field, grid, tets, rasteriser backend from
    :func:`time_ours`), a fresh texture field, random text conditioning."""
    from pgc_fast.fields import TextureField
    from pgc_fast.guidance import load_models
    from pgc_fast.render import OrbitSampler

    dev = a.device
    dtype = torch.float16 if dev == "cuda" else torch.float32
    bundle = load_models(a.model, controlnets=("depth",), device=torch.device(dev), dtype=dtype)
    g = torch.Generator(device=dev).manual_seed(0)
    cad = bundle.unet.config.cross_attention_dim
    pdim = bundle.unet.config.projection_class_embeddings_input_dim - 6 * bundle.unet.config.addition_time_embed_dim
    emb = torch.randn(2, 77, cad, device=dev, generator=g, dtype=dtype)
    pooled = torch.randn(2, pdim, device=dev, generator=g, dtype=dtype)
    bg = torch.rand(3, a.res, a.res, device=dev, generator=g)
    step_fn = OriginalDMTetStep(
        bundle, geo["field"], geo["grid"], geo["tets"], TextureField(bound=1.0).to(dev), geo["backend"], bg, emb,
        pooled, res=a.res, tet_res=a.tet_res, sdf_offset=geo["offset"],
    )  # fmt: skip
    sampler = OrbitSampler(height=a.res)
    cam_gen = torch.Generator().manual_seed(0)

    per = a.ref_views or a.views
    sizes = [min(per, a.views - i) for i in range(0, a.views, per)]

    def step():
        step_fn([sampler.sample(k, generator=cam_gen, device=dev) for k in sizes], g)

    return step, step_fn


# ------------------------------------------------------------------------------------------------ report
def report(a: argparse.Namespace, ours: dict, ref: dict | None) -> str:
    dev = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    lines = [
        f"### DMTet step, command G ({datetime.date.today()}, {dev}, commit {commit()}, torch {torch.__version__})",
        "",
        f"{a.views} views at {a.res}², tet grid {a.tet_res}, model {a.model}, mesh {os.path.basename(a.mesh)}; "
        f"ours {ours['dtype']}, compile {'on' if a.compile else 'off'}; extracted mesh {ours['faces']} faces; "
        f"init ({a.sdf_init}"
        + (f", {a.init_iters} steps" if a.sdf_init == "fit" else "")
        + f") {ours['init_s']:.1f} s",
        "",
        "| pipeline | ms/step (synced) | ms/step (pipelined) | peak GiB |",
        "|---|---|---|---|",
        f"| ours | {ours['ms']:.1f} | {ours['pipe']:.1f} | {ours['peak']:.2f} |",
    ]
    passes = f", {a.ref_views} views per pass, gradients accumulated" if a.ref_views else ""
    if ref is not None and ref.get("oom"):
        lines.append(f"| original's way{passes} | out of memory | | > {ref['peak']:.2f} |")
    elif ref is not None:
        lines.append(f"| original's way{passes} | {ref['ms']:.1f} | {ref['pipe']:.1f} | {ref['peak']:.2f} |")
        lines.append(
            f"| ratio (original / ours) | {ref['ms'] / ours['ms']:.2f}x | {ref['pipe'] / ours['pipe']:.2f}x | |"
        )
    share = ours["geo_fb"] / ours["ms"] * 100
    lines += [
        "",
        f"Our geometry part (field query + deformation + marching tets + normals + rasterisation): "
        f"forward {ours['geo_f']:.1f} ms, forward + backward {ours['geo_fb']:.1f} ms = {share:.1f} % of our step.",
    ]
    return "\n".join(lines)


def time_ours(a: argparse.Namespace, ws: str) -> tuple[dict, dict]:
    """Our timings, and what the twin starts from (a copy of the initialised geometry field, the grid, the
    rasteriser); everything else of ours is released on return, so the twin's peak memory is its own."""
    from pgc_fast.render import OrbitSampler

    _peak_reset(a.device)
    step, scene, ac_dtype, init_s = ours_session(build_config(a, ws), a.device)
    geo = scene.geometry
    start = {"field": copy.deepcopy(geo.field), "grid": geo.grid_vertices, "tets": geo.tets, "offset": geo.sdf_base}
    start["backend"] = scene.renderer.backend
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()  # the step's peak, not the initialisation's
    step()  # first step: compile / JIT
    ms, pipe = _timed(step, a.iters, a.warmup, a.device)
    cams = OrbitSampler(height=a.res).sample(a.views, generator=torch.Generator().manual_seed(1), device=a.device)
    dtype = str(ac_dtype).replace("torch.", "") if ac_dtype is not None else "float32"
    out = {"ms": ms, "pipe": pipe, "peak": _peak_gib(a.device), "init_s": init_s, "dtype": dtype}
    out["geo_f"], out["geo_fb"] = geometry_ms(scene, cams, ac_dtype, a.iters, a.warmup, a.device)
    out["faces"] = int(scene.rmesh.faces.shape[0])
    return out, start


def time_reference(start: dict, a: argparse.Namespace) -> dict:
    """The twin's timings; running out of device memory is a result (the original's way at 4 views on one
    GPU does not fit in 80 GB), recorded as such rather than losing our figures."""
    _peak_reset(a.device)
    try:
        step, _twin = reference_session(start, a)
        step()
        ms, pipe = _timed(step, a.iters, a.warmup, a.device)
    except torch.OutOfMemoryError:
        gc.collect()
        return {"oom": True, "peak": _peak_gib(a.device)}
    return {"ms": ms, "pipe": pipe, "peak": _peak_gib(a.device)}


def main(argv: list[str] | None = None) -> int:
    ap = script_parser(__doc__)
    add_panda_args(ap, views=4, bg=None, iters=8, warmup=2)
    ap.add_argument("--tet-res", type=int, default=256)
    ap.add_argument("--init-iters", type=int, default=500, help="fit initialisation steps (the original: 500)")
    ap.add_argument("--sdf-init", choices=("fit", "direct"), default="fit", help="how both pipelines' field starts")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True, help="ours: regional compile")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument(
        "--ref-views", type=int, default=0,
        help="views per pass of the twin (0: all at once); 2 = the original's per-GPU share, passes accumulated",
    )  # fmt: skip
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ours, start = time_ours(a, os.path.join(tmp, "ws"))
        ref = None
        if not a.skip_reference:
            ref = time_reference(start, a)
    emit(report(a, ours, ref), a.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
