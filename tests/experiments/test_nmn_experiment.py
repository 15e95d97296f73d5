import json
import math

from modnets.experiments import get_experiment
from modnets.train import FitConfig, NMNModulewiseConfig


def test_nmn_experiment_smoke(tmp_path):
    exp = get_experiment("nmn")
    tiny = FitConfig(epochs=1, batch_size=32, lr=3e-3)
    config = exp.Config(
        quick=True, image_size=32, n_train=96, n_valid=32, max_test_depth=7, n_test_per_depth=6, hidden=32,
        question_hidden=8, fit=tiny,
        modulewise=NMNModulewiseConfig(find=tiny, heads=tiny, prior=tiny, search_trials=1, search_examples=32,
                                       sgm_rank=2),
        film_width=8, film_blocks=1, sgm_candidates=3, sgm_examples=48, sgm_max_epochs=1,
        easy_vqa_train=600, easy_vqa_test=200, easy_vqa_fit=FitConfig(epochs=2, batch_size=32, lr=3e-3),
    )
    report = exp.run(config, tmp_path, progress=False)
    text = report.write(tmp_path).read_text()
    for heading in ("Table 4.2 analogue", "Fig. 4.7 analogue", "error by program depth", "easy-vqa", "54.87 %"):
        assert heading in text
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    regimes = {"end_to_end", "modular", "modular_typed"}
    assert set(metrics["accuracy"]) == regimes
    for regime in regimes:
        cost = metrics["train_seconds"][regime]
        assert 0 < cost["parallel"] <= cost["sequential"]
    assert -1 <= metrics["sgm_pearson_r"] <= 1 or math.isnan(metrics["sgm_pearson_r"])
    assert len(metrics["sgm_candidates"]) == 3
    assert set(metrics["error_by_depth"]) == {"typed", "untyped", "film", "modular", "modular_typed"}
    assert set(metrics["error_by_depth"]["film"]) == {str(d) for d in range(2, 8)}
    assert set(metrics["easy_vqa_accuracy"]) == {"end_to_end", "modular_typed"}
    # two epochs on 600 real easy-vqa questions: the NMN trained end to end beats the majority answer (measured
    # 0.58-0.65 against 0.37 over three seeds; the module-wise typed one was at 0.34-0.52, so it is not asserted)
    easy = metrics["easy_vqa"]
    assert easy["accuracy"]["end_to_end"] > easy["majority_accuracy"] + 0.1, easy
    assert (tmp_path / "error_by_depth.png").stat().st_size > 1000
    assert (tmp_path / "sgm_correlation.png").stat().st_size > 1000
    assert (tmp_path / "checkpoints" / "modular_typed" / "find").is_dir()
    assert (tmp_path / "modular_typed" / "cache" / "find").is_dir()
    assert (tmp_path / "checkpoints" / "film").is_dir()
    assert (tmp_path / "tensorboard" / "end_to_end" / "scalars.jsonl").read_text().strip()
