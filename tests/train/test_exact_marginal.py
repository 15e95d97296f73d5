"""ExactMarginal: log sum_a p(y|x,a) p(a|x) over every joint routing equals brute-force enumeration (values and
gradients); for one routed layer it is the mixture of the modules' output distributions."""

import pytest
import torch
from torch import nn

from modnets.errors import ConfigError
from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router
from modnets.train import (
    ExactMarginal,
    ExactMarginalConfig,
    GaussianLikelihood,
    categorical_log_likelihood,
)


def stack(layers=2, m=3, k=1, picks="plackett_luce", mode="sample", seed=0, static=False):
    torch.manual_seed(seed)
    return ModularStack(
        layers=[ModularLayer(modules=MLPExperts(n_modules=m, d_in=5, d_hidden=6, d_out=5),
                             router=Router(n_modules=m, d_in=None if static else 5, k=k, picks=picks, mode=mode,
                                           static=static),
                             k=k) for _ in range(layers)],
        encoder=nn.Linear(4, 5), head=nn.Linear(5, 3), activation=nn.Tanh())


def batch(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 4, generator=g), "y": torch.randint(0, 3, (n,), generator=g)}


def brute_force_log_marginal(net, b, layer_choices):
    """log p(y|x) by a Python loop over every joint routing, one forward pass per routing."""
    n = b["x"].shape[0]
    joint = []
    for first in layer_choices[0]:
        for second in layer_choices[1]:
            route = torch.stack([first, second])[None].expand(n, -1, -1)  # (B, L, k)
            out = net(b["x"], route)
            joint.append(categorical_log_likelihood(out.output, b["y"]) + out.route.log_prob)
    return torch.logsumexp(torch.stack(joint), dim=0)  # (B,)


def all_picks(m, k, picks):
    import itertools

    rows = itertools.product(range(m), repeat=k) if picks == "independent" else itertools.permutations(range(m), k)
    return [torch.tensor(r) for r in rows]


@pytest.mark.parametrize(("k", "picks"), [(1, "plackett_luce"), (2, "plackett_luce"), (2, "independent")])
def test_loss_equals_brute_force_enumeration_in_value_and_gradient(k, picks):
    b = batch()
    fast_net, slow_net = stack(k=k, picks=picks), stack(k=k, picks=picks)
    objective = ExactMarginal(fast_net)
    r = len(all_picks(3, k, picks)) ** 2
    assert objective.routings.shape == (r, 2, k)  # 9, 36 or 81 joint routings
    terms = objective.loss(b)
    reference = brute_force_log_marginal(slow_net, b, [all_picks(3, k, picks)] * 2)
    torch.testing.assert_close(terms["loss_task"], -reference.mean())
    terms["loss"].backward()
    (-reference.mean()).backward()
    for (name, p), q in zip(fast_net.named_parameters(), slow_net.parameters(), strict=True):
        assert q.grad is not None and bool(q.grad.abs().sum() > 0), name  # modules and routers both learn
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_one_routed_layer_is_the_mixture_of_the_modules_output_distributions():
    torch.manual_seed(0)
    encoder, head = nn.Linear(4, 5), nn.Linear(5, 3)
    bank = MLPExperts(n_modules=4, d_in=5, d_hidden=6, d_out=5)
    router = Router(n_modules=4, d_in=5)
    net = ModularStack(layers=[ModularLayer(modules=bank, router=router)], encoder=encoder, head=head)
    b = batch()
    objective = ExactMarginal(net)
    # p(y|x) = sum_m p(m|x) p(y|x,m), every module's output distribution written out
    with torch.no_grad():
        h = encoder(b["x"])
        weights = torch.softmax(router.layer_logits(h), dim=-1)  # (B, M)
        per_module = torch.stack([torch.softmax(head(bank.run_all(h)[m]), dim=-1) for m in range(4)], 1)  # (B, M, C)
        mixture = (weights[..., None] * per_module).sum(1)  # (B, C)
    torch.testing.assert_close(objective.predict(b).exp(), mixture)
    loss = objective.loss(b)["loss_task"]
    torch.testing.assert_close(loss, -mixture.gather(1, b["y"][:, None]).log().mean())
    # unlike Router(mode="soft"), which mixes the modules' features before the head
    soft = ModularStack(layers=[ModularLayer(modules=bank, router=Router(n_modules=4, d_in=5, mode="soft"))],
                        encoder=encoder, head=head)
    soft.layers[0].router.load_state_dict(router.state_dict())
    assert not torch.allclose(torch.softmax(soft(b["x"]).output, -1), mixture)


