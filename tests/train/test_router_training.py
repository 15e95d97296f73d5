"""Router-training algorithms: the reductions of the top-K buffer, learning, bad input."""

import copy

import pytest
import torch
from torch import nn

from modnets.errors import ConfigError, ShapeError
from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router, switch_balance_loss
from modnets.train import (
    EndToEnd,
    ExactMarginal,
    FitConfig,
    GaussianLikelihood,
    Reinforce,
    ReinforceConfig,
    RoutingRegularizers,
    RunDir,
    TopKBuffer,
    TopKBufferConfig,
    categorical_log_likelihood,
    fit,
    generalized_em,
    mutual_information_estimate,
)


def make_net(seed=0, mode="sample", layers=2, m=4, d=6, k=1, static=False, n_tasks=None):
    torch.manual_seed(seed)
    return ModularStack(
        layers=[
            ModularLayer(
                modules=MLPExperts(n_modules=m, d_in=d, d_hidden=8, d_out=d),
                router=Router(n_modules=m, d_in=d, mode=mode, k=k, static=static, n_tasks=n_tasks),
                k=k,
            )
            for _ in range(layers)
        ],
        head=nn.Linear(d, 3),
    )


def batch(n=16, d=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, d, generator=g), "y": torch.randint(0, 3, (n,), generator=g), "index": torch.arange(n)}


def grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same_grads(a, b):
    ga, gb = grads(a), grads(b)
    assert ga.keys() == gb.keys() and ga
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], msg=name)


def reference_reinforce_step(net, b, samples, baseline_value):
    """Plain REINFORCE written out: sample, reward log p(y|x,a), subtract a constant baseline."""
    x, y = b["x"].repeat(samples, 1), b["y"].repeat(samples)
    out = net(x)
    ll = categorical_log_likelihood(out.output, y)
    adv = ll.detach() - baseline_value
    (-ll.mean() - (adv * out.route.log_prob).mean()).backward()


def test_empty_buffer_is_reinforce():
    b = batch()
    net_a, net_b, net_c = make_net(), make_net(), make_net()
    for steps_before in range(2):  # the second round checks the moving baseline too
        torch.manual_seed(10 + steps_before)
        buf = TopKBuffer(net_a, dataset_size=16, config=TopKBufferConfig(buffer_size=0, samples=2, baseline="none"))
        buf.loss(b)["loss"].backward()
        torch.manual_seed(10 + steps_before)
        Reinforce(net_b, ReinforceConfig(samples=2, baseline="none")).loss(b)["loss"].backward()
        torch.manual_seed(10 + steps_before)
        reference_reinforce_step(net_c, b, samples=2, baseline_value=0.0)
        assert_same_grads(net_a, net_b)
        assert_same_grads(net_a, net_c)
        for n in (net_a, net_b, net_c):
            n.zero_grad()


def test_reinforce_moving_average_baseline_is_subtracted():
    b = batch()
    net_a, net_b = make_net(), make_net()
    objective = Reinforce(net_a, ReinforceConfig(baseline="moving_average", baseline_decay=0.5))
    torch.manual_seed(3)
    objective.loss(b)["loss"].backward()  # first batch: the baseline starts at the batch mean
    first = float(objective.baseline.value)
    net_a.zero_grad()
    torch.manual_seed(4)
    objective.loss(b)["loss"].backward()
    torch.manual_seed(4)
    reference_reinforce_step(net_b, b, samples=1, baseline_value=first)
    assert_same_grads(net_a, net_b)


