"""pgc_fast.fields: hash-grid fields (TextureField, Field) — shapes, the original's ranges and init, bound mapping,
masked queries, MLP precision, optimiser groups, and a fit to a known colour function."""

from __future__ import annotations

import math

import pytest
import torch

from pgc_fast.fields import Field, HashGridEncoding, TextureField
from pgc_kernels import hash_grid_encode
from tolerances import HAS_CUDA, TRITON_INTERPRET

SMALL = dict(num_levels=4, level_dim=2, log2_table_size=10, base_resolution=4, finest_resolution=64)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_texture_field_matches_the_original_layout():
    torch.manual_seed(0)
    f = TextureField()  # the original's configuration
    enc = f.encoding
    assert (enc.num_levels, enc.level_dim, enc.table_size) == (16, 4, 2**16)
    assert (enc.base_resolution, enc.finest_resolution, enc.interpolation) == (16, 4096, "linear")
    assert [(lin.in_features, lin.out_features) for lin in f.layers] == [(64, 32), (32, 3)]
    assert all(lin.bias is not None for lin in f.layers)
    t = enc.table.detach()
    assert t.abs().max() <= 1e-4 and t.std() > 5e-5  # U(−1e-4, 1e-4), not zeros
    geo = Field(4, hidden=(32, 32))
    assert [(lin.in_features, lin.out_features) for lin in geo.layers] == [(64, 32), (32, 32), (32, 4)]


def test_rgb_range_and_latent_outputs():
    torch.manual_seed(1)
    rgb = TextureField(**SMALL)
    lat = TextureField(latent=True, **SMALL)
    with torch.no_grad():
        for lin in (*rgb.layers, *lat.layers):
            lin.weight.mul_(1e3)  # push pre-activations far from 0
    p = torch.rand(2, 5, 3) * 2 - 1
    c = rgb(p)
    z = lat(p)
    assert c.shape == (2, 5, 3) and z.shape == (2, 5, 4) and c.dtype == z.dtype == torch.float32
    assert c.min() >= 0.05 and c.max() <= 0.95
    assert z.abs().max() > 1.0  # no sigmoid in latent mode
    torch.testing.assert_close(c, torch.sigmoid(Field.forward(rgb, p)) * 0.9 + 0.05)


def test_bound_maps_positions_to_unit_cube():
    torch.manual_seed(2)
    f = Field(3, bound=2.0, **SMALL)
    p = torch.rand(7, 3) * 4 - 2
    ref = hash_grid_encode((p + 2.0) / 4.0, f.encoding.table.detach(), base_resolution=4, finest_resolution=64)
    torch.testing.assert_close(f.encode(p), ref)
    # Outside [−bound, bound] the encoding clamps: p and its projection on the cube give the same features.
    q = torch.tensor([[3.0, -5.0, 0.5]])
    torch.testing.assert_close(f.encode(q), f.encode(q.clamp(-2, 2)))