def test_mean_prediction_is_the_mixture_mean_for_a_gaussian_likelihood():
    net = stack(layers=1, m=3)
    net.head = nn.Linear(5, 2)
    objective = ExactMarginal(net, ExactMarginalConfig(prediction="mean"), likelihood=GaussianLikelihood(sigma=1.0))
    b = {"x": batch()["x"], "y": torch.randn(6, 2)}
    with torch.no_grad():
        outs = torch.stack([net(b["x"], torch.full((6, 1, 1), m)).output for m in range(3)])  # (M, B, 2)
        p = torch.softmax(net.layers[0].router.layer_logits(net.encoder(b["x"])), -1).t()  # (M, B)
    torch.testing.assert_close(objective.predict(b), (p[..., None] * outs).sum(0))
    objective.loss(b)["loss"].backward()


def test_categorical_prediction_needs_class_logits():
    net = stack(layers=1)
    net.head = nn.Sequential(nn.Linear(5, 6), nn.Unflatten(1, (2, 3)))  # (B, 2, 3) outputs
    with pytest.raises(ConfigError, match="prediction='categorical' reads the model's outputs as"):
        ExactMarginal(net).predict({"x": torch.randn(6, 4)})


def test_a_soft_layer_counts_as_one_routing_and_static_routers_work():
    net = ModularStack(layers=[
        ModularLayer(modules=MLPExperts(n_modules=3, d_in=5, d_hidden=6, d_out=5),
                     router=Router(n_modules=3, d_in=5, mode="soft"), k=3),
        ModularLayer(modules=MLPExperts(n_modules=3, d_in=5, d_hidden=6, d_out=5),
                     router=Router(n_modules=3, static=True, k=3, mode="topk"), k=3),
    ], encoder=nn.Linear(4, 5), head=nn.Linear(5, 3))
    objective = ExactMarginal(net)
    assert objective.routings.shape == (6, 2, 3)  # 1 soft routing x 3! orderings of all three modules
    objective.loss(batch())["loss"].backward()


def test_too_many_routings_or_a_model_that_is_not_a_stack_is_refused():
    with pytest.raises(ConfigError, match=r"81 joint routings \(9 x 9 choices per layer\), more than limit=80"):
        ExactMarginal(stack(k=2, picks="independent"), ExactMarginalConfig(max_routings=80))
    big = stack(layers=4, m=16)  # 16 ** 4 = 65,536: at the default limit
    assert ExactMarginal(big).routings.shape == (65_536, 4, 1)
    with pytest.raises(ConfigError, match="1,048,576 joint routings"):
        ExactMarginal(stack(layers=5, m=16))
    with pytest.raises(ConfigError, match="enumerates the routings of a ModularStack, got Linear"):
        ExactMarginal(nn.Linear(4, 3))
    with pytest.raises(ConfigError, match="prediction"):
        ExactMarginalConfig(prediction="mode")


def test_exact_marginal_trains_modules_and_router_on_a_routed_problem():
    """Two tasks, each solvable by one module; the static router sees the task id."""
    g = torch.Generator().manual_seed(0)
    n = 256
    task = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 4, generator=g)
    y = torch.where(task == 0, (x[:, 0] > 0).long(), (x[:, 1] > 0).long() + 1)
    torch.manual_seed(0)
    net = ModularStack(layers=[ModularLayer(modules=MLPExperts(n_modules=2, d_in=5, d_hidden=16, d_out=5),
                                            router=Router(n_modules=2, static=True, n_tasks=2))],
                       encoder=nn.Linear(4, 5), head=nn.Linear(5, 3))
    objective = ExactMarginal(net)
    b = {"x": x, "y": y, "task": task}
    opt = torch.optim.Adam(objective.parameters(), lr=3e-2)
    first = float(objective.loss(b)["loss"].detach())
    for _ in range(150):
        terms = objective.loss(b)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    assert float(terms["loss"].detach()) < 0.3 * first
    accuracy = float((objective.predict(b).argmax(1) == y).float().mean())
    assert accuracy > 0.9


def test_the_config_round_trips_through_json():
    config = ExactMarginalConfig(max_routings=100, prediction="mean")
    assert ExactMarginalConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="max_routings"):
        ExactMarginalConfig(max_routings=0)
