import pytest
import torch

from modnets.errors import ConfigError
from modnets.models import dense_mlp, modular_mlp
from modnets.train import EndToEnd

SIZES = {"d_in": 12, "d_model": 8, "d_hidden": 16, "n_out": 3, "n_layers": 3}


def _touched(model, x):
    """Per example, per layer: the modules whose parameters that example's output depends on, and how many
    module parameters those are in all."""
    modules, counts = [], []
    for i in range(x.shape[0]):
        model.zero_grad()
        model(x[i : i + 1], mode="argmax").output.sum().backward()
        used, count = [], 0
        for layer in model.layers:
            params = list(layer.experts.parameters())  # each (E, ...): one slice per module
            hit = sorted({e for p in params for e in range(p.shape[0]) if p.grad is not None and p.grad[e].any()})
            used.append(hit)
            count += sum(p[e].numel() for p in params for e in hit)
        modules.append(used)
        counts.append(count)
    return modules, counts


def test_a_module_has_the_dense_layer_shape_and_one_runs_per_example_and_layer():
    torch.manual_seed(0)
    modular, dense = modular_mlp(n_modules=4, **SIZES), dense_mlp(**SIZES)
    for m_layer, d_layer in zip(modular.layers, dense.layers, strict=True):
        m_params, d_params = list(m_layer.experts.parameters()), list(d_layer.experts.parameters())
        assert [p.shape[0] for p in m_params] == [4] * 4 and [p.shape[0] for p in d_params] == [1] * 4
        assert [p.shape[1:] for p in m_params] == [p.shape[1:] for p in d_params]  # same widths per module

    x = torch.randn(6, SIZES["d_in"])
    used, modular_counts = _touched(modular, x)
    _, dense_counts = _touched(dense, x)
    with torch.no_grad():
        choice = modular(x, mode="argmax").route.choice  # (6, L, 1)
    assert used == choice[..., 0, None].tolist()  # exactly the chosen module of each layer, nothing else
    assert modular_counts == dense_counts == [sum(p.numel() for layer in dense.layers
                                                  for p in layer.experts.parameters())] * 6
    assert tuple(modular(x).output.shape) == tuple(dense(x).output.shape) == (6, 3)


def test_k_modules_per_example_cost_k_times_the_dense_compute():
    torch.manual_seed(0)
    two = modular_mlp(n_modules=4, k=2, mode="topk", **SIZES)
    used, counts = _touched(two, torch.randn(3, SIZES["d_in"]))
    assert all(len(layer) == 2 for example in used for layer in example)
    _, dense_counts = _touched(dense_mlp(**SIZES), torch.randn(3, SIZES["d_in"]))
    assert counts == [2 * c for c in dense_counts]


def test_the_dense_baseline_sees_the_task_and_the_modular_one_can_route_by_it():
    torch.manual_seed(0)
    dense = dense_mlp(n_tasks=3, **SIZES)
    x = torch.randn(1, SIZES["d_in"]).repeat(3, 1)
    out = dense(x, task=torch.arange(3)).output
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    static = modular_mlp(n_modules=4, static=True, n_tasks=3, **SIZES)
    assert tuple(static(x, task=torch.arange(3)).route.probs.shape) == (3, SIZES["n_layers"], 4)


@pytest.mark.parametrize(("kwargs", "message"), [({"static": True}, "give n_tasks"),
                                                  ({"task_embedding": True}, "task_embedding needs n_tasks")])
def test_task_options_need_the_number_of_tasks(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        modular_mlp(n_modules=4, **SIZES, **kwargs)


def test_a_gated_modular_mlp_trains_its_routers_by_backpropagation():
    torch.manual_seed(0)
    net = modular_mlp(d_in=6, d_model=8, n_modules=4, n_out=3, mode="topk", gate="softmax_topk")
    EndToEnd(net).loss({"x": torch.randn(16, 6), "y": torch.randint(0, 3, (16,))})["loss"].backward()
    for layer in net.layers:
        grads = [p.grad for p in layer.router.parameters()]
        assert all(g is not None for g in grads) and any(bool(g.abs().sum() > 0) for g in grads)


def test_an_ungated_top1_modular_mlp_leaves_its_routers_to_a_router_objective():
    torch.manual_seed(0)
    net = modular_mlp(d_in=6, d_model=8, n_modules=4, n_out=3, mode="topk")
    EndToEnd(net).loss({"x": torch.randn(16, 6), "y": torch.randint(0, 3, (16,))})["loss"].backward()
    assert all(p.grad is None for layer in net.layers for p in layer.router.parameters())
