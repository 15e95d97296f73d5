"""The top-K buffer's options: what the E-step scores by, fixed scores (priority-queue training), and the
reward-weighted buffer gradient. Each option changes what it should and nothing else."""

import copy

import pytest
import torch
from torch import nn

from modnets.errors import ConfigError
from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
from modnets.train import TopKBuffer, TopKBufferConfig, categorical_log_likelihood


def make_net(seed=0, m=3, static=False):
    torch.manual_seed(seed)
    return ModularStack(layers=[ModularLayer(modules=MLPExperts(n_modules=m, d_in=6, d_hidden=8, d_out=6),
                                             router=Router(n_modules=m, d_in=None if static else 6, static=static))],
                        head=nn.Linear(6, 3))


def batch(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 6, generator=g), "y": torch.randint(0, 3, (n,), generator=g), "index": torch.arange(n)}


def entry_terms(net, b, choice):
    """log p(y|x,a) and log p(a|x) of buffer entries choice (B, K, L, k): each (B, K)."""
    k = choice.shape[1]
    out = net(b["x"].repeat(k, 1), choice.transpose(0, 1).reshape(-1, *choice.shape[2:]))
    ll = categorical_log_likelihood(out.output, b["y"].repeat(k)).view(k, -1).t()
    return ll, out.route.log_prob.view(k, -1).t()


def sgd(net, lr=0.5):
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is not None:
                p -= lr * p.grad
    net.zero_grad()


def test_score_weighted_buffer_gradient_weights_each_entry_by_its_normalised_score():
    b = batch()
    settings = dict(buffer_size=3, samples=6, sample_gradient=False, e_step_every=1000)
    uniform = TopKBuffer(make_net(), dataset_size=12, config=TopKBufferConfig(**settings))
    weighted = TopKBuffer(make_net(), dataset_size=12, config=TopKBufferConfig(**settings, buffer_weights="score"))
    for objective in (uniform, weighted):  # the first visit fills the buffers alike
        torch.manual_seed(0)
        objective.loss(b)
    assert torch.equal(uniform.buffer.choice, weighted.buffer.choice)
    for objective in (uniform, weighted):
        objective.model.zero_grad()
    torch.manual_seed(1)
    tu = uniform.loss(b)  # no E-step is due: an M-step on the stored entries
    torch.manual_seed(1)
    tw = weighted.loss(b)
    assert float(tw["e_step"]) == 0.0
    torch.testing.assert_close(tw["loss_task"], tu["loss_task"])  # the modules still fit every entry alike
    assert not torch.allclose(tw["loss_router"], tu["loss_router"])
    # reference: -(1/B) sum_n sum_a w_a log p(a|x), w = softmax of the stored scores over the valid entries
    net = make_net()
    choice, valid, score = (t[:12] for t in (weighted.buffer.choice, weighted.buffer.valid, weighted.buffer.score))
    ll, lp = entry_terms(net, b, choice)
    w = torch.softmax(score.masked_fill(~valid, float("-inf")), dim=1)
    n_valid = valid.sum(1, keepdim=True).float()
    loss_router = -(w * lp).nan_to_num(0).sum() / 12
    loss_task = -((ll * valid) / n_valid).sum() / 12
    torch.testing.assert_close(tw["loss_router"], loss_router)
    (loss_router + loss_task).backward()
    tw["loss"].backward()
    for (name, p), q in zip(weighted.model.named_parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)
    # uniform weights are maximum likelihood on every entry
    torch.testing.assert_close(tu["loss_router"], -((lp * valid) / n_valid).sum() / 12)


