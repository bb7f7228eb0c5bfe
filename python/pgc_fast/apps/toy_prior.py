"""Train ``toy-sd`` from a seed: render a captioned data set with our own renderer, train the VAE, then the UNet
and text encoder on its latents. ``pgc-fast train-prior --seed 0 --out DIR``.

Data (all from :mod:`pgc_fast.render`, CPU backend, 64²): shapes = icosphere, box, thick torus, capsule,
cylinder, cone, the demo vase and seeded random blobs (icospheres displaced by low-frequency noise), each at a
random rotation and scale, seen from random orbit cameras (r ∈ [2.2, 2.7], θ ∈ [40°, 110°], any φ). The
geometry buffers (world position, normal, coverage) are rendered once; each image then gets a caption
"a <colour> <pattern> object" and is shaded: albedo = the colour, with the pattern (3-D stripes, checker or
dots of random frequency and orientation, evaluated at the surface point) in a 0.55× darker shade of it,
Lambertian light (random direction in the camera's hemisphere, ambient 0.35) and a random grey-ish vertical
gradient background.

Output (``--out``): ``vae.safetensors``, ``unet.safetensors`` (EMA), ``text_encoder.safetensors`` and
``meta.json`` (configs, seed, command, commit, data settings, per-phase losses and wall times, the colour
references of the quality test). Checkpoints are written as training goes, so the newest files are always a
usable model.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pgc_fast.guidance import prompts
from pgc_fast.guidance.models import toy

RES = 64


# ---------------------------------------------------------------------------------------------- shapes
def _normalise(v: np.ndarray) -> np.ndarray:
    v = v - (v.max(0) + v.min(0)) / 2
    return (v / np.linalg.norm(v, axis=1).max() * 0.9).astype(np.float32)


def make_shapes(rng: np.random.Generator, n_blobs: int = 4) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, vertices float32 [V,3] within the radius-0.9 ball, faces int64 [F,3]) for every training shape."""
    import trimesh.creation as tc

    from pgc_fast.apps.demo import make_demo_mesh

    out = []
    prims = {
        "sphere": tc.icosphere(3), "box": tc.box((1.2, 1.0, 0.9)), "torus": tc.torus(0.6, 0.36),
        "capsule": tc.capsule(1.0, 0.45), "cylinder": tc.cylinder(0.55, 1.3, sections=32),
        "cone": tc.cone(0.65, 1.4, sections=32),
    }
    for name, m in prims.items():
        if name == "box":
            m = m.subdivide().subdivide()
        out.append((name, _normalise(np.asarray(m.vertices)), np.asarray(m.faces, dtype=np.int64)))
    vase = make_demo_mesh(24, 16)
    out.append(("vase", _normalise(vase.vertices), vase.faces.astype(np.int64)))
    base = tc.icosphere(3)
    for i in range(n_blobs):
        v = np.asarray(base.vertices)
        d = np.zeros(len(v))
        for _ in range(4):  # a few random low-frequency spherical bumps
            k = rng.normal(size=3) * rng.uniform(1.0, 2.5)
            d += rng.uniform(0.08, 0.22) * np.sin(v @ k + rng.uniform(0, 2 * math.pi))
        out.append((f"blob{i}", _normalise(v * (1 + d)[:, None]), np.asarray(base.faces, dtype=np.int64)))
    return out


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]], dtype=np.float32)