@pytest.mark.parametrize("init", ["random", "best_sample"])
def test_buffer_of_one_without_sample_gradient_is_kirsch_em(init):
    b = batch()
    net_a, net_b = make_net(), make_net()
    em = generalized_em(net_a, dataset_size=16, config=TopKBufferConfig.em(samples=3, init=init))
    # reference: (B, L, k) incumbents kept by hand; "random" starts from the table drawn at construction
    incumbent = em.buffer.choice[:16, 0].clone() if init == "random" else None
    for step in range(3):
        torch.manual_seed(100 + step)
        em.loss(b)["loss"].backward()
        torch.manual_seed(100 + step)
        with torch.no_grad():  # E-step: score 3 samples, keep the incumbent unless a sample is strictly better
            out = net_b(b["x"].repeat(3, 1))
            score = (categorical_log_likelihood(out.output, b["y"].repeat(3)) + out.route.log_prob).view(3, 16)
            best = score.argmax(0)
            cand = out.route.choice.view(3, 16, 2, 1)[best, torch.arange(16)]
            cand_score = score[best, torch.arange(16)]
            if incumbent is None:
                incumbent = cand
            else:
                again = net_b(b["x"], incumbent)
                old = categorical_log_likelihood(again.output, b["y"]) + again.route.log_prob
                incumbent = torch.where((cand_score > old)[:, None, None], cand, incumbent)
        out = net_b(b["x"], incumbent)  # M-step
        (-(categorical_log_likelihood(out.output, b["y"]) + out.route.log_prob).mean()).backward()
        assert torch.equal(em.buffer.choice[:16, 0], incumbent)
        assert_same_grads(net_a, net_b)
        for n in (net_a, net_b):  # a plain SGD step on both, so later E-steps see changed parameters
            with torch.no_grad():
                for p in n.parameters():
                    if p.grad is not None:
                        p -= 0.5 * p.grad
            n.zero_grad()


def test_em_starts_from_uniformly_random_incumbents_by_default():
    torch.manual_seed(0)
    em = generalized_em(make_net(layers=2, m=4), dataset_size=4000)
    assert em.config.init == "random" and bool(em.buffer.valid[:, 0].all())
    assert bool((em.buffer.score == float("-inf")).all())  # drawn, not scored yet
    counts = torch.bincount(em.buffer.choice[:, 0].flatten(), minlength=4).float()  # 2 layers x 4000 picks
    assert float((counts / counts.sum() - 0.25).abs().max()) < 0.02
    plain = generalized_em(make_net(), dataset_size=16, config=TopKBufferConfig.em(init="best_sample"))
    assert not bool(plain.buffer.valid.any())  # filled by the first E-step's best samples
    assert TopKBufferConfig().init == "best_sample"  # the top-K buffer keeps its behaviour by default
    with pytest.raises(ConfigError, match="init"):
        TopKBufferConfig(buffer_size=0, init="random")
    with pytest.raises(ConfigError, match="holds 0 Router"):
        TopKBuffer(nn.Linear(2, 2), dataset_size=4, route_shape=(1, 1), config=TopKBufferConfig.em())
    two_kinds = nn.ModuleList([Router(n_modules=3, d_in=2), Router(n_modules=4, d_in=2)])
    with pytest.raises(ConfigError, match="holds 2 Router"):
        TopKBuffer(two_kinds, dataset_size=4, route_shape=(2, 1), config=TopKBufferConfig.em())
    one_kind = nn.ModuleList([Router(n_modules=3, d_in=2)])  # any model: its one kind of router's choices
    em = TopKBuffer(one_kind, dataset_size=300, route_shape=(2, 1), config=TopKBufferConfig.em())
    assert set(em.buffer.choice[:, 0].flatten().tolist()) == {0, 1, 2}
    with pytest.raises(ConfigError, match="k=2 picks per layer"):
        TopKBuffer(one_kind, dataset_size=4, route_shape=(1, 2), config=TopKBufferConfig.em())


