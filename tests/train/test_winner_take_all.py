import itertools

import pytest
import torch

from modnets.errors import ConfigError, ShapeError
from modnets.models import imn
from modnets.train import RunDir, WinnerTakeAll, WinnerTakeAllConfig, hessian_penalty, subset_plan, subset_products


def test_subset_products_equal_the_explicit_ordered_products():
    m, k = 4, 3
    t = torch.randn(2, m, k, k, dtype=torch.float64)
    plan = subset_plan(m)
    assert len(plan.members) == 2**m - 1
    assert set(plan.members) == {s for size in range(1, m + 1) for s in itertools.combinations(range(m), size)}
    out = subset_products(t, plan)
    assert out.shape == (2, 2**m - 1, k, k)
    for s, members in enumerate(plan.members):
        explicit = t[:, members[0]]
        for i in members[1:]:
            explicit = explicit @ t[:, i]
        assert torch.allclose(out[:, s], explicit), members
        assert plan.mask[s].nonzero().flatten().tolist() == list(members)


def _setup(m=3, n=2, batch=6):
    torch.manual_seed(1)
    net = imn(image_size=16, m=m, n=n, latent_dim=2, matrix_size=4, hidden=24, channels=4,
              id_classifier=True).double()
    x = torch.rand(batch, 3, 16, 16, dtype=torch.float64)
    noise = torch.randn(batch, m, 2, dtype=torch.float64)
    directions = (torch.randint(0, 2, (2, batch, m, 2)) * 2 - 1).double()
    return net, x, noise, directions, torch.randint(0, 4, (batch,))


def _loss_and_grad(net, scorer, score_independence, x, noise, directions, shape, **settings):
    objective = WinnerTakeAll(net, config=WinnerTakeAllConfig(scorer=scorer, score_independence=score_independence,
                                                              independence=1e-2, **settings))
    net.zero_grad()
    terms = objective.terms(x, noise=noise, directions=directions, shape=shape)
    terms["loss"].backward()
    return terms["loss"].detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("score_independence", [True, False])
@pytest.mark.parametrize("scorer", ["exact", "fast"])
def test_winner_recompute_has_the_value_and_gradient_of_the_min_over_all_candidates(scorer, score_independence):
    net, x, noise, directions, shape = _setup()
    naive_loss, naive_grad = _loss_and_grad(net, "naive", score_independence, x, noise, directions, shape)
    loss, grad = _loss_and_grad(net, scorer, score_independence, x, noise, directions, shape)
    assert torch.allclose(loss, naive_loss)
    assert naive_grad.keys() == grad.keys() and len(grad) > 10
    for name in grad:
        assert torch.allclose(grad[name], naive_grad[name], atol=1e-10), name


@pytest.mark.parametrize("scorer", ["exact", "fast"])
def test_scoring_the_id_classifier_keeps_the_winner_recompute_equal_to_the_naive_min(scorer):
    net, x, noise, directions, shape = _setup()
    naive_loss, naive_grad = _loss_and_grad(net, "naive", True, x, noise, directions, shape, score_id=True,
                                            id_weight=30.0)
    loss, grad = _loss_and_grad(net, scorer, True, x, noise, directions, shape, score_id=True, id_weight=30.0)
    assert torch.allclose(loss, naive_loss)
    for name in grad:
        assert torch.allclose(grad[name], naive_grad[name], atol=1e-10), name


def test_scoring_the_id_classifier_with_a_large_weight_picks_the_identity_read_as_the_label():
    net, x, noise, directions, _ = _setup(m=2, n=3, batch=12)
    objective = WinnerTakeAll(net, config=WinnerTakeAllConfig(score_id=True, id_weight=1e6, id_feature_weight=0))
    _, logits = net.id_classifier(net.identities())  # (n, 4)
    for label in range(4):
        shape = torch.full((12,), label)
        prep = objective._prepare(x, noise, directions)
        winner = objective._choose(x, prep, objective._candidate_bias(prep, shape))
        assert set((winner % 3).tolist()) == {int(logits[:, label].argmax())}


def test_shared_identity_warmup_uses_identity_0_then_restarts_every_identity_from_it():
    net, x, _, _, shape = _setup(m=2, n=3, batch=8)
    objective = WinnerTakeAll(net, config=WinnerTakeAllConfig(warmup_steps=2, warmup_spread=0.1))
    for _ in range(2):
        terms = objective.loss({"x": x, "shape": shape})
        assert terms["usage_0"] == 1
    before = net.identities.algebra[0].detach().clone()
    objective.loss({"x": x, "shape": shape})
    after = net.identities.algebra.detach()
    assert int(objective.steps) == 3
    assert torch.allclose(after[0], before, atol=0.2) and not torch.equal(after[1], after[2])
    assert (after - before).abs().max() < 1.0  # every identity near identity 0
    state = objective.state_dict()
    assert int(state["steps"]) == 3
    with torch.no_grad():  # a validation loss is not a training step
        objective.loss({"x": x, "shape": shape})
    assert int(objective.steps) == 3


def test_a_checkpoint_older_than_the_step_counter_loads_strictly():
    net, x, _, _, shape = _setup(m=2, n=2, batch=4)
    objective = WinnerTakeAll(net)
    objective.loss({"x": x, "shape": shape})
    old = {k: v for k, v in objective.state_dict().items() if k != "steps"}
    fresh = WinnerTakeAll(_setup(m=2, n=2, batch=4)[0])
    fresh.load_state_dict(old)  # strict
    assert int(fresh.steps) == 0 and all(torch.equal(v, fresh.state_dict()[k]) for k, v in old.items())


