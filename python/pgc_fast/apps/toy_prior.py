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

Output (``--out``): ``vae.safetensors``, ``unet.safetensors`` and ``text_encoder.safetensors`` (both EMA),
``meta.json`` (configs, seed, command, commit, device, data settings, per-phase losses and wall times, one record
per run segment, the colour references of the quality test and, with ``--eval-per-caption``, the sampled quality).
Checkpoints are written as training goes, so the newest files are always a usable model; ``train_state.pt`` and
``optim_state.pt`` beside them (raw weights, optimiser, data stream) let ``--resume DIR`` continue the UNet phase
in a later process. ``--device cuda`` trains the networks on a GPU (data is still rendered and shaded on the CPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

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
        "sphere": tc.icosphere(3),
        "box": tc.box((1.2, 1.0, 0.9)),
        "torus": tc.torus(0.6, 0.36),
        "capsule": tc.capsule(1.0, 0.45),
        "cylinder": tc.cylinder(0.55, 1.3, sections=32),
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
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=np.float32,
    )


@torch.no_grad()
def render_geometry(n: int, seed: int, views_per_pose: int = 8, n_blobs: int = 4) -> dict[str, torch.Tensor]:
    """Render n geometry buffers: position [n,3,64,64] (object frame), normal [n,3,64,64] (camera frame,
    +z towards the camera), mask [n,1,64,64] and view ids [n]: the prompts' bins
    (:func:`pgc_fast.guidance.prompts.view_ids` with its defaults, what ``dir_text`` uses), index into
    :data:`~pgc_fast.guidance.prompts.VIEW_NAMES`."""
    from pgc_fast.render import MeshRenderer, RenderMesh, VertexColorTexture, orbit_cameras

    rng = np.random.default_rng(seed)
    shapes = make_shapes(rng, n_blobs)
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
        assert cams.phi is not None and cams.theta is not None  # orbit cameras carry their angles
        vid.append(prompts.view_ids(torch.rad2deg(cams.phi), torch.rad2deg(cams.theta)))
        done += b
    return {"position": torch.cat(pos), "normal": torch.cat(nrm), "mask": torch.cat(msk), "view": torch.cat(vid)}


def shade(
    geo: dict[str, torch.Tensor],
    idx: torch.Tensor,
    colour_ids: torch.Tensor,
    pattern_ids: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """Images [B,3,64,64] in [0,1] for geometry rows ``idx`` with the given colour / pattern indices, on the
    device of ``geo``. The random draws come from ``gen`` (a CPU generator) in a fixed order wherever the
    images are shaded, so a GPU run sees the same data stream as a CPU one."""
    B = idx.numel()
    p, n, m = geo["position"][idx], geo["normal"][idx], geo["mask"][idx]
    dev = p.device
    colour_ids, pattern_ids = colour_ids.to(dev), pattern_ids.to(dev)
    pal = torch.tensor(list(toy.COLOURS.values()), device=dev)
    base = pal[colour_ids][:, :, None, None]
    # pattern coordinates: random rotation and frequency (cycles per object unit)
    rot = torch.linalg.qr(torch.randn(B, 3, 3, generator=gen))[0].to(dev)
    q = torch.einsum("bij,bjhw->bihw", rot, p)
    freq = ((2.2 + 1.3 * torch.rand(B, 1, 1, 1, generator=gen)) * 2 * math.pi).to(dev)
    phase = (torch.rand(B, 3, 1, 1, generator=gen) * 2 * math.pi).to(dev)
    s = torch.sin(q * freq + phase)
    stripes = (s[:, :1] > 0).float()
    checker = ((s[:, :1] > 0) ^ (s[:, 1:2] > 0) ^ (s[:, 2:3] > 0)).float()
    cell = torch.remainder(q * freq / (2 * math.pi) + phase / (2 * math.pi), 1.0) - 0.5
    dots = (cell.norm(dim=1, keepdim=True) < 0.33).float()
    sec = torch.stack([torch.zeros_like(stripes), stripes, checker, dots], 1)  # [B,4,1,H,W]
    secondary = sec[torch.arange(B, device=dev), pattern_ids]
    dark = torch.where(
        colour_ids[:, None, None, None] == list(toy.COLOURS).index("black"), torch.full_like(base, 0.42), base * 0.55
    )
    albedo = base * (1 - secondary) + dark * secondary
    light = F.normalize(
        torch.randn(B, 3, generator=gen) * torch.tensor([0.6, 0.6, 0.3]) + torch.tensor([0.0, 0.0, -1.0]), dim=1
    ).to(dev)
    lam = (n * light[:, :, None, None]).sum(1, keepdim=True).clamp_min(0)
    img = albedo * (0.35 + 0.65 * lam)
    g = 0.3 + 0.45 * torch.rand(B, 1, 1, 1, generator=gen)
    tint = (torch.rand(B, 3, 1, 1, generator=gen) - 0.5) * 0.1
    ramp = torch.linspace(-1, 1, RES).view(1, 1, RES, 1) * (torch.rand(B, 1, 1, 1, generator=gen) - 0.5) * 0.3
    bg = (g + tint + ramp).clamp(0, 1).to(dev).expand(B, 3, RES, RES)
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
    return img[..., a : a + size, a : a + size]


def mean_colour(img: torch.Tensor) -> torch.Tensor:
    """Mean object colour [B,3]: the mean of the central 20×20 pixels (objects are centred and fill it)."""
    return centre(img).mean((-1, -2))


def pattern_features(img: torch.Tensor) -> torch.Tensor:
    """[B,3] features of the central 24² luminance after removing shading (minus a σ=3 blur): log high-pass
    energy, spectral anisotropy (structure tensor of the power spectrum: 1 = one orientation, stripes) and
    skewness (dots are small dark spots)."""
    x = centre(img, 24)
    L = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    k = torch.exp(-(torch.arange(-6, 7).float() ** 2) / 18)
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
    aniso = torch.sqrt((juu - jvv) ** 2 + 4 * juv**2) / tr
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
    ref: dict[str, Any] = {
        "colour_refs": col_ref.tolist(),
        "feat_mean": mu.tolist(),
        "feat_std": sd.tolist(),
        "pattern_centroids": cent.tolist(),
    }
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
    dev = next(vae.parameters()).device
    t0 = time.perf_counter()
    run = 0.0
    for step in range(1, steps + 1):
        for g in opt.param_groups:
            g["lr"] = lr * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)
        idx, c, p = sample_captions(geo, batch, gen)
        x = shade(geo, idx, c, p, gen).to(dev) * 2 - 1
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


