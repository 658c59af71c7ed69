"""Synthetic defect generator: shapes, determinism, honest masks, every kind, Perlin noise."""
from __future__ import annotations

import pytest
import torch

from nextpatch.data import anomalies as A
from nextpatch.data.anomalies import KINDS, AnomalySynthesizer, perlin_mask, perlin_noise

H = W = 128
MIN_AREA, MAX_AREA = 0.002, 0.10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small per-image ops: threading only adds overhead (a lot of it on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(H) / H, torch.arange(W) / W, indexing="ij")
    return torch.stack([0.4 + 0.2 * xx, 0.45 + 0.1 * yy, torch.full_like(xx, 0.5)])


def _textured() -> torch.Tensor:
    g = _gen(7)
    grain = perlin_noise((H, W), 16, g, octaves=3)
    base = torch.stack([0.55 + 0.2 * grain, 0.5 + 0.15 * grain, 0.45 + 0.1 * grain])
    return (base + 0.04 * torch.randn(3, H, W, generator=g)).clamp(0, 1)


def _batch(n: int = 8) -> torch.Tensor:
    const = torch.full((3, H, W), 0.5)
    white = torch.ones(3, H, W)
    imgs = [_smooth(), _textured(), const, white]
    return torch.stack([imgs[i % 4] for i in range(n)])


def _check_defect(img: torch.Tensor, out: torch.Tensor, mask: torch.Tensor, max_area: float = MAX_AREA) -> None:
    """One image (C, H, W) and its mask (1, H, W): a real, honestly labelled defect."""
    assert out.shape == img.shape and mask.shape == (1, *img.shape[1:])
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
    m = mask[0]
    area = float(m.mean())
    assert 0.5 * MIN_AREA <= area <= 1.1 * max_area, area
    change = (out - img).abs().mean(0)
    assert float(change[m > 0].mean()) > 0.02
    assert torch.equal(out[:, m == 0], img[:, m == 0])  # untouched outside the mask, bit for bit
    assert bool((change[m > 0] >= A.CHANGE_EPS).all())  # and the mask only marks changed pixels


def test_shapes_dtypes_range():
    x = _batch(4)
    out, mask = AnomalySynthesizer(seed=0)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert mask.shape == (4, 1, H, W) and mask.dtype == x.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1
    out64, mask64 = AnomalySynthesizer(seed=0, p_anomaly=1.0)(x.double()[:, :, :40, :72])  # dtype, non-square
    assert out64.dtype == torch.float64 and mask64.shape == (4, 1, 40, 72)


def test_deterministic():
    x = _batch(6)
    a = AnomalySynthesizer(seed=3, p_anomaly=0.7)(x)
    b = AnomalySynthesizer(seed=3, p_anomaly=0.7)(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    syn = AnomalySynthesizer(seed=99, p_anomaly=0.7)
    c = syn(x, _gen(5))
    d = syn(x, _gen(5))
    assert torch.equal(c[0], d[0]) and torch.equal(c[1], d[1])
    e = AnomalySynthesizer(seed=4, p_anomaly=0.7)(x)
    assert not torch.equal(a[1], e[1])


def test_p_zero_is_identity():
    x = _batch(4)
    out, mask = AnomalySynthesizer(p_anomaly=0.0, seed=0)(x)
    assert torch.equal(out, x)
    assert not bool(mask.any())


def test_p_one_every_image_gets_an_honest_defect():
    x = _batch(12)
    out, mask = AnomalySynthesizer(p_anomaly=1.0, seed=1)(x)
    for i in range(x.shape[0]):
        _check_defect(x[i], out[i], mask[i])


def test_p_half_mixes():
    x = _batch(16)
    out, mask = AnomalySynthesizer(p_anomaly=0.5, seed=2)(x)
    hit = mask.flatten(1).any(1)
    assert 0 < int(hit.sum()) < 16
    assert torch.equal(out[~hit], x[~hit])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["smooth", "textured"])
def test_each_kind_alone(kind, which):
    img = _smooth() if which == "smooth" else _textured()
    fn = getattr(A, kind)
    for seed in range(4):
        out, mask = fn(img, _gen(seed))
        _check_defect(img, out, mask)
    # the synthesizer restricted to this kind does the same
    x = torch.stack([img, _textured()])
    out, mask = AnomalySynthesizer(kinds=(kind,), p_anomaly=1.0, seed=0)(x)
    for i in range(2):
        _check_defect(x[i], out[i], mask[i])


def test_kind_functions_on_a_batch_and_explicit_area():
    x = _batch(3)
    out, mask = A.perlin_texture(x, _gen(0), area=0.05)  # texture from the batch's other images
    assert out.shape == x.shape and mask.shape == (3, 1, H, W)
    for i in range(3):
        _check_defect(x[i], out[i], mask[i])
        assert abs(float(mask[i].mean()) - 0.05) < 0.02
    out, mask = A.perlin_texture(_smooth(), _gen(0), source=_textured())
    _check_defect(_smooth(), out, mask)


def test_mask_mode_alpha_is_within_footprint():
    x = _batch(6)
    _, fp = AnomalySynthesizer(p_anomaly=1.0, seed=5)(x)
    _, al = AnomalySynthesizer(p_anomaly=1.0, seed=5, mask_mode="alpha")(x)
    assert bool((al <= fp + 1e-6).all())
    assert torch.equal(al > 0, fp > 0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        AnomalySynthesizer(kinds=("nope",))
    with pytest.raises(ValueError):
        AnomalySynthesizer(min_area=0.2, max_area=0.1)
    with pytest.raises(ValueError):
        AnomalySynthesizer()(torch.rand(3, H, W))
    with pytest.raises(ValueError):
        A.blob(torch.rand(3, H, W), mask_mode="soft")


def test_perlin_noise_range_and_smoothness():
    n = perlin_noise((H, W), 6, _gen(0))
    assert n.shape == (H, W)
    assert float(n.min()) >= -1 and float(n.max()) <= 1
    assert 0.1 < float(n.std()) < 0.7 and abs(float(n.mean())) < 0.3
    for a, b in ((n[:, 1:], n[:, :-1]), (n[1:, :], n[:-1, :])):
        corr = torch.corrcoef(torch.stack([a.reshape(-1), b.reshape(-1)]))[0, 1]
        assert float(corr) > 0.95
    # octaves add detail but stay smooth; same generator state -> same noise
    m = perlin_noise((H, 2 * W), (4, 8), _gen(1), octaves=3)
    assert m.shape == (H, 2 * W) and float(m.abs().max()) <= 1
    assert torch.equal(perlin_noise((H, W), 6, _gen(0)), n)


def test_perlin_mask_area():
    m = perlin_mask((H, W), _gen(0), area=0.05)
    assert m.shape == (H, W) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert abs(float(m.mean()) - 0.05) < 0.01


def test_thread_count_is_restored():
    torch.set_num_threads(2)
    try:
        AnomalySynthesizer(p_anomaly=1.0, seed=0)(_batch(2))
        A.scratch(_smooth(), _gen(0))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
