import pytest
import torch
from torch import nn

from modnets.errors import ConfigError, ShapeError
from modnets.models import dense_mlp, modular_mlp
from modnets.routing import MLPExperts, ModularLayer, ModularStack, Router


def test_stack_equals_its_layers_applied_in_turn_with_the_same_routing():
    torch.manual_seed(0)
    net = modular_mlp(d_in=12, d_model=8, n_modules=4, n_out=3)
    x = torch.randn(10, 12)
    out = net(x)
    h = net.encoder(x)
    h = net.layers[0](h, out.route.choice[:, :1]).output
    h = net.layers[1](torch.relu(h), out.route.choice[:, 1:]).output
    torch.testing.assert_close(out.output, net.head(h))
    again = net(x, out.route.choice)  # a given routing is scored: same log-probability
    torch.testing.assert_close(again.route.log_prob, out.route.log_prob)
    torch.testing.assert_close(again.output, out.output)


def test_samples_route_copies_of_the_encoded_batch():
    torch.manual_seed(0)
    net = modular_mlp(d_in=12, d_model=8, n_modules=4, n_out=3)
    x = torch.randn(5, 12)
    out = net(x, samples=3)
    assert out.output.shape == (15, 3) and out.route.choice.shape == (15, 2, 1)
    reference = net(x.repeat(3, 1), out.route.choice)  # sample-major copies of the batch
    torch.testing.assert_close(out.output, reference.output)
    torch.testing.assert_close(out.route.log_prob, reference.route.log_prob)


def test_mode_override_and_task_embedding():
    torch.manual_seed(0)
    net = modular_mlp(d_model=6, n_modules=3, n_tasks=4, static=True)
    task = torch.tensor([0, 1, 2, 3])
    best = net(torch.randn(4, 6), task=task, mode="argmax").route
    probs = best.probs
    assert torch.equal(best.choice[..., 0], probs.argmax(-1))
    dense = dense_mlp(d_model=6, n_tasks=4)
    x = torch.zeros(4, 6)
    assert not torch.allclose(dense(x, task=task).output[0], dense(x, task=task).output[1])  # the task matters
    with pytest.raises(ConfigError, match="needs task ids"):
        dense(x)


def _bank() -> MLPExperts:
    return MLPExperts(n_modules=3, d_in=4, d_hidden=4, d_out=4)


def test_bad_stacks_and_routes_raise():
    with pytest.raises(ConfigError, match="at least one"):
        ModularStack(layers=[])
    with pytest.raises(ConfigError, match="ModularLayer"):
        ModularStack(layers=[nn.Linear(2, 2)])
    soft = ModularLayer(modules=_bank(), router=Router(n_modules=3, d_in=4, mode="soft"))
    hard = ModularLayer(modules=_bank(), router=Router(n_modules=3, d_in=4))
    with pytest.raises(ConfigError, match="same number of modules"):
        ModularStack(layers=[soft, hard])
    net = ModularStack(layers=[hard])
    with pytest.raises(ShapeError, match=r"samples \* batch=4"):
        net(torch.randn(2, 4), torch.zeros(2, 1, 1, dtype=torch.long), samples=2)
    with pytest.raises(ConfigError, match="samples"):
        net(torch.randn(2, 4), samples=0)


def test_routings_enumerate_every_joint_routing_last_layer_fastest():
    def layer(m, k=1, picks="plackett_luce"):
        return ModularLayer(modules=MLPExperts(n_modules=m, d_in=4, d_hidden=4, d_out=4),
                            router=Router(n_modules=m, d_in=4, k=k, picks=picks), k=k)

    net = ModularStack(layers=[layer(2), layer(3)])
    assert net.routings()[:, :, 0].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    mixed = ModularStack(layers=[layer(3, 2), layer(3, 2, "independent")])
    routings = mixed.routings()
    assert routings.shape == (6 * 9, 2, 2) and len({tuple(r.flatten().tolist()) for r in routings}) == 54
    out = mixed(torch.randn(54, 4), routings)  # every routing is one the routers can score
    assert bool(torch.isfinite(out.route.log_prob).all())
    with pytest.raises(ConfigError, match=r"the stack has 54 joint routings \(6 x 9 choices per layer\), more than "
                                          r"limit=50"):
        mixed.routings(limit=50)
    assert mixed.routings(limit=None).shape == (54, 2, 2)