def test_buffer_keeps_the_k_best_distinct_routings():
    net = make_net(layers=1, m=3)
    buf = TopKBuffer(net, dataset_size=8, config=TopKBufferConfig(buffer_size=3, samples=6, sample_gradient=False))
    b = batch(n=8)
    for _ in range(4):
        buf.loss(b)
    choice, valid, score = buf.buffer.choice[:8], buf.buffer.valid[:8], buf.buffer.score[:8]
    for n in range(8):
        entries = [tuple(c.flatten().tolist()) for c, v in zip(choice[n], valid[n], strict=True) if v]
        assert len(entries) == len(set(entries)) and len(entries) >= 2  # 3 modules: up to 3 distinct routings
        s = score[n][valid[n]]
        assert torch.all(s[:-1] >= s[1:])  # best first
    # the stored scores are the joint scores under the current parameters
    with torch.no_grad():
        out = net(b["x"], choice[:, 0])
        expected = categorical_log_likelihood(out.output, b["y"]) + out.route.log_prob
    torch.testing.assert_close(score[:, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["em", "topk", "reinforce", "exact"])
def test_k_independent_categoricals_train_under_every_router_objective(method):
    torch.manual_seed(0)
    net = ModularStack(layers=[ModularLayer(modules=MLPExperts(n_modules=3, d_in=6, d_hidden=8, d_out=6),
                                            router=Router(n_modules=3, d_in=6, k=2, picks="independent"), k=2)
                               for _ in range(2)], head=nn.Linear(6, 3))
    objective = {
        "em": lambda: generalized_em(net, dataset_size=16),
        "topk": lambda: TopKBuffer(net, dataset_size=16, config=TopKBufferConfig(buffer_size=3, samples=3)),
        "reinforce": lambda: Reinforce(net, ReinforceConfig(samples=2)),
        "exact": lambda: ExactMarginal(net),  # 9 x 9 joint routings
    }[method]()
    objective.loss(batch())["loss"].backward()
    router = net.layers[0].router.nets[0]
    assert router.weight.grad is not None and float(router.weight.grad.abs().sum()) > 0
    assert objective.predict(batch()).shape == (16, 3)


def test_e_step_schedule_runs_the_e_step_every_nth_step():
    net = make_net()
    em = generalized_em(net, dataset_size=16, config=TopKBufferConfig.em(samples=2, e_step_every=3))
    flags = [float(em.loss(batch())["e_step"]) for _ in range(6)]
    assert flags == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_state_dict_round_trip_keeps_the_buffer():
    net = make_net()
    em = generalized_em(net, dataset_size=16, config=TopKBufferConfig.em(samples=2))
    em.loss(batch())
    clone = generalized_em(make_net(seed=5), dataset_size=16, config=TopKBufferConfig.em(samples=2))
    clone.load_state_dict(copy.deepcopy(em.state_dict()))
    assert torch.equal(clone.buffer.choice, em.buffer.choice) and torch.equal(clone.buffer.valid, em.buffer.valid)
    assert int(clone.steps) == 1


def composition_data(n=512, seed=0):
    """Two tasks, two modules: y = x @ W_task; the router sees the task id only."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(2, 4, 4, generator=g)
    x = torch.randn(n, 4, generator=g)
    task = torch.randint(0, 2, (n,), generator=g)
    y = torch.einsum("nd,nde->ne", x, w[task])
    return [{"x": x[i], "y": y[i], "task": task[i], "index": i} for i in range(n)]


def collate(items):
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


def routed_regressor(mode="sample", seed=0):
    torch.manual_seed(seed)
    return ModularStack(layers=[
        ModularLayer(
            modules=MLPExperts(n_modules=2, d_in=4, d_hidden=16, d_out=4),
            router=Router(n_modules=2, static=True, n_tasks=2, mode=mode),
        )
    ])


@pytest.mark.parametrize("method", ["em", "topk", "reinforce", "soft", "gumbel"])
def test_every_method_learns_a_two_task_problem(method):
    data = composition_data()
    mode = {"soft": "soft", "gumbel": "gumbel"}.get(method, "sample")
    net = routed_regressor(mode)
    ll = GaussianLikelihood(sigma=0.5)
    objective = {
        "em": lambda: generalized_em(net, dataset_size=len(data), config=TopKBufferConfig.em(samples=2), likelihood=ll),
        "topk": lambda: TopKBuffer(net, dataset_size=len(data), likelihood=ll,
                                   config=TopKBufferConfig(buffer_size=2, samples=2)),
        "reinforce": lambda: Reinforce(net, ReinforceConfig(), likelihood=ll),
        "soft": lambda: EndToEnd(net, likelihood=ll),
        "gumbel": lambda: EndToEnd(net, likelihood=ll),
    }[method]()
    eval_batch = collate(data)

    def error():
        return float((objective.predict(eval_batch) - eval_batch["y"]).pow(2).mean())

    before = error()
    result = fit(objective, data, config=FitConfig(epochs=15, batch_size=64, lr=1e-2), collate=collate,
                 run=RunDir(progress=False))
    assert error() < 0.5 * before
    assert {"H(A)", "H(A|X)", "I(A;X)"} <= result.history[-1].keys()


def test_em_separates_the_two_tasks_onto_two_modules():
    data = composition_data()
    net = routed_regressor()
    em = generalized_em(net, dataset_size=len(data), config=TopKBufferConfig.em(samples=2),
                        likelihood=GaussianLikelihood(sigma=0.5))
    fit(em, data, config=FitConfig(epochs=20, batch_size=64, lr=1e-2), collate=collate, run=RunDir(progress=False))
    probs = net.layers[0].router.logits.detach().softmax(-1)[:, 0]  # (tasks, M)
    assert probs.argmax(1).tolist() in ([0, 1], [1, 0])
    assert float(probs.max(1).values.min()) > 0.9


def test_regularizers_have_their_documented_values():
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # two inputs, sure and different: I = log 2
    assert float(mutual_information_estimate(probs)) == pytest.approx(torch.log(torch.tensor(2.0)).item())
    net = make_net(layers=1, m=2)
    route = net(torch.randn(64, 6)).route
    balanced = switch_balance_loss(route._replace(probs=torch.full_like(route.probs, 0.5)))
    assert float(balanced) == pytest.approx(1.0)
    terms = RoutingRegularizers(entropy_bonus=0.1, load_balance=0.01, mutual_information=0.1).terms(route)
    assert set(terms) == {"loss_entropy", "loss_balance", "loss_mi"}
    with pytest.raises(ConfigError, match="load_balance"):
        RoutingRegularizers(load_balance=-1)


def test_mutual_information_regularizer_makes_a_static_router_task_specific():
    net = routed_regressor()
    with torch.no_grad():  # exactly uniform routing is a stationary point of I(A;X): start near it
        net.layers[0].router.logits.normal_(0, 0.01)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    task = torch.arange(2).repeat(32)
    for _ in range(50):
        route = net(torch.randn(64, 4), task=task).route
        loss = RoutingRegularizers(mutual_information=1.0).terms(route)["loss_mi"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(mutual_information_estimate(route.probs.detach())) > 0.6  # log 2 = 0.69 is the maximum


def test_missing_or_bad_example_ids_raise():
    em = generalized_em(make_net(), dataset_size=16)
    b = batch()
    with pytest.raises(ConfigError, match="needs example ids"):
        em.loss({"x": b["x"], "y": b["y"]})
    with pytest.raises(ConfigError, match=r"\[0, dataset_size=16\)"):
        em.loss({**b, "index": torch.arange(16) + 10})
    with pytest.raises(ShapeError, match="batch\\['index'\\]"):
        em.loss({**b, "index": torch.arange(3)})


def test_bad_configs_raise():
    with pytest.raises(ConfigError, match="samples"):
        ReinforceConfig(samples=0)
    with pytest.raises(ConfigError, match="reward"):
        ReinforceConfig(reward="accuracy")
    with pytest.raises(ConfigError, match="baseline"):
        Reinforce(make_net(), ReinforceConfig(baseline="median"))
    with pytest.raises(ConfigError, match="sample_gradient"):
        TopKBufferConfig(buffer_size=0, sample_gradient=False)
    with pytest.raises(ConfigError, match="e_step_every"):
        TopKBufferConfig(e_step_every=0)
    with pytest.raises(ConfigError, match="route_shape"):
        TopKBuffer(nn.Linear(2, 2), dataset_size=4)
    with pytest.raises(ConfigError, match="sigma"):
        GaussianLikelihood(sigma=0)
