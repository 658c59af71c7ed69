"""The real-data benchmark's builder: defects change the image only inside their exact mask, in the
stated area range; draws are deterministic; dev and validation share no category or source texture."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BUILDER = Path(__file__).resolve().parents[1] / "benchmarks" / "real_data.py"
spec = importlib.util.spec_from_file_location("real_data", BUILDER)
real_data = importlib.util.module_from_spec(spec)
sys.modules["real_data"] = real_data
spec.loader.exec_module(real_data)

needs_sources = pytest.mark.skipif(bool(real_data.sources_missing("validation")),
                                   reason="needs Debian ufoai-textures and nexuiz-textures: "
                                          + "; ".join(real_data.sources_missing("validation")))


def test_sets_are_disjoint():
    dev, val = set(real_data.SETS["dev"]), set(real_data.SETS["validation"])
    assert not dev & val
    sources = lambda names: {real_data.PHOTOS[n].member for n in names if n in real_data.PHOTOS}  # noqa: E731
    assert not sources(dev) & sources(val)
    assert "openarena" not in " ".join(real_data.PK3.values())  # reserved for held-out measurement


@needs_sources
@pytest.mark.parametrize("kind", ["smear", "scratch", "pit", "warp"])
def test_defect_only_inside_its_mask_and_deterministic(kind):
    cat = real_data.PHOTOS["rust-metal"] if kind in real_data.PHOTOS["rust-metal"].kinds else real_data.PHOTOS["marble"]
    s = real_data.photo_sample(cat, "test", 0, seed=0, kind=kind)
    again = real_data.photo_sample(cat, "test", 0, seed=0, kind=kind)
    assert np.array_equal(s["image"], again["image"])
    mask = s["mask"]
    lo, hi = real_data.area_range(cat, kind)
    assert lo <= mask.mean() <= hi
    diff = np.abs(s["image"] - s["clean"]).max(-1)
    assert diff[~mask].max() == 0 and (diff[mask] > 1.5 / 255).mean() > 0.2
    good = real_data.photo_sample(cat, "test", 0, seed=0)
    assert good["mask"] is None and good["image"].shape != (0, 0)