@torch.no_grad()
def render_geometry(n: int, seed: int, views_per_pose: int = 8) -> dict[str, torch.Tensor]:
    """Render n geometry buffers: position [n,3,64,64] (object frame), normal [n,3,64,64] (camera frame,
    +z towards the camera), mask [n,1,64,64] and view ids [n]: the prompts' bins
    (:func:`pgc_fast.guidance.prompts.view_ids` with its defaults, what ``dir_text`` uses), index into
    :data:`~pgc_fast.guidance.prompts.VIEW_NAMES`."""
    from pgc_fast.render import MeshRenderer, RenderMesh, VertexColorTexture, orbit_cameras

    rng = np.random.default_rng(seed)
    shapes = make_shapes(rng)
    renderer = MeshRenderer("cpu")
    pos, nrm, msk, vid = [], [], [], []
    done = 0
    while done < n:
        name, v, f = shapes[int(rng.integers(len(shapes)))]
        R = _rotation(rng) if name.startswith("blob") or rng.random() < 0.7 else np.eye(3, dtype=np.float32)
        s = np.float32(rng.uniform(0.8, 1.05))
        verts = torch.from_numpy((v @ R.T) * s)
        mesh = RenderMesh(vertices=verts, faces=torch.from_numpy(f))
        tex = VertexColorTexture(torch.ones(len(v), 3))
        b = min(views_per_pose, n - done)
        r = rng.uniform(2.2, 2.7, b)
        th = rng.uniform(40, 110, b)
        ph = rng.uniform(0, 360, b)
        foc = rng.uniform(1.05, 1.25, b) * RES
        cams = orbit_cameras(r, th, ph, foc, RES)
        out = renderer.render(mesh, cams, tex, background=0.0, shading="albedo", antialias=True)
        w2c = cams.w2c()[:, :3, :3]  # world → camera rotation
        n_cam = torch.einsum("bij,bjhw->bihw", w2c, out.normal)
        # object-frame position (undo the random rotation/scale) so patterns stick to the surface
        p_obj = torch.einsum("ij,bjhw->bihw", torch.from_numpy(R.T.copy()), out.position) / float(s)
        pos.append(p_obj)
        nrm.append(n_cam)
        msk.append(out.mask)
        vid.append(prompts.view_ids(torch.rad2deg(cams.phi), torch.rad2deg(cams.theta)))
        done += b
    return {"position": torch.cat(pos), "normal": torch.cat(nrm), "mask": torch.cat(msk), "view": torch.cat(vid)}


def shade(geo: dict[str, torch.Tensor], idx: torch.Tensor, colour_ids: torch.Tensor, pattern_ids: torch.Tensor,
          gen: torch.Generator) -> torch.Tensor:
    """Images [B,3,64,64] in [0,1] for geometry rows ``idx`` with the given colour / pattern indices."""
    B = idx.numel()
    p, n, m = geo["position"][idx], geo["normal"][idx], geo["mask"][idx]
    pal = torch.tensor(list(toy.COLOURS.values()))
    base = pal[colour_ids][:, :, None, None]
    # pattern coordinates: random rotation and frequency (cycles per object unit)
    rot = torch.linalg.qr(torch.randn(B, 3, 3, generator=gen))[0]
    q = torch.einsum("bij,bjhw->bihw", rot, p)
    freq = (2.2 + 1.3 * torch.rand(B, 1, 1, 1, generator=gen)) * 2 * math.pi
    phase = torch.rand(B, 3, 1, 1, generator=gen) * 2 * math.pi
    s = torch.sin(q * freq + phase)
    stripes = (s[:, :1] > 0).float()
    checker = ((s[:, :1] > 0) ^ (s[:, 1:2] > 0) ^ (s[:, 2:3] > 0)).float()
    cell = torch.remainder(q * freq / (2 * math.pi) + phase / (2 * math.pi), 1.0) - 0.5
    dots = (cell.norm(dim=1, keepdim=True) < 0.33).float()
    sec = torch.stack([torch.zeros_like(stripes), stripes, checker, dots], 1)  # [B,4,1,H,W]
    secondary = sec[torch.arange(B), pattern_ids]
    dark = torch.where(colour_ids[:, None, None, None] == list(toy.COLOURS).index("black"),
                       torch.full_like(base, 0.42), base * 0.55)
    albedo = base * (1 - secondary) + dark * secondary
    light = F.normalize(torch.randn(B, 3, generator=gen) * torch.tensor([0.6, 0.6, 0.3]) + torch.tensor([0.0, 0.0, -1.0]),
                        dim=1)
    lam = (n * light[:, :, None, None]).sum(1, keepdim=True).clamp_min(0)
    img = albedo * (0.35 + 0.65 * lam)
    g = 0.3 + 0.45 * torch.rand(B, 1, 1, 1, generator=gen)
    tint = (torch.rand(B, 3, 1, 1, generator=gen) - 0.5) * 0.1
    ramp = torch.linspace(-1, 1, RES).view(1, 1, RES, 1) * (torch.rand(B, 1, 1, 1, generator=gen) - 0.5) * 0.3
    bg = (g + tint + ramp).clamp(0, 1).expand(B, 3, RES, RES)
    return (img * m + bg * (1 - m)).clamp(0, 1)