def test_kl_weight_is_annealed_linearly_over_its_warmup():
    net, x, _, _, shape = _setup(m=2, n=2, batch=4)
    objective = WinnerTakeAll(net, config=WinnerTakeAllConfig(beta=2.0, beta_warmup_steps=4))
    betas = [float(objective.loss({"x": x, "shape": shape})["beta"]) for _ in range(6)]
    assert betas == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_deconv_decoder_is_scored_exactly_as_the_naive_min():
    torch.manual_seed(0)
    net = imn(image_size=16, m=2, n=2, latent_dim=2, matrix_size=4, hidden=24, channels=4, decoder="deconv").double()
    assert net.decoder(net.identities()).shape == (2, 3, 16, 16)
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    noise = torch.randn(4, 2, 2, dtype=torch.float64)
    directions = (torch.randint(0, 2, (2, 4, 2, 2)) * 2 - 1).double()
    naive_loss, naive_grad = _loss_and_grad(net, "naive", True, x, noise, directions, None)
    loss, grad = _loss_and_grad(net, "exact", True, x, noise, directions, None)
    assert torch.allclose(loss, naive_loss)
    for name in grad:
        assert torch.allclose(grad[name], naive_grad[name], atol=1e-10), name
    with pytest.raises(ConfigError, match="scorer='fast' needs a decoder"):
        WinnerTakeAll(net, config=WinnerTakeAllConfig(scorer="fast"))


def test_fast_scorer_equals_the_exact_decoded_losses_and_picks_the_same_winners():
    net, x, noise, directions, _ = _setup(m=3, n=3, batch=8)
    exact = WinnerTakeAll(net, config=WinnerTakeAllConfig(scorer="exact", independence=1e-2))
    fast = WinnerTakeAll(net, config=WinnerTakeAllConfig(scorer="fast", independence=1e-2))
    naive = WinnerTakeAll(net, config=WinnerTakeAllConfig(scorer="naive", independence=1e-2))
    reference = naive.candidate_losses(x, noise=noise, directions=directions)
    assert reference.shape == (8, 7 * 3)
    for objective in (exact, fast):
        assert torch.allclose(objective.candidate_losses(x, noise=noise, directions=directions), reference)
        assert torch.equal(objective.choose(x, noise=noise, directions=directions), reference.argmin(1))


def test_hessian_penalty_is_zero_for_an_additive_decoder_and_positive_otherwise():
    z = torch.randn(5, 4, dtype=torch.float64)
    directions = (torch.randint(0, 2, (3, 5, 4)) * 2 - 1).double()
    w = torch.randn(4, 10, dtype=torch.float64)

    def additive(z):  # sum_i f_i(z_i): no mixed second derivatives
        return torch.sin(z) @ w + (z**3) @ w.flip(1)

    def mixing(z):
        return torch.sin(z @ w)

    assert hessian_penalty(additive, z, directions=directions, eps=0.1).abs().max() < 1e-9
    assert (hessian_penalty(mixing, z, directions=directions, eps=0.1) > 1e-3).all()
    with pytest.raises(ShapeError, match="directions must be"):
        hessian_penalty(mixing, z, directions=directions[:1], eps=0.1)


def test_training_with_fit_lowers_the_loss_and_logs_usage():
    from modnets.data import Shapes3DConfig, collate_shapes3d, make_shapes3d
    from modnets.train import FitConfig, fit

    data = make_shapes3d(Shapes3DConfig(n_examples=32, image_size=8, seed=0))
    torch.manual_seed(0)
    net = imn(image_size=8, m=2, n=2, latent_dim=2, matrix_size=4, hidden=32, channels=4)
    result = fit(WinnerTakeAll(net), data, config=FitConfig(epochs=8, batch_size=16, lr=3e-3, log_every=2),
                 collate=collate_shapes3d, run=RunDir(progress=False))
    first, last = result.history[0], result.history[-1]
    assert last["loss_img"] < 0.7 * first["loss_img"]
    assert abs(sum(last[f"usage_{j}"] for j in range(2)) - 1) < 1e-6


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="scorer must be one of"):
        WinnerTakeAllConfig(scorer="greedy")
    with pytest.raises(ConfigError, match="probes must be an int >= 2, got 1"):
        WinnerTakeAllConfig(probes=1)
    with pytest.raises(ConfigError, match="warmup_steps must be an int >= 0"):
        WinnerTakeAllConfig(warmup_steps=-1)
    with pytest.raises(ConfigError, match="has no ID classifier"):
        WinnerTakeAll(imn(image_size=16, m=2, n=2, hidden=8, channels=4), config=WinnerTakeAllConfig(score_id=True))
    with pytest.raises(ConfigError, match="decoder must be one of"):
        imn(image_size=16, decoder="unet")
    net = imn(image_size=16, m=2, n=2, hidden=8, channels=4)
    nn = torch.nn
    net.decoder = nn.Sequential(nn.Flatten(-2), nn.Linear(64, 768), nn.Unflatten(-1, (3, 16, 16)))
    with pytest.raises(ConfigError, match="scorer='fast' needs a decoder"):
        WinnerTakeAll(net, config=WinnerTakeAllConfig(scorer="fast"))
