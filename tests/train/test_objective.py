"""The Objective contract: every training algorithm meets it, fit checks it, and no objective creates a tensor on
a device other than its inputs'."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from modnets.errors import ConfigError, NumericalError
from modnets.models import imn, modular_mlp, nmn
from modnets.modules import MaskReadout, SurrogateGradientModule
from modnets.train import (
    Classification,
    EndToEnd,
    ExactMarginal,
    FitConfig,
    Objective,
    Reinforce,
    ReinforceConfig,
    RunDir,
    SurrogateObjective,
    TopKBuffer,
    TopKBufferConfig,
    WinnerTakeAll,
    WinnerTakeAllConfig,
    check_batch,
    fit,
    generalized_em,
    predict,
)


def _routed(n_tasks=None, mode="sample"):
    torch.manual_seed(0)
    return modular_mlp(d_in=6, d_model=8, n_modules=4, n_out=3, n_tasks=n_tasks, mode=mode)


def _batch(n=8, **extra):
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(n, 6, generator=g), "y": torch.randint(0, 3, (n,), generator=g),
            "index": torch.arange(n), **extra}


def _imn_batch(n=4, size=8):
    return {"x": torch.rand(n, 3, size, size), "shape": torch.randint(0, 4, (n,))}


def _clevr():
    from modnets.data import ClevrLikeConfig, collate_clevr_like, make_clevr_like

    data = make_clevr_like(ClevrLikeConfig(n_examples=8, depths=(2, 3), image_size=16, seed=0))
    return data, collate_clevr_like([data[i] for i in range(len(data))])


def _objectives():
    """(name, a fresh objective, one batch it reads) for every training algorithm of the library."""
    clevr, clevr_batch = _clevr()
    model = nmn(True, image_size=16, channels=(8, 8), hidden=8)

    def readout_inputs(unit, batch):
        x = batch["x"]
        return {"mask": unit(x).sigmoid().view(-1, 2, 4), "features": x.new_ones(x.shape[0], 4, 2, 4),
                "route": (torch.arange(x.shape[0], device=x.device) % 2)}

    sgm = SurrogateGradientModule(readout=MaskReadout(4, (2, 4)), d_out=3, rank=2)
    return [
        ("reinforce", Reinforce(_routed(), ReinforceConfig(samples=2)), _batch()),
        ("reinforce-learned-baseline", Reinforce(_routed(), ReinforceConfig(baseline="learned")), _batch()),
        ("topk", TopKBuffer(_routed(), dataset_size=8, config=TopKBufferConfig(buffer_size=2, samples=2)), _batch()),
        ("em", generalized_em(_routed(), dataset_size=8), _batch()),
        ("exact-marginal", ExactMarginal(_routed()), _batch()),
        ("soft", EndToEnd(_routed(mode="soft")), _batch()),
        ("gumbel", EndToEnd(_routed(mode="gumbel")), _batch()),
        ("per-task", EndToEnd(_routed(n_tasks=2, mode="soft")), _batch(task=torch.tensor([0, 1] * 4))),
        ("wta-fast", WinnerTakeAll(imn(image_size=8, m=2, n=2, latent_dim=2, matrix_size=4, hidden=16, channels=4,
                                       id_classifier=True, n_classes=4)), _imn_batch()),
        ("wta-exact", WinnerTakeAll(imn(image_size=8, m=2, n=2, latent_dim=2, matrix_size=4, hidden=16, channels=4),
                                    config=WinnerTakeAllConfig(scorer="exact")), _imn_batch()),
        ("surrogate", SurrogateObjective(module=nn.Linear(6, 8), sgm=sgm, inputs=readout_inputs, target="y",
                                         batch_keys={"x": "(B, 6) inputs"}), _batch()),
        ("classification", Classification(nn.Linear(6, 3)), _batch()),
        ("nmn", Classification(model, target="answer"), clevr_batch),
    ]


OBJECTIVES = _objectives()


@pytest.mark.parametrize(("name", "objective", "batch"), OBJECTIVES, ids=[o[0] for o in OBJECTIVES])
def test_every_algorithm_is_an_objective_whose_loss_trains_and_whose_batch_keys_are_read(name, objective, batch):
    assert isinstance(objective, nn.Module) and isinstance(objective, Objective)
    check_batch(objective, batch)
    terms = objective.loss(batch)
    assert terms["loss"].dim() == 0 and terms["loss"].requires_grad
    terms["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in objective.parameters())
    assert objective.predict(batch).shape[0] == len(next(iter(batch.values())))
    for key in objective.batch_keys:  # every declared key is really needed
        with pytest.raises((ConfigError, KeyError)):
            objective.loss({k: v for k, v in batch.items() if k != key})


@pytest.mark.parametrize(("name", "objective", "batch"), OBJECTIVES, ids=[o[0] for o in OBJECTIVES])
def test_no_objective_creates_a_tensor_on_the_default_device(name, objective, batch):
    """Run with the default device set to 'meta': a tensor created without device= lands there and the first op
    that mixes it with the (CPU) inputs fails, as it would with CUDA inputs and a CPU-created tensor."""
    with torch.device("meta"):
        terms = objective.loss(batch)
        terms["loss"].backward()
        prediction = objective.predict(batch)
    assert all(v.device.type == "cpu" for v in terms.values())
    assert prediction.device.type == "cpu"


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_fit_runs_every_objective_with_the_device_given_explicitly(device):
    for name, objective, batch in _objectives():
        n = len(next(iter(batch.values())))
        rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
        collate = _clevr_collate if name == "nmn" else default_collate
        result = fit(objective, rows, config=FitConfig(epochs=2, batch_size=n, device=device, log_every=1),
                     collate=collate, run=RunDir(progress=False))
        assert result.steps == 2, name
        assert all(p.device.type == device for p in objective.parameters()), name
        assert predict(objective, rows, collate=collate).device.type == "cpu"
    with pytest.raises(ConfigError, match="not available on this machine"):  # the keyword wins over the config
        fit(Classification(nn.Linear(6, 3)), [_batch()], config=FitConfig(device="cpu"), collate=lambda b: b[0],
            run=RunDir(progress=False), device="cuda:7")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_trains_and_a_gpu_checkpoint_resumes_on_the_cpu(tmp_path):
    rows = [{**{k: v[i] for k, v in _batch(32).items()}} for i in range(32)]
    objective = EndToEnd(_routed(mode="soft"))
    config = FitConfig(epochs=2, batch_size=8, device="cuda", precision="bf16", checkpoint_every=4)
    first = fit(objective, rows, config=config, collate=default_collate, run=RunDir(tmp_path, progress=False))
    assert first.history[-1]["loss"] < first.history[0]["loss"] + 1.0
    resumed = EndToEnd(_routed(mode="soft"))
    again = fit(resumed, rows, config=FitConfig(epochs=3, batch_size=8, device="cpu"), collate=default_collate,
                run=RunDir(tmp_path, resume=True, progress=False))
    assert again.resumed_from == 8 and again.steps == 12


def _clevr_collate(rows):
    from modnets.compose import Program  # noqa: F401  (the rows hold programs, collated as lists)

    return {k: (torch.stack([r[k] for r in rows]) if isinstance(rows[0][k], torch.Tensor) else [r[k] for r in rows])
            for k in rows[0]}


def test_a_bare_model_is_refused_with_the_objective_to_wrap_it_in():
    with pytest.raises(ConfigError, match=r"fit\(Classification\(model\)"):
        fit(nn.Linear(6, 3), [_batch()], config=FitConfig(), collate=lambda b: b[0], run=RunDir(progress=False))
    with pytest.raises(ConfigError, match="WinnerTakeAll"):
        fit(imn(image_size=8, m=2, n=2, latent_dim=2, matrix_size=4, hidden=16, channels=4), [_imn_batch()],
            config=FitConfig(), collate=lambda b: b[0], run=RunDir(progress=False))


def test_the_first_batch_is_checked_against_the_objective_keys():
    objective = generalized_em(_routed(), dataset_size=8)
    batch = _batch()
    del batch["index"]
    with pytest.raises(ConfigError, match=r"no 'index' \(\(B,\) long example ids"):
        fit(objective, [batch], config=FitConfig(), collate=lambda b: b[0], run=RunDir(progress=False))


def test_a_nan_input_is_skipped_under_on_nonfinite_skip():
    objective = EndToEnd(_routed(mode="soft"))
    good, bad = _batch(), _batch(x=torch.full((8, 6), float("inf")))
    result = fit(objective, [good, bad, good], config=FitConfig(epochs=1, batch_size=1, on_nonfinite="skip",
                                                                log_every=1),
                 collate=lambda b: b[0], run=RunDir(progress=False))
    assert result.steps == 3 and result.skipped == 1
    with pytest.raises(NumericalError, match="step 2: batch\\['x'\\] holds NaN or inf") as info:
        fit(EndToEnd(_routed(mode="soft")), [good, bad], config=FitConfig(epochs=1, batch_size=1),
            collate=lambda b: b[0], run=RunDir(progress=False))
    assert info.value.quantity == "input 'x'"


def test_em_is_the_topk_buffer_with_an_em_configuration():
    config = TopKBufferConfig.em(samples=3)
    assert (config.buffer_size, config.sample_gradient, config.baseline) == (1, False, "none")
    torch.manual_seed(0)
    a = generalized_em(_routed(), dataset_size=8, config=config)
    torch.manual_seed(0)
    b = TopKBuffer(_routed(), dataset_size=8, config=config)
    torch.manual_seed(1)
    ta = a.loss(_batch())
    torch.manual_seed(1)
    tb = b.loss(_batch())
    assert torch.equal(ta["loss"], tb["loss"])
    with pytest.raises(ConfigError, match="EM configuration"):
        generalized_em(_routed(), dataset_size=8, config=TopKBufferConfig(buffer_size=2))


def test_predict_returns_cpu_results_in_dataset_order():
    objective = Classification(nn.Linear(6, 3))
    rows = [{"x": torch.randn(6), "y": i % 3} for i in range(10)]
    out = predict(objective, rows, collate=default_collate, batch_size=4)
    expected = objective.model(torch.stack([r["x"] for r in rows])).argmax(1)
    assert torch.equal(out, expected)


def test_the_time_budget_ends_fit_with_a_flag():
    objective = Classification(nn.Linear(6, 3))
    rows = [{"x": torch.randn(6), "y": i % 3} for i in range(64)]
    result = fit(objective, rows, config=FitConfig(epochs=1000, batch_size=8, max_seconds=0.05),
                 collate=default_collate, run=RunDir(progress=False))
    assert result.out_of_time and result.steps < 8000
    done = fit(objective, rows, config=FitConfig(epochs=1, batch_size=8), collate=default_collate,
               run=RunDir(progress=False))
    assert not done.out_of_time and done.steps == 8


def test_resuming_a_run_whose_time_budget_is_spent_takes_no_step(tmp_path):
    torch.manual_seed(0)
    objective = Classification(nn.Linear(6, 3))
    rows = [{"x": torch.randn(6), "y": i % 3} for i in range(64)]
    config = FitConfig(epochs=1000, batch_size=8, max_seconds=0.05)
    first = fit(objective, rows, config=config, collate=default_collate, run=RunDir(tmp_path, progress=False))
    weights = {k: v.clone() for k, v in objective.state_dict().items()}
    again = fit(objective, rows, config=config, collate=default_collate,
                run=RunDir(tmp_path, resume=True, progress=False))
    assert first.out_of_time and again.out_of_time and again.steps == first.steps
    assert all(torch.equal(weights[k], v) for k, v in objective.state_dict().items())


def test_an_objective_whose_terms_lack_loss_is_refused():
    class NoLoss(nn.Module):
        batch_keys = {"x": "(B, 6) inputs"}

        def __init__(self):
            super().__init__()
            self.net = nn.Linear(6, 1)

        def loss(self, batch):
            return {"mse": self.net(batch["x"]).pow(2).mean()}

        def predict(self, batch):
            return self.net(batch["x"])

    with pytest.raises(ConfigError, match="must include 'loss'"):
        fit(NoLoss(), [_batch()], config=FitConfig(), collate=lambda b: b[0], run=RunDir(progress=False))


@pytest.mark.parametrize("name", [o[0] for o in OBJECTIVES])
def test_bf16_autocast_trains_every_objective_on_the_cpu(name):
    objective, batch = {n: (o, b) for n, o, b in _objectives()}[name]
    n = len(next(iter(batch.values())))
    rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
    collate = _clevr_collate if name == "nmn" else default_collate
    result = fit(objective, rows, config=FitConfig(epochs=2, batch_size=n, precision="bf16", log_every=1),
                 collate=collate, run=RunDir(progress=False))
    assert result.steps == 2 and all(np.isfinite(row["loss"]) for row in result.history), name