def test_query_masked():
    torch.manual_seed(3)
    f = TextureField(**SMALL)
    pos = torch.rand(2, 4, 5, 3) * 2 - 1
    mask = torch.rand(2, 4, 5) > 0.5
    bg = torch.tensor([1.0, 0.0, 0.5])
    out = f.query_masked(pos, mask, background=bg)
    assert out.shape == (2, 4, 5, 3)
    torch.testing.assert_close(out[mask], f(pos[mask]))
    assert torch.equal(out[~mask], bg.expand(int((~mask).sum()), 3))
    # Gradients reach the field only through covered pixels; uncovered positions are never queried.
    pos.requires_grad_(True)
    out = f.query_masked(pos, mask[..., None], background=0.25)  # [B,H,W,1] mask and a float background
    assert torch.all(out[~mask] == 0.25)
    out.sum().backward()
    assert torch.all(pos.grad[~mask] == 0) and pos.grad[mask].abs().sum() > 0
    assert f.encoding.table.grad.abs().sum() > 0 and f.layers[0].weight.grad.abs().sum() > 0
    # Image background, and an empty mask.
    img = torch.rand(2, 4, 5, 3)
    assert torch.equal(f.query_masked(pos.detach(), torch.zeros_like(mask), img), img)
    with pytest.raises(ValueError, match=r"query_masked\(\): mask must be a bool tensor"):
        f.query_masked(pos.detach(), mask.float())
    with pytest.raises(ValueError, match=r"query_masked\(\): positions must be a tensor \[B, H, W, 3\]"):
        f.query_masked(pos.detach()[0], mask[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_mlp_and_table(dtype):
    torch.manual_seed(4)
    ref = Field(3, **SMALL)
    low = Field(3, mlp_dtype=dtype, **SMALL)
    low.load_state_dict(ref.state_dict())
    with torch.no_grad():
        ref.encoding.table.uniform_(-1, 1)
        low.encoding.table.copy_(ref.encoding.table)
    p = torch.rand(64, 3) * 2 - 1
    a, b = ref(p), low(p)
    assert b.dtype == torch.float32 and low.layers[0].weight.dtype == torch.float32
    assert (a - b).abs().max() < (2e-2 if dtype == torch.bfloat16 else 4e-3)
    b.sum().backward()
    assert low.layers[0].weight.grad.dtype == torch.float32
    tab = HashGridEncoding(table_dtype=dtype, **SMALL)
    assert tab.table.dtype == dtype and tab(torch.rand(3, 3)).dtype == torch.float32


def test_param_groups_follow_the_original():
    f = TextureField(**SMALL)
    groups = f.param_groups(lr=1e-3)
    assert groups[0]["params"] == [f.encoding.table] and groups[0]["lr"] == pytest.approx(1e-2)
    assert len(groups[1]["params"]) == 4 and groups[1]["lr"] == 1e-3
    torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)  # accepted as is


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Field(0), r"Field\(\): out_dims must be a positive int"),
        (lambda: Field(3, hidden=(32, 0)), r"hidden must be a sequence of positive ints"),
        (lambda: Field(3, bound=0.0), r"bound must be a positive number"),
        (lambda: Field(3, mlp_dtype=torch.float64), r"mlp_dtype must be float32\|float16\|bfloat16"),
        (lambda: HashGridEncoding(num_levels=0), r"num_levels must be a positive int"),
        (lambda: HashGridEncoding(table_dtype=torch.int8), r"table_dtype must be"),
        (lambda: HashGridEncoding(base_resolution=32, finest_resolution=16), r"resolutions must satisfy"),
        (lambda: HashGridEncoding(interpolation="cubic"), r"interpolation must be"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_positions():
    f = TextureField(**SMALL)
    with pytest.raises(
        ValueError, match=r"TextureField\(\): positions must be a float32 tensor \[\.\.\., 3\], got float64"
    ):
        f(torch.rand(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"positions must be a float32 tensor \[\.\.\., 3\], got float32 \[4, 2\]"):
        f(torch.rand(4, 2))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a - b) ** 2).mean()))


def test_fit_known_colour_function():
    """The field learns c(p) = 0.5 + 0.35·sin(3p + φ) (smooth, inside the sigmoid's range) to > 33 dB PSNR on
    held-out points: 200 full-batch Adam steps, grid lr 10× the MLP's as in the original (measured: 38.7 dB)."""
    torch.manual_seed(5)

    def colour(p):
        return 0.5 + 0.35 * torch.sin(3.0 * p + torch.tensor([0.0, 1.0, 2.0]))

    f = TextureField(num_levels=4, level_dim=2, log2_table_size=12, base_resolution=4, finest_resolution=16)
    opt = torch.optim.Adam(f.param_groups(lr=1e-2), betas=(0.9, 0.99), eps=1e-15)
    train = torch.rand(4096, 3) * 2 - 1
    test = torch.rand(1024, 3) * 2 - 1
    before = _psnr(f(test).detach(), colour(test))
    for _ in range(200):
        loss = ((f(train) - colour(train)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    after = _psnr(f(test).detach(), colour(test))
    assert before < 15 and after > 33, (before, after)


@pytest.mark.skipif(not (HAS_CUDA or TRITON_INTERPRET), reason="needs CUDA or TRITON_INTERPRET=1")
def test_triton_and_torch_backends_agree():
    torch.manual_seed(6)
    dev = "cuda" if HAS_CUDA else "cpu"
    a = TextureField(backend="torch", **SMALL).to(dev)
    b = TextureField(backend="triton", **SMALL).to(dev)
    b.load_state_dict(a.state_dict())
    p = torch.rand(50, 3, device=dev) * 2 - 1
    ya, yb = a(p), b(p)
    torch.testing.assert_close(yb, ya)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(b.encoding.table.grad, a.encoding.table.grad)
    torch.testing.assert_close(b.layers[0].weight.grad, a.layers[0].weight.grad, rtol=1e-4, atol=1e-6)