def test_fixed_scores_never_fall_and_rescoring_tracks_the_parameters():
    b = batch()
    settings = dict(buffer_size=2, samples=2, sample_gradient=False)
    fixed = TopKBuffer(make_net(), dataset_size=12, config=TopKBufferConfig(**settings, rescore=False))
    moving = TopKBuffer(make_net(), dataset_size=12, config=TopKBufferConfig(**settings))
    fell = stale = False
    for step in range(6):
        before = fixed.buffer.score[:12].clone(), fixed.buffer.choice[:12].clone(), fixed.buffer.valid[:12].clone()
        moving_before = moving.buffer.score[:12, 0].clone()
        for objective in (fixed, moving):
            torch.manual_seed(step)
            objective.loss(b)["loss"].backward()
        with torch.no_grad():  # the scores the entries have under the parameters of this E-step
            current = {id(o): sum(entry_terms(o.model, b, o.buffer.choice[:12])) for o in (fixed, moving)}
        valid = moving.buffer.valid[:12]
        torch.testing.assert_close(moving.buffer.score[:12][valid], current[id(moving)][valid])  # rescored
        fell |= bool((moving.buffer.score[:12, 0] < moving_before).any())
        score, choice, valid = fixed.buffer.score[:12], fixed.buffer.choice[:12], fixed.buffer.valid[:12]
        stale |= not torch.allclose(score[valid], current[id(fixed)][valid])
        if step:
            assert bool((score[:, 0] >= before[0][:, 0]).all())  # the best score never falls
            for n in range(12):  # an entry that stays keeps its score exactly
                for j in range(2):
                    if before[2][n, j]:
                        same = (choice[n][valid[n]] == before[1][n, j]).flatten(1).all(1)
                        if bool(same.any()):
                            assert float(score[n][valid[n]][same][0]) == float(before[0][n, j])
        for objective in (fixed, moving):
            sgd(objective.model, lr=2.0)  # large steps: the scores of old entries change
    assert fell  # rescored at every E-step, a buffer's best score can fall
    assert stale  # fixed scores are the ones the entries entered with, not the current ones


@pytest.mark.parametrize("score", ["joint", "router", "likelihood"])
def test_the_e_step_ranks_and_stores_by_the_configured_score(score):
    b = batch()
    objective = TopKBuffer(make_net(), dataset_size=12,
                           config=TopKBufferConfig(buffer_size=2, samples=4, sample_gradient=False, score=score))
    torch.manual_seed(0)
    objective.loss(b)
    with torch.no_grad():
        ll, lp = entry_terms(objective.model, b, objective.buffer.choice[:12])
    expected = {"joint": ll + lp, "router": lp, "likelihood": ll}[score]
    valid = objective.buffer.valid[:12]
    torch.testing.assert_close(objective.buffer.score[:12][valid], expected[valid], rtol=1e-5, atol=1e-5)


def test_scoring_by_the_router_alone_keeps_the_most_probable_routings_whatever_y():
    net = make_net(static=True)
    with torch.no_grad():
        net.layers[0].router.logits.copy_(torch.tensor([2.0, 1.0, -3.0]))  # p = (0.73, 0.27, 0.005)
    config = TopKBufferConfig(buffer_size=2, samples=16, sample_gradient=False, score="router")
    objective = TopKBuffer(net, dataset_size=12, config=config)
    for step in range(3):
        torch.manual_seed(step)
        objective.loss(batch(seed=step))  # new labels every step: the buffer does not care
    assert bool(objective.buffer.valid[:12].all())
    assert objective.buffer.choice[:12, :, 0, 0].tolist() == [[0, 1]] * 12


def test_a_buffer_never_keeps_an_empty_slot_or_a_repeat():
    from modnets.train._buffer import best_distinct

    choice = torch.tensor([[1, 1, 0, 2]]).view(1, 4, 1, 1)  # a routing, its repeat, an empty slot, another
    index, score, valid = best_distinct(choice, torch.tensor([[-1.0, -0.5, float("-inf"), float("nan")]]), 3)
    assert index.tolist() == [[1, 0, 2]] and valid.tolist() == [[True, False, False]]
    assert score[0, 0] == -0.5 and bool((score[0, 1:] == float("-inf")).all())


def test_priority_queue_training_configuration_trains():
    config = TopKBufferConfig(buffer_size=3, samples=3, score="likelihood", rescore=False, buffer_weights="score")
    objective = TopKBuffer(make_net(), dataset_size=12, config=config)
    terms = objective.loss(batch())
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and terms.keys() >= {"router_gap", "nll_trained", "nll_router"}


@pytest.mark.parametrize(("field", "value"), [("score", "posterior"), ("buffer_weights", "reward"),
                                              ("init", "zeros"), ("rescore", 0)])
def test_bad_buffer_options_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=f"TopKBufferConfig.{field}"):
        TopKBufferConfig(**{field: value})


def test_the_options_round_trip_through_json():
    config = TopKBufferConfig(score="router", rescore=False, buffer_weights="score", init="random", gap_warning=None)
    assert TopKBufferConfig.from_dict(copy.deepcopy(config.to_dict())) == config
