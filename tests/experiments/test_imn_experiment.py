import json

import pytest

from modnets.errors import ConfigError
from modnets.experiments import get_experiment
from modnets.train import FitConfig


def test_tiny_run_writes_table1_for_both_variants(tmp_path):
    imn = get_experiment("imn")
    config = imn.Config(quick=True, image_size=16, n_train=48, n_test=40, m=2, n=3, latent_dim=2, matrix_size=4,
                        hidden=16, channels=4, fit=FitConfig(epochs=1, batch_size=24))
    report = imn.run(config, tmp_path, progress=False)
    report.write(tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for variant in ("without_id_classifier", "with_id_classifier"):
        table = metrics["table1"][variant]
        assert len(table) == 4 and all(len(row) == 3 for row in table)
        assert all(abs(sum(row) - 100) < 0.1 or sum(row) == 0 for row in table)
        assert set(metrics["dominant_fraction"][variant]) == {"cube", "cylinder", "sphere", "capsule"}
        assert 1 <= metrics["distinct_dominant_identities"][variant] <= 3
    for figure in report.figures:
        assert (tmp_path / figure).stat().st_size > 0
    assert "93.6" in report.headline  # the paper's numbers sit next to ours


def test_config_refuses_bad_sizes():
    imn = get_experiment("imn")
    with pytest.raises(ConfigError, match="image_size must be a power of two >= 8, got 48"):
        imn.Config(image_size=48)
    assert imn.Config.for_mode(True).image_size == 32


def _write_3dshapes(path, n=120):
    """A file in the layout of DeepMind's 3dshapes.h5: uint8 images and the six factor values."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    labels = np.column_stack([rng.integers(0, 10, (n, 3)) / 10, 0.75 + rng.integers(0, 8, n) * (0.5 / 7),
                              rng.integers(0, 4, n).astype(float), -30 + rng.integers(0, 15, n) * (60 / 14)])
    with h5py.File(path, "w") as f:
        f["images"] = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
        f["labels"] = labels


def test_a_run_on_the_real_3dshapes_file_format(tmp_path):
    imn = get_experiment("imn")
    _write_3dshapes(tmp_path / "3dshapes.h5")
    # of the 110 rows drawn about half are cubes or spheres: 40 train, the rest (about 15) test
    config = imn.Config(quick=True, image_size=16, n_train=40, n_test=70, m=2, n=3, latent_dim=2, matrix_size=4,
                        hidden=16, channels=4, fit=FitConfig(epochs=1, batch_size=20),
                        data=f"3dshapes:{tmp_path / '3dshapes.h5'}", factor_values={"shape": (0, 2)})
    report = imn.run(config, tmp_path / "run", progress=False)
    report.write(tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["shapes"] == ["cube", "sphere"] and metrics["config"]["data"].startswith("3dshapes:")
    assert "real 3dshapes set" in report.summary
    with pytest.raises(ConfigError, match="'3dshapes:PATH'"):
        imn.Config(data="clevr:/somewhere")
