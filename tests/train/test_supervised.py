import torch
from torch.utils.data import Dataset, default_collate

from modnets.models import modular_mlp
from modnets.train import predict_routed

N, D_IN, LAYERS, MODULES, TASKS = 23, 6, 3, 4, 3


class Examples(Dataset):
    def __init__(self, n=N, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, D_IN, generator=g)
        self.task = torch.randint(0, TASKS, (n,), generator=g)

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return {"x": self.x[i], "task": self.task[i]}


def _model():
    torch.manual_seed(0)
    model = modular_mlp(d_in=D_IN, d_model=8, n_modules=MODULES, n_out=2, n_layers=LAYERS, mode="sample",
                        n_tasks=TASKS)
    with torch.no_grad():  # as if trained: per-task router terms that start at zero now matter
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def test_outputs_and_routes_equal_the_model_run_batch_by_batch_in_argmax_mode_in_order():
    model, data = _model(), Examples()
    model.train()
    got = predict_routed(model, data, collate=default_collate, batch_size=5)
    assert model.training  # the caller's mode comes back

    model.eval()
    with torch.no_grad():
        parts = [model(data.x[i : i + 5], task=data.task[i : i + 5], mode="argmax") for i in range(0, N, 5)]
    assert torch.equal(got.route.choice, torch.cat([p.route.choice for p in parts]))
    # Values agree to rounding: a slice of x and a freshly stacked batch sit at different memory alignments,
    # which changes the matmul kernels' summation order.
    torch.testing.assert_close(got.output, torch.cat([p.output for p in parts]))
    torch.testing.assert_close(got.route.log_prob, torch.cat([p.route.log_prob for p in parts]))
    torch.testing.assert_close(got.route.probs, torch.cat([p.route.probs for p in parts]))


def test_routes_have_the_documented_shapes_and_argmax_picks_the_most_probable_module():
    got = predict_routed(_model(), Examples(), collate=default_collate, batch_size=7)
    assert tuple(got.output.shape) == (N, 2)
    assert tuple(got.route.choice.shape) == (N, LAYERS, 1)
    assert tuple(got.route.log_prob.shape) == (N,)
    assert tuple(got.route.probs.shape) == (N, LAYERS, MODULES)
    assert torch.equal(got.route.choice[..., 0], got.route.probs.argmax(-1))
    assert not got.output.requires_grad


def test_the_result_does_not_depend_on_the_batch_size():
    model, data = _model(), Examples()
    one = predict_routed(model, data, collate=default_collate, batch_size=1)
    all_at_once = predict_routed(model, data, collate=default_collate, batch_size=N)
    assert torch.equal(one.route.choice, all_at_once.route.choice)
    torch.testing.assert_close(one.output, all_at_once.output)


def test_the_task_reaches_the_routers():
    model, data = _model(), Examples()
    moved = Examples()
    moved.task = (data.task + 1) % TASKS
    a = predict_routed(model, data, collate=default_collate)
    b = predict_routed(model, moved, collate=default_collate)
    assert not torch.allclose(a.route.probs, b.route.probs)