def sample_captions(geo, n: int, gen: torch.Generator):
    idx = torch.randint(0, geo["mask"].shape[0], (n,), generator=gen)
    c = torch.randint(0, len(toy.COLOURS), (n,), generator=gen)
    p = torch.randint(0, len(toy.PATTERNS), (n,), generator=gen)
    return idx, c, p


# ---------------------------------------------------------------------------------------------- quality test
def centre(img: torch.Tensor, size: int = 20) -> torch.Tensor:
    h = img.shape[-1]
    a = (h - size) // 2
    return img[..., a:a + size, a:a + size]


def mean_colour(img: torch.Tensor) -> torch.Tensor:
    """Mean object colour [B,3]: the mean of the central 20×20 pixels (objects are centred and fill it)."""
    return centre(img).mean((-1, -2))


def pattern_features(img: torch.Tensor) -> torch.Tensor:
    """[B,3] features of the central 24² luminance after removing shading (minus a σ=3 blur): log high-pass
    energy, spectral anisotropy (structure tensor of the power spectrum: 1 = one orientation, stripes) and
    skewness (dots are small dark spots)."""
    x = centre(img, 24)
    L = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    k = torch.exp(-torch.arange(-6, 7).float() ** 2 / 18)
    k = k / k.sum()
    blur = F.conv2d(F.pad(L, (6, 6, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    blur = F.conv2d(F.pad(blur, (0, 0, 6, 6), mode="replicate"), k.view(1, 1, -1, 1))
    hp = (L - blur)[:, 0]
    energy = torch.log(hp.pow(2).mean((-1, -2)) / (L[:, 0].mean((-1, -2)) + 0.05) ** 2 + 1e-5)
    win = torch.hann_window(24, periodic=False)
    P = torch.fft.fft2(hp * win[None] * win[:, None]).abs().pow(2)
    P = torch.fft.fftshift(P, dim=(-2, -1))
    f = torch.arange(24).float() - 12
    U, V = f.view(1, -1, 1).expand(1, 24, 24), f.view(1, 1, -1).expand(1, 24, 24)
    juu, jvv, juv = (P * U * U).sum((-1, -2)), (P * V * V).sum((-1, -2)), (P * U * V).sum((-1, -2))
    tr = juu + jvv + 1e-12
    aniso = torch.sqrt((juu - jvv) ** 2 + 4 * juv ** 2) / tr
    z = hp - hp.mean((-1, -2), keepdim=True)
    skew = z.pow(3).mean((-1, -2)) / (z.pow(2).mean((-1, -2)) + 1e-8) ** 1.5
    return torch.stack([energy, aniso, skew], 1)


def fit_references(geo, gen: torch.Generator, n: int = 2048) -> dict:
    """Colour references (mean object colour of real renders per colour word) and pattern centroids (feature
    means/std per pattern word), plus how well these simple tests classify real renders (their ceiling)."""
    idx, c, p = sample_captions(geo, n, gen)
    imgs = shade(geo, idx, c, p, gen)
    mc = mean_colour(imgs)
    col_ref = torch.stack([mc[c == i].mean(0) for i in range(len(toy.COLOURS))])
    feats = pattern_features(imgs)
    mu, sd = feats.mean(0), feats.std(0)
    cent = torch.stack([((feats - mu) / sd)[p == i].mean(0) for i in range(len(toy.PATTERNS))])
    ref = {"colour_refs": col_ref.tolist(), "feat_mean": mu.tolist(), "feat_std": sd.tolist(),
           "pattern_centroids": cent.tolist()}
    ca, pa = classify(imgs, ref)
    ref["real_colour_acc"] = float((ca == c).float().mean())
    ref["real_pattern_acc"] = float((pa == p).float().mean())
    return ref


def classify(imgs: torch.Tensor, ref: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(colour index, pattern index) [B] by nearest colour reference / nearest pattern centroid."""
    mc = mean_colour(imgs)
    ci = torch.cdist(mc, torch.tensor(ref["colour_refs"])).argmin(1)
    f = (pattern_features(imgs) - torch.tensor(ref["feat_mean"])) / torch.tensor(ref["feat_std"])
    pi = torch.cdist(f, torch.tensor(ref["pattern_centroids"])).argmin(1)
    return ci, pi


# ---------------------------------------------------------------------------------------------- training
def finetune_decoder(vae, geo, steps: int, batch: int, lr: float, seed: int, log: list | None = None) -> None:
    """Train only the VAE decoder (encoder frozen, so the latent space — and a UNet trained on it — is unchanged),
    with an extra low-frequency term (8×8 mean colours) so decoded colours match. Own generator (seed)."""
    if steps <= 0:
        return
    gen = torch.Generator().manual_seed(seed)
    dec = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    opt = torch.optim.AdamW(dec, lr=lr, weight_decay=0.0)
    vae.requires_grad_(False)
    for q in dec:
        q.requires_grad_(True)
    vae.decoder.train()
    t0 = time.perf_counter()
    run = 0.0
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)
        idx, c, p = sample_captions(geo, batch, gen)
        x = shade(geo, idx, c, p, gen) * 2 - 1
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=gen)
        rec = vae.decode(z).sample
        loss = F.mse_loss(rec, x) + 0.05 * F.l1_loss(rec, x) + F.mse_loss(F.avg_pool2d(rec, 8), F.avg_pool2d(x, 8))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run = loss.item() if step == 1 else 0.95 * run + 0.05 * loss.item()
        if step % 25 == 0 or step == steps:
            if log is not None:
                log.append([step, round(run, 5)])
            print(f"decoder {step}/{steps} loss {run:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    vae.requires_grad_(False)
    vae.eval()


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except Exception:
        return "unknown"


def _save(out: Path, meta: dict, **mods) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    for name, m in mods.items():
        sd = {k: v.detach().contiguous().clone() for k, v in m.state_dict().items() if not k.endswith("position_ids")}
        save_file(sd, str(out / f"{name}.safetensors.tmp"))
        os.replace(out / f"{name}.safetensors.tmp", out / f"{name}.safetensors")
    (out / "meta.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(out / "meta.json.tmp", out / "meta.json")


def train(args) -> dict:
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    t0 = time.perf_counter()
    geo = render_geometry(args.geometry, args.seed)
    t_render = time.perf_counter() - t0
    print(f"rendered {args.geometry} geometry buffers in {t_render:.1f} s", flush=True)
    ref = fit_references(geo, torch.Generator().manual_seed(args.seed + 1))
    print(f"references: real-render colour acc {ref['real_colour_acc']:.3f}, pattern acc "
          f"{ref['real_pattern_acc']:.3f}", flush=True)
    vae, unet, te, tok = toy.build_modules(args.seed)
    meta = {
        "model": "toy-sd", "seed": args.seed, "commit": _git_commit(),
        "command": "pgc-fast train-prior " + " ".join(args.argv),
        "configs": {"vae": toy.VAE_CONFIG, "unet": toy.UNET_CONFIG, "text": toy.TEXT_CONFIG},
        "vocab": list(toy.VOCAB), "scaling_factor": 1.0,
        "data": {"resolution": RES, "geometry_buffers": args.geometry, "render_s": round(t_render, 1),
                 "shapes": [s[0] for s in make_shapes(np.random.default_rng(args.seed))],
                 "captions": "a <colour> <pattern> object[, <view> view]", "caption_dropout": 0.1,
                 "view_suffix_prob": 0.5},
        "settings": vars(args), "quality_refs": ref, "losses": {"vae": [], "unet": []}, "time_s": {},
        "threads": torch.get_num_threads(), "device": "cpu",
    }
    # ---- VAE
    t1 = time.perf_counter()
    if args.vae_from:  # resume after the VAE phase of an earlier run of this command (same seed and settings)
        from safetensors.torch import load_file

        vae.load_state_dict(load_file(str(Path(args.vae_from) / "vae.safetensors")))
        meta["losses"]["vae"] = json.loads((Path(args.vae_from) / "meta.json").read_text())["losses"]["vae"]
        meta["vae_from"] = str(args.vae_from)
        for _ in range(args.vae_steps):  # advance the data generator exactly as the VAE phase did
            sample_captions(geo, args.vae_batch, gen)
            shade(geo, torch.zeros(args.vae_batch, dtype=torch.long), torch.zeros(args.vae_batch, dtype=torch.long),
                  torch.zeros(args.vae_batch, dtype=torch.long), gen)
    else:
        opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        vae.train()
        t1 = time.perf_counter()
        run = 0.0
        for step in range(1, args.vae_steps + 1):
            idx, c, p = sample_captions(geo, args.vae_batch, gen)
            x = shade(geo, idx, c, p, gen) * 2 - 1
            post = vae.encode(x).latent_dist
            z = post.sample(generator=None)
            rec = vae.decode(z).sample
            kl = post.kl().mean() / (16 * 16 * 4)
            loss = F.mse_loss(rec, x) + 0.05 * F.l1_loss(rec, x) + args.kl_weight * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run = loss.item() if step == 1 else 0.95 * run + 0.05 * loss.item()
            if step % 25 == 0 or step == args.vae_steps:
                meta["losses"]["vae"].append([step, round(run, 5)])
                print(f"vae {step}/{args.vae_steps} loss {run:.4f} ({time.perf_counter() - t1:.0f} s)", flush=True)
        vae.eval()
        vae.requires_grad_(False)
    meta["time_s"]["vae"] = round(time.perf_counter() - t1, 1)
    # latents of a fixed data set (posterior mean + std; sampled per step)
    t2 = time.perf_counter()
    idx, c, p = sample_captions(geo, args.latents, gen)
    mus, sds = [], []
    with torch.no_grad():
        for i in range(0, args.latents, 256):
            d = vae.encode(shade(geo, idx[i:i + 256], c[i:i + 256], p[i:i + 256], gen) * 2 - 1).latent_dist
            mus.append(d.mean)
            sds.append(d.std)
    mu, sd = torch.cat(mus), torch.cat(sds)
    scale = float(1.0 / mu.std())
    vae.register_to_config(scaling_factor=scale)
    meta["scaling_factor"] = scale
    meta["data"]["latent_images"] = args.latents
    views = geo["view"][idx]
    meta["time_s"]["encode"] = round(time.perf_counter() - t2, 1)
    print(f"encoded {args.latents} images, scaling factor {scale:.4f}", flush=True)
    t4 = time.perf_counter()
    meta["losses"]["decoder"] = []
    finetune_decoder(vae, geo, args.decoder_steps, args.vae_batch, args.vae_lr * 0.5, args.seed + 2,
                     meta["losses"]["decoder"])
    meta["time_s"]["decoder"] = round(time.perf_counter() - t4, 1)
    _save(out, meta, vae=vae)
    # captions as token ids
    from diffusers import DDPMScheduler

    from pgc_fast.guidance.models.builtin import SCHEDULER_CONFIG

    sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "timestep_spacing"})
    vnames = prompts.VIEW_NAMES
    colours, patterns = list(toy.COLOURS), toy.PATTERNS

    def captions(ii: torch.Tensor) -> list[str]:
        caps = []
        r = torch.rand(len(ii), 2, generator=gen)
        for k, i in enumerate(ii.tolist()):
            if r[k, 0] < 0.1:
                caps.append("")
                continue
            s = toy.caption(colours[int(c[i])], patterns[int(p[i])])
            if r[k, 1] < 0.5:
                s += f", {vnames[int(views[i])]} view"
            caps.append(s)
        return caps

    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.01)
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    unet.train()
    te.train()
    t3 = time.perf_counter()
    run = 0.0
    last = min(args.unet_steps, args.stop_after or args.unet_steps)
    for step in range(1, last + 1):
        lr = args.unet_lr * min(1.0, step / 200) * (0.5 * (1 + math.cos(math.pi * step / args.unet_steps)) * 0.9 + 0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        ii = torch.randint(0, args.latents, (args.unet_batch,), generator=gen)
        z0 = (mu[ii] + sd[ii] * torch.randn(mu[ii].shape, generator=gen)) * scale
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, 1000, (len(ii),), generator=gen)
        zt = sched.add_noise(z0, noise, t)
        ids = tok(captions(ii), padding="max_length", max_length=toy.MAX_LENGTH, truncation=True,
                  return_tensors="pt").input_ids
        hid = te(ids)[0]
        pred = unet(zt, t, encoder_hidden_states=hid).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for k, v in unet.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[k].mul_(d).add_(v, alpha=1 - d)
        run = loss.item() if step == 1 else 0.98 * run + 0.02 * loss.item()
        if step % 50 == 0 or step == last:
            meta["losses"]["unet"].append([step, round(run, 5)])
            el = time.perf_counter() - t3
            print(f"unet {step}/{args.unet_steps} loss {run:.4f} lr {lr:.2e} ({el:.0f} s)", flush=True)
        if step % args.ckpt_every == 0 or step == last:
            meta["time_s"]["unet"] = round(time.perf_counter() - t3, 1)
            meta["unet_steps_done"] = step
            ema_unet = toy.build_modules(args.seed)[1]
            ema_unet.load_state_dict(ema)
            _save(out, meta, unet=ema_unet, text_encoder=te)
    meta["time_s"]["total"] = round(time.perf_counter() - t0, 1)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def main(argv: list[str]) -> int:
    """``pgc-fast train-prior ARGS`` (pgc_fast/cli/__init__.py passes the arguments)."""
    ap = argparse.ArgumentParser(prog="pgc-fast train-prior", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(toy.WEIGHTS_DIR))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--geometry", type=int, default=768, help="geometry buffers rendered (shape × view)")
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-from", default="", help="load the VAE phase's weights from this --out of an earlier run")
    ap.add_argument("--decoder-steps", type=int, default=300, help="decoder-only fine-tuning after encoding")
    ap.add_argument("--kl-weight", type=float, default=1e-4)
    ap.add_argument("--latents", type=int, default=8192, help="images encoded for UNet training")
    ap.add_argument("--unet-steps", type=int, default=3500)
    ap.add_argument("--unet-batch", type=int, default=32)
    ap.add_argument("--unet-lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop the UNet phase after this many steps (the LR schedule still spans --unet-steps); "
                         "reproduces a run that was stopped at a checkpoint")
    args = ap.parse_args(argv)
    args.argv = list(argv)  # recorded in meta.json as the command that made the weights
    meta = train(args)
    print(json.dumps({k: meta[k] for k in ("time_s", "scaling_factor")}))
    return 0