def _pair(geo, n: int, gen: torch.Generator, pattern_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """n image pairs [n,3,64,64] in [-1,1] that differ in the colour word (and, with probability
    ``pattern_prob``, in the pattern word too); same geometry, light, pattern placement and background (the
    shading draws are replayed)."""
    idx, c1, p1 = sample_captions(geo, n, gen)
    nc, npat = len(toy.COLOURS), len(toy.PATTERNS)
    c2 = (c1 + torch.randint(1, nc, (n,), generator=gen)) % nc
    p2 = (p1 + torch.randint(1, npat, (n,), generator=gen) * (torch.rand(n, generator=gen) < pattern_prob)) % npat
    state = gen.get_state()
    x1 = shade(geo, idx, c1, p1, gen)
    gen.set_state(state)
    x2 = shade(geo, idx, c2, p2, gen)
    return x1 * 2 - 1, x2 * 2 - 1


def align_encoder(
    vae, geo, steps: int, batch: int, lr: float, weight: float, seed: int, log: list, pattern_prob: float = 0.0
) -> None:
    """Make the encoder's pixel-space pullback follow what its latents mean, keeping the latents themselves.

    Score distillation on pixels (``pgc-fast image``, and every render in ``pgc-fast generate``) moves the image
    along J_E^T g, the transpose of the encoder's Jacobian applied to the latent gradient g. A VAE trained for
    reconstruction alone need not make that direction resemble the change g stands for: with the H100-trained
    weights the latent step that turns a green object red (latent-mode SDS does so in 50 steps) pulls back to
    "darker, less blue" pixels, and 2-D SDS for "a red plain object" ends with a green object that the encoder
    reads as red (benches/RESULTS.md). This phase fine-tunes the encoder (decoder, UNet and text encoder
    untouched) on pairs of renders that differ in colour (and pattern, see :func:`_pair`): for the latent difference
    v = E0(x2) − E0(x1) of the frozen original encoder E0, it maximises cos(J_E(x)^T v, x2 − x1) at a random
    point x between the pair (double backward through the encoder), while an MSE term keeps E(x) = E0(x) on the
    renders (so the UNet trained on E0's latents stays valid; the MSE is relative to the latents' variance, so
    the balance does not depend on the scaling factor). Own generator (``seed``); ``log`` gets
    [step, relative distillation MSE, mean cosine] every 10 steps.

    Measured (benches/RESULTS.md, issue 20): 300 steps raise the mean cosine from 0.68 to about 0.8 and keep the
    reconstructions, but 2-D SDS for "a red plain object" still ends green (the encoder's misreading is an
    adversarial high-frequency pattern, not the pullback's average direction), so the phase is off by default."""
    import copy

    from diffusers.models.attention_processor import AttnProcessor

    if steps <= 0:
        return
    dev = next(vae.parameters()).device
    teacher = copy.deepcopy(vae).requires_grad_(False)
    processors = vae.attn_processors
    vae.set_attn_processor(AttnProcessor())  # the math attention: SDPA's CPU kernel has no double backward

    def mean(m, x):
        return m.quant_conv(m.encoder(x))[:, :4]

    params = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
    vae.requires_grad_(False)
    for q in params:
        q.requires_grad_(True)
    vae.encoder.train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        _set_lr(opt, _lr(lr, step, steps, 10))
        x1, x2 = (t.to(dev) for t in _pair(geo, batch, gen, pattern_prob))
        a = torch.rand(batch, 1, 1, 1, generator=gen).to(dev)
        x = (x1 + a * (x2 - x1)).requires_grad_(True)
        with torch.no_grad():
            v = mean(teacher, x2) - mean(teacher, x1)
            target = mean(teacher, torch.cat([x1, x2]))
        pull = torch.autograd.grad((mean(vae, x) * v).sum(), x, create_graph=True)[0]
        cos = F.cosine_similarity(pull.flatten(1), (x2 - x1).flatten(1), dim=1).mean()
        distil = F.mse_loss(mean(vae, torch.cat([x1, x2])), target) / target.var()
        loss = distil + weight * (1 - cos)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == steps:
            log.append([step, round(distil.item(), 6), round(cos.item(), 4)])
            print(
                f"align {step}/{steps} distil {distil.item():.5f} cos {cos.item():.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    vae.set_attn_processor(processors)
    vae.requires_grad_(False)
    vae.eval()


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout
        return "unknown"


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def _save(out: Path, meta: dict, **mods) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    for name, m in mods.items():
        sd = {
            k: v.detach().cpu().contiguous().clone()
            for k, v in m.state_dict().items()
            if not k.endswith("position_ids")
        }
        save_file(sd, str(out / f"{name}.safetensors.tmp"))
        os.replace(out / f"{name}.safetensors.tmp", out / f"{name}.safetensors")
    (out / "meta.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(out / "meta.json.tmp", out / "meta.json")


def _lr(base: float, step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then a cosine decay to 0.1× over ``total`` steps."""
    return base * min(1.0, step / warmup) * (0.5 * (1 + math.cos(math.pi * min(step, total) / total)) * 0.9 + 0.1)


def train_vae(vae, geo, gen: torch.Generator, args, log: list) -> None:
    """The VAE phase: reconstruction (MSE + 0.05 L1) + a small KL term on freshly shaded batches."""
    dev = next(vae.parameters()).device
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0, fused=dev.type == "cuda")
    vae.train()
    t1 = time.perf_counter()
    run = 0.0
    for step in range(1, args.vae_steps + 1):
        for g in opt.param_groups:
            g["lr"] = _lr(args.vae_lr, step, args.vae_steps, 100)
        idx, c, p = sample_captions(geo, args.vae_batch, gen)
        x = shade(geo, idx, c, p, gen).to(dev) * 2 - 1
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
            log.append([step, round(run, 5)])
            print(f"vae {step}/{args.vae_steps} loss {run:.4f} ({time.perf_counter() - t1:.0f} s)", flush=True)
    vae.eval()
    vae.requires_grad_(False)


def _skip_vae_phase(geo, gen: torch.Generator, args) -> None:
    """Advance the data generator exactly as the VAE phase did (for --vae-from / --resume)."""
    z = torch.zeros(args.vae_batch, dtype=torch.long)
    for _ in range(args.vae_steps):
        sample_captions(geo, args.vae_batch, gen)
        shade(geo, z, z, z, gen)


@torch.no_grad()
def encode_latents(vae, geo, gen: torch.Generator, n: int) -> dict[str, torch.Tensor]:
    """Posterior mean/std of n freshly shaded images (on the VAE's device) and their colour, pattern, view ids."""
    dev = next(vae.parameters()).device
    idx, c, p = sample_captions(geo, n, gen)
    mus, sds = [], []
    for i in range(0, n, 256):
        d = vae.encode(shade(geo, idx[i : i + 256], c[i : i + 256], p[i : i + 256], gen).to(dev) * 2 - 1).latent_dist
        mus.append(d.mean)
        sds.append(d.std)
    return {"mu": torch.cat(mus), "sd": torch.cat(sds), "colour": c, "pattern": p, "view": geo["view"][idx]}


def caption_ids(tok, colour: torch.Tensor, pattern: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """Token ids [N, 3, MAX_LENGTH] of each image's captions: "a <colour> <pattern> object", the same with
    ", <view> view", and "" (the unconditional caption)."""
    vnames = prompts.VIEW_NAMES  # the prompts' bins (render_geometry labels views with prompts.view_ids)
    colours = list(toy.COLOURS)
    plain = [toy.caption(colours[a], toy.PATTERNS[b]) for a, b in zip(colour.tolist(), pattern.tolist(), strict=False)]
    viewed = [f"{s}, {vnames[v]} view" for s, v in zip(plain, view.tolist(), strict=False)]

    def enc(caps: list[str]) -> torch.Tensor:
        return tok(
            caps, padding="max_length", max_length=toy.MAX_LENGTH, truncation=True, return_tensors="pt"
        ).input_ids

    return torch.stack([enc(plain), enc(viewed), enc([""] * len(plain))], 1)


def _load_train_state(src: Path, unet, te, ema_unet, ema_te, opt, gen: torch.Generator) -> dict:
    """Restore a UNet-phase checkpoint written by :func:`_save_train_state` (EMA weights from the safetensors)."""
    from safetensors.torch import load_file

    dev = next(unet.parameters()).device
    st = torch.load(src / "train_state.pt", map_location=dev, weights_only=False)
    unet.load_state_dict(st["unet"])
    te.load_state_dict(st["text_encoder"])
    ema_unet.load_state_dict(load_file(str(src / "unet.safetensors"), device=str(dev)))
    ema_te.load_state_dict(load_file(str(src / "text_encoder.safetensors"), device=str(dev)), strict=False)
    opt.load_state_dict(torch.load(src / "optim_state.pt", map_location=dev, weights_only=False))
    gen.set_state(st["gen"].cpu())
    return st


def _save_train_state(out: Path, step: int, unet, te, opt, gen: torch.Generator) -> None:
    """Raw (non-EMA) weights, optimiser moments and the data generator, so --resume continues this run
    (two files, each under 16 MiB)."""
    for name, obj in (
        (
            "train_state.pt",
            {"step": step, "unet": unet.state_dict(), "text_encoder": te.state_dict(), "gen": gen.get_state()},
        ),
        ("optim_state.pt", opt.state_dict()),
    ):
        torch.save(obj, out / f"{name}.tmp")
        os.replace(out / f"{name}.tmp", out / name)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def train_unet(
    unet, te, tok, lat: dict, args, meta: dict, out: Path, resume: Path | None, deadline: float = math.inf
) -> None:
    """The UNet + text encoder phase (ε-prediction, DDPM noise schedule, 10 % empty captions for CFG), EMA of
    both; the EMA weights are what is saved. Stops at the last checkpoint that ends before ``deadline``
    (a ``time.perf_counter()`` value), so a time-limited run ends resumable."""
    import copy

    from diffusers import DDPMScheduler

    from pgc_fast.guidance.models.builtin import SCHEDULER_CONFIG

    dev = next(unet.parameters()).device
    sched = DDPMScheduler(**{k: v for k, v in SCHEDULER_CONFIG.items() if k != "timestep_spacing"})
    ids = caption_ids(tok, lat["colour"], lat["pattern"], lat["view"]).to(dev)
    mu, sd, scale = lat["mu"], lat["sd"], meta["scaling_factor"]
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.01, fused=dev.type == "cuda")
    ema_unet, ema_te = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(te).requires_grad_(False)
    ema = list(ema_unet.parameters()) + list(ema_te.parameters())
    gen = torch.Generator(dev).manual_seed(args.seed + 3)  # the UNet phase's own data stream
    first = 1
    if resume is not None:
        first = _load_train_state(resume, unet, te, ema_unet, ema_te, opt, gen)["step"] + 1
        print(f"resumed the UNet phase at step {first} from {resume}", flush=True)
    unet.train()
    te.train()
    t3, t_before = time.perf_counter(), meta["time_s"].get("unet", 0.0)
    acc, cnt = torch.zeros((), device=dev), 0  # loss summed on the device: no host sync per step
    last = min(args.unet_steps, args.stop_after or args.unet_steps)
    n, B = mu.shape[0], args.unet_batch
    for step in range(first, last + 1):
        lr = _set_lr(opt, _lr(args.unet_lr, step, args.unet_steps, 200))
        ii = torch.randint(0, n, (B,), generator=gen, device=dev)
        z0 = (mu[ii] + sd[ii] * torch.randn(mu[ii].shape, generator=gen, device=dev)) * scale
        noise = torch.randn(z0.shape, generator=gen, device=dev)
        t = torch.randint(0, 1000, (B,), generator=gen, device=dev)
        r = torch.rand(B, 2, generator=gen, device=dev)
        variant = torch.where(r[:, 0] < 0.1, 2, torch.where(r[:, 1] < args.view_prob, 1, 0))
        hid = te(ids[ii, variant])[0]
        z_t = sched.add_noise(z0, noise, t)  # type: ignore[attr-defined]  # diffusers' stubs omit the mixin method
        loss = F.mse_loss(unet(z_t, t, encoder_hidden_states=hid).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [q.detach() for q in params], 1 - min(args.ema, (1 + step) / (10 + step)))
            acc += loss.detach()
            cnt += 1
        if step % 50 == 0 or step == last:
            run = acc.item() / cnt  # mean loss of the last (up to) 50 steps
            acc.zero_()
            cnt = 0
            meta["losses"]["unet"].append([step, round(run, 5)])
            el = time.perf_counter() - t3
            print(
                f"unet {step}/{args.unet_steps} loss {run:.4f} lr {lr:.2e} ({el:.0f} s, "
                f"{1e3 * el / (step - first + 1):.1f} ms/step)",
                flush=True,
            )
        if step % args.ckpt_every == 0 or step == last:
            meta["time_s"]["unet"] = round(t_before + time.perf_counter() - t3, 1)
            meta["unet_steps_done"] = step
            _save(out, meta, unet=ema_unet, text_encoder=ema_te)
            _save_train_state(out, step, unet, te, opt, gen)
            per_step = (time.perf_counter() - t3) / (step - first + 1)
            if step < last and time.perf_counter() + per_step * args.ckpt_every > deadline:
                print(f"stopping at step {step}: the next checkpoint would end past --time-limit", flush=True)
                meta["stopped_by_time_limit"] = step
                break


@torch.no_grad()
def sample_quality(
    directory: str | Path, device: str | torch.device = "cpu", per_caption: int = 2, seed: int = 0
) -> dict:
    """The quality bars' measurement (tests/guidance/test_toy_prior.py): every caption "a <colour> <pattern>
    object" × ``per_caption``, sampled with the diffusers pipeline (DDIM, 30 steps, CFG 7.5, seed ``seed``),
    classified by :func:`classify` against the references in the weights' meta.json."""
    torch.manual_seed(seed)
    pipe = toy.pipeline(directory, device)
    pipe.set_progress_bar_config(disable=True)
    caps: list[str] = []
    cidx: list[int] = []
    pidx: list[int] = []
    for c_id, c in enumerate(toy.COLOURS):
        for p_id, p in enumerate(toy.PATTERNS):
            for _ in range(per_caption):
                caps.append(toy.caption(c, p))
                cidx.append(c_id)
                pidx.append(p_id)
    gen = torch.Generator().manual_seed(seed)
    imgs = pipe(
        caps, num_inference_steps=30, guidance_scale=7.5, generator=gen, output_type="pt", height=64, width=64
    ).images
    ci, pi = classify(imgs.float().cpu(), toy.read_meta(directory)["quality_refs"])
    return {
        "colour": float((ci == torch.tensor(cidx)).float().mean()),
        "pattern": float((pi == torch.tensor(pidx)).float().mean()),
        "n": len(caps),
    }


@torch.no_grad()
def recon_quality(vae, geo, ref: dict, gen: torch.Generator, n: int = 1024) -> dict:
    """The same classification on VAE reconstructions of real renders: the ceiling a UNet trained on these
    latents can reach."""
    dev = next(vae.parameters()).device
    idx, c, p = sample_captions(geo, n, gen)
    imgs = shade(geo, idx, c, p, gen)
    rec = (
        torch.cat(
            [
                vae.decode(vae.encode(imgs[i : i + 256].to(dev) * 2 - 1).latent_dist.mean).sample
                for i in range(0, n, 256)
            ]
        )
        .float()
        .cpu()
    )
    ci, pi = classify(((rec + 1) / 2).clamp(0, 1), ref)
    return {"colour": float((ci == c).float().mean()), "pattern": float((pi == p).float().mean()), "n": n}


def _start_meta(args, geo_s: float, ref: dict, dev: torch.device) -> dict:
    return {
        "model": "toy-sd",
        "seed": args.seed,
        "commit": args.commit or _git_commit(),
        "command": "pgc-fast train-prior " + " ".join(args.argv),
        "configs": {"vae": toy.VAE_CONFIG, "unet": toy.UNET_CONFIG, "text": toy.TEXT_CONFIG},
        "vocab": list(toy.VOCAB),
        "scaling_factor": 1.0,
        "data": {
            "resolution": RES,
            "geometry_buffers": args.geometry,
            "render_s": round(geo_s, 1),
            "shapes": [s[0] for s in make_shapes(np.random.default_rng(args.seed), args.blobs)],
            "captions": "a <colour> <pattern> object[, <view> view]",
            "caption_dropout": 0.1,
            "view_suffix_prob": args.view_prob,
        },
        "settings": vars(args),
        "quality_refs": ref,
        "losses": {"vae": [], "decoder": [], "unet": []},
        "time_s": {},
        "threads": torch.get_num_threads(),
        "device": _device_name(dev),
        "runs": [],
    }


def _vae_phase(vae, geo, gen: torch.Generator, args, meta: dict, src: Path | None) -> None:
    """Train the VAE, or load it from ``src`` (an earlier run's --out) and replay the data generator."""
    t1 = time.perf_counter()
    if src is not None:
        from safetensors.torch import load_file

        vae.load_state_dict(load_file(str(src / "vae.safetensors")))
        old = json.loads((src / "meta.json").read_text())
        for k in ("vae", "decoder"):
            meta["losses"][k] = old["losses"].get(k, [])
        meta["vae_from"] = str(src)
        vae.requires_grad_(False)
        vae.eval()
        _skip_vae_phase(geo, gen, args)
        meta["time_s"].setdefault("vae", round(time.perf_counter() - t1, 1))  # a resumed run keeps the real time
    else:
        train_vae(vae, geo, gen, args, meta["losses"]["vae"])
        meta["time_s"]["vae"] = round(time.perf_counter() - t1, 1)


def _align(vae, geo, args, log: list) -> None:
    """:func:`align_encoder` with the run's ``--align-*`` settings (a full training run and ``--align-from``)."""
    align_encoder(
        vae,
        geo,
        args.align_steps,
        args.align_batch,
        args.align_lr,
        args.align_weight,
        args.seed + 5,
        log,
        args.align_pattern_prob,
    )


def train(args) -> dict:
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":  # TF32 matmuls/convolutions, tuned conv algorithms (fixed shapes)
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.benchmark = True
    resume = Path(args.resume) if args.resume else None
    gen = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    t0 = time.perf_counter()
    geo = render_geometry(args.geometry, args.seed, n_blobs=args.blobs)
    t_render = time.perf_counter() - t0
    print(f"rendered {args.geometry} geometry buffers in {t_render:.1f} s", flush=True)
    ref = fit_references(geo, torch.Generator().manual_seed(args.seed + 1))
    print(
        f"references: real-render colour acc {ref['real_colour_acc']:.3f}, pattern acc {ref['real_pattern_acc']:.3f}",
        flush=True,
    )
    if dev.type != "cpu":  # shade on the GPU too (the references above were fitted on the CPU copy)
        geo = {k: v.to(dev) for k, v in geo.items()}
    vae, unet, te, tok = (m.to(dev) if isinstance(m, torch.nn.Module) else m for m in toy.build_modules(args.seed))
    meta = _start_meta(args, t_render, ref, dev)
    if resume is not None:  # carry the earlier segments' record (losses, times, runs) on
        old = json.loads((resume / "meta.json").read_text())
        for k in ("losses", "time_s", "runs", "quality"):
            meta[k] = old.get(k, meta.get(k))
        meta["losses"]["unet"] = [r for r in meta["losses"]["unet"] if r[0] <= old.get("unet_steps_done", 0)]
    src = resume or (Path(args.vae_from) if args.vae_from else None)
    _vae_phase(vae, geo, gen, args, meta, src)
    if src is None:  # a VAE trained here; one loaded from an earlier run keeps its encoder as it is
        t_al = time.perf_counter()
        meta["losses"]["align"] = []
        _align(vae, geo, args, meta["losses"]["align"])
        meta["time_s"]["align"] = round(time.perf_counter() - t_al, 1)
    t2 = time.perf_counter()
    lat = encode_latents(vae, geo, gen, args.latents)
    scale = float(1.0 / lat["mu"].std())
    vae.register_to_config(scaling_factor=scale)  # type: ignore[operator]  # ConfigMixin method, typed as Tensor
    meta["scaling_factor"] = scale
    meta["data"]["latent_images"] = args.latents
    meta["time_s"]["encode"] = round(time.perf_counter() - t2, 1)
    print(f"encoded {args.latents} images, scaling factor {scale:.4f}", flush=True)
    if resume is None:
        t4 = time.perf_counter()
        finetune_decoder(
            vae, geo, args.decoder_steps, args.vae_batch, args.vae_lr * 0.5, args.seed + 2, meta["losses"]["decoder"]
        )
        meta["time_s"]["decoder"] = round(time.perf_counter() - t4, 1)
        meta["quality"] = {"vae_recon": recon_quality(vae, geo, ref, torch.Generator().manual_seed(args.seed + 4))}
        print(f"VAE reconstructions: {meta['quality']['vae_recon']}", flush=True)
    _save(out, meta, vae=vae)
    s0 = int(json.loads((resume / "meta.json").read_text()).get("unet_steps_done", 0)) if resume else 0
    deadline = t0 + args.time_limit if args.time_limit > 0 else math.inf
    train_unet(unet, te, tok, lat, args, meta, out, resume, deadline)
    return _finish(args, meta, out, dev, t0, s0)


def _finish(args, meta: dict, out: Path, dev: torch.device, t0: float, s0: int) -> dict:
    """Record this run segment (command, commit, device, wall time, UNet steps) and the sampled quality."""
    if args.eval_per_caption > 0:
        t5 = time.perf_counter()
        q = sample_quality(out, dev, args.eval_per_caption, seed=0)
        meta.setdefault("quality", {})["samples"] = {
            **q,
            "device": _device_name(dev),
            "seed": 0,
            "s": round(time.perf_counter() - t5, 1),
        }
        print(
            f"sampled quality ({q['n']} samples on {_device_name(dev)}): colour {q['colour']:.3f}, "
            f"pattern {q['pattern']:.3f}",
            flush=True,
        )
    wall = round(time.perf_counter() - t0, 1)
    meta["runs"].append(
        {
            "command": meta["command"],
            "commit": meta["commit"],
            "device": _device_name(dev),
            "threads": torch.get_num_threads(),
            "wall_s": wall,
            "unet_steps": [s0, meta.get("unet_steps_done", 0)],
        }
    )
    meta["time_s"]["total"] = round(sum(r["wall_s"] for r in meta["runs"]), 1)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def align_existing(args) -> dict:
    """``--align-from DIR``: the encoder alignment phase alone on a finished model. The decoder, UNet and text
    encoder files are copied unchanged (so are its samples); the encoder is aligned on ``--geometry`` freshly
    rendered buffers; meta.json keeps the training record and gains the phase's command, commit, losses, time
    and the VAE reconstruction quality before and after it (same renders)."""
    import shutil

    torch.set_num_threads(args.threads)
    src, out = Path(args.align_from), Path(args.out)
    t0 = time.perf_counter()
    vae, _, _, _, meta = toy.load_toy(src)
    geo = render_geometry(args.geometry, args.seed, n_blobs=args.blobs)
    before = recon_quality(vae, geo, meta["quality_refs"], torch.Generator().manual_seed(4), args.recon_samples)
    t1 = time.perf_counter()
    log: list = []
    _align(vae, geo, args, log)
    t_align = time.perf_counter() - t1
    meta["losses"]["align"] = log
    after = recon_quality(vae, geo, meta["quality_refs"], torch.Generator().manual_seed(4), args.recon_samples)
    meta["quality"]["vae_recon_align"] = {"before": before, "after": after, "geometry_buffers": args.geometry}
    command = "pgc-fast train-prior " + " ".join(args.argv)
    meta["align"] = {
        "command": command,
        "commit": args.commit or _git_commit(),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "geometry_buffers": args.geometry,
        "blobs": args.blobs,
        "wall_s": round(time.perf_counter() - t0, 1),
        "align_s": round(t_align, 1),
    }
    meta["runs"].append(
        {
            "command": command,
            "commit": meta["align"]["commit"],
            "device": "cpu",
            "threads": torch.get_num_threads(),
            "wall_s": meta["align"]["wall_s"],
            "unet_steps": None,
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    if src.resolve() != out.resolve():
        for name in ("unet", "text_encoder"):
            shutil.copyfile(src / f"{name}.safetensors", out / f"{name}.safetensors")
    _save(out, meta, vae=vae)
    print(f"aligned the encoder in {t_align:.0f} s; VAE reconstructions before {before}, after {after}", flush=True)
    return meta


def main(argv: list[str]) -> int:
    """``pgc-fast train-prior ARGS`` (pgc_fast/cli/__init__.py passes the arguments)."""
    ap = argparse.ArgumentParser(prog="pgc-fast train-prior", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(toy.WEIGHTS_DIR))
    ap.add_argument("--device", default="cpu", help="torch device for the networks (data is shaded on the CPU)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--geometry", type=int, default=768, help="geometry buffers rendered (shape × view)")
    ap.add_argument("--blobs", type=int, default=4, help="random blob shapes besides the 7 fixed ones")
    ap.add_argument("--vae-steps", type=int, default=600)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-from", default="", help="load the VAE phase's weights from this --out of an earlier run")
    ap.add_argument("--decoder-steps", type=int, default=300, help="decoder-only fine-tuning after encoding")
    ap.add_argument("--kl-weight", type=float, default=1e-4)
    ap.add_argument(
        "--align-steps",
        type=int,
        default=0,
        help="encoder alignment after the VAE phase (align_encoder; 0: off, the shipped weights': 300 steps did "
        "not fix 2-D pixel-space SDS, benches/RESULTS.md)",
    )
    ap.add_argument("--align-batch", type=int, default=6)
    ap.add_argument("--align-lr", type=float, default=3e-4)
    ap.add_argument("--align-weight", type=float, default=0.1, help="weight of (1 - cosine) against the MSE")
    ap.add_argument("--recon-samples", type=int, default=1024, help="--align-from: renders of the reconstruction check")
    ap.add_argument("--align-pattern-prob", type=float, default=0.0, help="share of pairs that change pattern too")
    ap.add_argument(
        "--align-from",
        default="",
        help="only align the encoder of the finished model in this directory and write the result to --out",
    )
    ap.add_argument("--latents", type=int, default=8192, help="images encoded for UNet training")
    ap.add_argument("--view-prob", type=float, default=0.5, help="probability of a ', <view> view' caption suffix")
    ap.add_argument("--unet-steps", type=int, default=3500)
    ap.add_argument("--unet-batch", type=int, default=32)
    ap.add_argument("--unet-lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="stop the UNet phase after this many steps (the LR schedule still spans --unet-steps); "
        "reproduces a run that was stopped at a checkpoint",
    )
    ap.add_argument(
        "--resume",
        default="",
        help="continue the UNet phase from the checkpoint in this --out of an earlier run (same "
        "settings): its VAE, EMA and raw weights, optimiser and data stream",
    )
    ap.add_argument(
        "--eval-per-caption",
        type=int,
        default=0,
        help="after training, sample every caption this many times and record the quality bars",
    )
    ap.add_argument(
        "--time-limit",
        type=float,
        default=0,
        help="seconds: end the UNet phase at the last checkpoint that fits (then --resume continues)",
    )
    ap.add_argument("--commit", default="", help="record this commit (sources run from a copy without git)")
    args = ap.parse_args(argv)
    args.argv = list(argv)  # recorded in meta.json as the command that made the weights
    if args.align_from:
        align_existing(args)
        return 0
    meta = train(args)
    print(json.dumps({k: meta[k] for k in ("time_s", "scaling_factor")}))
    return 0


SIDE_VIEWS = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)


@torch.no_grad()
def classify_views(mesh, tex, phis: tuple[float, ...] = SIDE_VIEWS) -> dict:
    """Colour and pattern words of a textured :class:`~pgc_fast.render.RenderMesh` (within |coord| ≤ 0.8) by the
    quality test's classifier (:func:`classify`, references from the shipped weights' meta.json): rendered unlit at
    64² on grey (0.5) from the side (θ = 90°, r = 2.2, focal 1.6·64, one view per azimuth in ``phis``), close enough
    that the classifier's central 24² crop is all surface. Returns {"colour": [word per view], "pattern": [word per
    view], "majority": (colour, pattern) (most frequent words, ties to the first seen), "images": [V,3,64,64]}."""
    from collections import Counter

    from pgc_fast.render import MeshRenderer, orbit_cameras

    n = len(phis)
    cams = orbit_cameras([2.2] * n, [90.0] * n, list(phis), [1.6 * RES] * n, RES)
    img = MeshRenderer("cpu").render(mesh, cams, tex, background=0.5, shading="albedo").image.clamp(0, 1)
    ci, pi = classify(img, toy.read_meta()["quality_refs"])
    colours = [list(toy.COLOURS)[i] for i in ci.tolist()]
    patterns = [toy.PATTERNS[i] for i in pi.tolist()]
    top = (Counter(colours).most_common(1)[0][0], Counter(patterns).most_common(1)[0][0])
    return {"colour": colours, "pattern": patterns, "majority": top, "images": img}


def classify_textured_mesh(path: str | Path, phis: tuple[float, ...] = SIDE_VIEWS) -> dict:
    """:func:`classify_views` of an exported textured mesh (``mesh.glb`` / ``mesh.obj`` of a run), scaled to
    |coord| ≤ 0.8 as ``--mesh.canonicalize`` does."""
    from pgc_fast.export.mesh import load_textured_mesh_for_render
    from pgc_fast.mesh import Normalization, load_mesh

    norm = Normalization.fit(load_mesh(path).vertices, 0.8)
    mesh, tex = load_textured_mesh_for_render(path, normalisation=norm)
    return classify_views(mesh, tex, phis)
