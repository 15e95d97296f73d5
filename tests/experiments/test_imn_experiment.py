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
