import json

import pytest

from modnets.errors import ConfigError
from modnets.experiments import get_experiment
from modnets.train import FitConfig


def test_tiny_run_writes_table1_for_both_variants_and_every_seed(tmp_path):
    imn = get_experiment("imn")
    config = imn.Config(quick=True, seeds=2, image_size=16, n_train=48, n_test=40, m=2, n=3, latent_dim=2,
                        matrix_size=4, hidden=16, channels=4, fit=FitConfig(epochs=1, batch_size=24))
    report = imn.run(config, tmp_path, progress=False)
    report.write(tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1] and [r["seed"] for r in metrics["per_seed"]] == [0, 1]
    for variant in ("without_id_classifier", "with_id_classifier"):
        tables = metrics["table1"][variant]
        assert len(tables) == 2  # one Table I per seed
        for table in tables:
            assert len(table) == 4 and all(len(row) == 3 for row in table)
            assert all(abs(sum(row) - 100) < 0.1 or sum(row) == 0 for row in table)
        dominant = metrics["dominant_fraction"][variant]
        assert set(dominant) == {"cube", "cylinder", "sphere", "capsule"}
        for shape, d in dominant.items():
            row = ["cube", "cylinder", "sphere", "capsule"].index(shape)
            assert d["values"] == pytest.approx([max(t[row]) / 100 for t in tables], abs=1e-3)
        assert all(1 <= k <= 3 for k in metrics["distinct_dominant_identities"][variant])
        assert len(metrics["shape_nmi"][variant]["values"]) == 2
        assert 0 <= metrics["split_by_shape"][variant] <= 1
    assert "generated 3D-shapes-like images" in metrics["departures"][0]
    assert "n = 3 (paper: 5)" in "; ".join(metrics["departures"])
    for figure in report.figures:
        assert (tmp_path / figure).stat().st_size > 0
    assert "93.6" in report.headline  # the paper's numbers sit next to ours
    assert "Departures from the paper" in (tmp_path / "report.md").read_text()


def test_split_by_shape_needs_shape_to_be_the_most_aligned_factor():
    imn = get_experiment("imn")
    assert imn.split_by_shape({"shape": 0.6, "scale": 0.2})
    assert not imn.split_by_shape({"shape": 0.6, "floor_hue": 0.7})
    assert not imn.split_by_shape({"shape": 0.1, "scale": 0.05})


def test_departures_name_every_setting_that_differs_from_the_paper():
    imn = get_experiment("imn")
    paper = imn.Config(image_size=64, data="3dshapes:/x.h5")
    assert imn.departures(paper) == []
    config = imn.Config.for_mode(False)
    config.objective.beta, config.objective.score_id, config.objective.score_independence = 0.1, True, False
    text = "; ".join(imn.departures(config))
    for part in ("beta = 0.1", "not in the score", "enter the score", "image_size = 32"):
        assert part in text


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


@pytest.mark.slow
def test_seeds_in_worker_processes_give_the_same_tables_as_one_after_another(tmp_path):
    imn = get_experiment("imn")
    settings = dict(quick=True, seeds=2, image_size=16, n_train=48, n_test=40, m=2, n=3, latent_dim=2, matrix_size=4,
                    hidden=16, channels=4, fit=FitConfig(epochs=1, batch_size=24))
    apart = imn.run(imn.Config(workers=2, **settings), tmp_path / "apart", progress=False).metrics
    here = imn.run(imn.Config(workers=1, **settings), tmp_path / "here", progress=False).metrics
    assert apart["table1"] == here["table1"] and apart["shape_nmi"] == here["shape_nmi"]
