"""The objectives that learn programs: the reductions of the top-K buffer (K = 0 is REINFORCE, K = 1 without
the samples' gradient is EM), losses that fall on a planted problem whose right programs are known, behaviour
cloning, and the batched execution they share."""

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from modnets.compose import Library, Program, ProgramPolicy, ProgramSpace
from modnets.errors import ConfigError, ShapeError
from modnets.modules import PerArgument, Signature, TypedModule
from modnets.train import (
    FitConfig,
    ProgramCloning,
    ProgramSearch,
    ProgramSearchConfig,
    fit,
)
from modnets.types import Latent, Logits

D, C, TASKS = 6, 8, 4


class Linear(TypedModule):
    """``v @ weight``: the input, or the context ``x`` for a leaf."""

    def __init__(self, weight, inputs, output, context=(), trainable=False):
        super().__init__(Signature(inputs=inputs, output=output, context=context))
        self.weight = nn.Parameter(weight.clone(), requires_grad=trainable)

    def compute(self, *inputs, arg=None, **context):
        return (inputs[0] if inputs else context["x"]) @ self.weight


def planted_library(trainable=False, seed=1) -> Library:
    """``x`` reads the input, ``f[a|b|c]`` are three rotations, ``read`` maps to 4 answer logits."""
    g = torch.Generator().manual_seed(seed)
    rotations = {a: torch.linalg.qr(torch.randn(D, D, generator=g))[0] for a in "abc"}
    readout = 3 * torch.randn(D, C, generator=g)
    return Library({
        "x": Linear(torch.eye(D), {}, Latent(D), {"x": Latent(D)}),
        "f": PerArgument(lambda a: Linear(rotations[a], {"h": Latent(D)}, Latent(D), trainable=trainable), "abc"),
        "read": Linear(readout, {"h": Latent(D)}, Logits(C), trainable=trainable),
    })


#: the right program of each task
GOLD = tuple(Program.parse(t) for t in ("read(f[a](x))", "read(f[b](f[a](x)))", "read(f[c](x))", "read(x)"))


def planted_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    task = torch.randint(0, TASKS, (n,), generator=g)
    x = torch.randn(n, D, generator=g)
    with torch.no_grad():
        answer = planted_library()([GOLD[t] for t in task.tolist()], x=x).argmax(1)
    return {"task": task, "x": x, "answer": answer, "index": torch.arange(n),
            "program": [GOLD[t] for t in task.tolist()]}


def make(kind="search", config=None, trainable=False, dataset_size=64, seed=0, **kwargs):
    torch.manual_seed(seed)
    library = planted_library(trainable)
    space = ProgramSpace.of(library, output=Logits(C), max_size=4)
    parts = dict(policy=ProgramPolicy(space=space, d_context=8, hidden=32), library=library,
                 library_context={"x": ("x", None)}, encoder=nn.Embedding(TASKS, 8), context_key="task", **kwargs)
    if kind == "clone":
        return ProgramCloning(**parts)
    return ProgramSearch(**parts, dataset_size=dataset_size, config=config)


def train(objective, data, steps, batch=32, lr=1e-2, seed=0):
    optimiser = torch.optim.Adam([p for p in objective.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = data["x"].shape[0]
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g).unique()
        terms = objective.loss(_rows(data, idx))
        optimiser.zero_grad()
        terms["loss"].backward()
        optimiser.step()
        losses.append(float(terms["loss_task"].detach()))
    return losses


def gradients(loss, objective):
    """The gradient of ``loss`` for every trainable parameter of ``objective`` (zeros where unused)."""
    params = [p for p in objective.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _rows(data, idx):
    out = {k: v[idx] for k, v in data.items() if isinstance(v, torch.Tensor)}
    out["program"] = [data["program"][i] for i in idx.tolist()]
    return out


def greedy_programs(objective):
    objective.eval()
    return objective.programs({"task": torch.arange(TASKS)}).programs


# ---------------------------------------------------------------------------------------------- reductions
def test_an_empty_buffer_is_reinforce_with_a_moving_average_baseline():
    data = _rows(planted_data(16), torch.arange(16))
    objective = make(config=ProgramSearchConfig.reinforce(samples=3, entropy=0.05), trainable=True)
    torch.manual_seed(5)
    terms = objective.loss(data)
    grads = gradients(terms["loss"], objective)

    # the same step by hand: S samples, modules by maximum likelihood, policy by (R - b) log p(a|x)
    torch.manual_seed(5)
    context = objective.encoder(data["task"])
    drawn = objective.policy(context, samples=3, mode="sample")
    out = objective.library(drawn.programs, x=data["x"].repeat(3, 1))
    ll = torch.log_softmax(out, 1).gather(1, data["answer"].repeat(3)[:, None])[:, 0]
    advantage = ll.detach() - ll.detach().mean()  # the moving average starts at the first batch's mean reward
    loss_task, loss_policy = -ll.mean(), -(advantage * drawn.log_prob).mean()
    loss_entropy = -0.05 * drawn.entropy.sum(1).mean()
    assert float(terms["loss_task"].detach()) == pytest.approx(float(loss_task.detach()), rel=1e-5)
    assert float(terms["loss_policy"].detach()) == pytest.approx(float(loss_policy.detach()), abs=1e-6)
    assert float(terms["loss_entropy"].detach()) == pytest.approx(float(loss_entropy.detach()), rel=1e-5)
    expected = gradients(loss_task + loss_policy + loss_entropy, objective)
    for a, b in zip(grads, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert objective.buffer is None and "index" not in objective.batch_keys


def test_k1_without_the_samples_gradient_is_generalised_em():
    data = _rows(planted_data(8), torch.arange(8))
    objective = make(config=ProgramSearchConfig.em(samples=4), trainable=True, dataset_size=8)
    incumbent: dict[int, tuple[Program, float]] = {}
    for step in range(3):
        torch.manual_seed(10 + step)
        terms = objective.loss(data)
        grads = gradients(terms["loss"], objective)

        # by hand: score the incumbent and the S samples by log p(y|x,a) + log p(a|x); a sample replaces the
        # incumbent only when strictly better; the M-step fits log p(y|x,a*) + log p(a*|x) of the incumbents
        torch.manual_seed(10 + step)
        context = objective.encoder(data["task"])
        drawn = objective.policy(context, samples=4, mode="sample")

        def joint(programs, rows, context=context):
            lp = objective.policy.log_prob(programs, context[rows])
            out = objective.library(programs, x=data["x"][rows])
            ll = torch.log_softmax(out, 1).gather(1, data["answer"][rows][:, None])[:, 0]
            return ll, lp

        ll_s, lp_s = joint(list(drawn.programs), torch.arange(8).repeat(4))
        for n in range(8):
            candidates = [] if n not in incumbent else [incumbent[n][0]]
            candidates += [drawn.programs[s * 8 + n] for s in range(4)]
            scores = []
            for c in candidates:
                ll, lp = joint([c], torch.tensor([n]))
                scores.append(float((ll + lp).detach()))
            best = max(range(len(candidates)), key=lambda i: (scores[i], -i))  # ties: the earlier, the incumbent
            incumbent[n] = (candidates[best], scores[best])
        chosen = [incumbent[n][0] for n in range(8)]
        assert objective.policy.decode(objective.buffer.tokens[:, 0]) == tuple(chosen)
        assert torch.allclose(objective.buffer.score[:, 0], torch.tensor([incumbent[n][1] for n in range(8)]),
                              atol=1e-4)
        ll, lp = joint(chosen, torch.arange(8))
        loss_task, loss_policy = -ll.mean(), -lp.mean()
        assert float(terms["loss_task"].detach()) == pytest.approx(float(loss_task.detach()), rel=1e-4)
        assert float(terms["loss_policy"].detach()) == pytest.approx(float(loss_policy.detach()), rel=1e-4)
        expected = gradients(loss_task + loss_policy, objective)
        for a, b in zip(grads, expected, strict=True):
            assert torch.allclose(a, b, atol=1e-4)
        with torch.no_grad():  # move the parameters, so that the incumbents are scored anew next step
            for p in objective.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn_like(p))


def test_modules_fit_only_the_buffer_when_told_while_the_samples_still_train_the_policy():
    data = _rows(planted_data(8), torch.arange(8))
    buffer_only = make(config=ProgramSearchConfig(buffer_size=1, samples=4, module_programs="buffer"),
                       trainable=True, dataset_size=8)
    em = make(config=ProgramSearchConfig.em(samples=4), trainable=True, dataset_size=8)
    for step in range(2):
        torch.manual_seed(20 + step)
        a = buffer_only.loss(data)
        torch.manual_seed(20 + step)
        b = em.loss(data)
        # the same incumbents, and the modules fit them alone, as EM's M-step does
        assert torch.equal(buffer_only.buffer.tokens, em.buffer.tokens)
        assert float(a["loss_task"].detach()) == pytest.approx(float(b["loss_task"].detach()), rel=1e-5)
        modules = [p for p in buffer_only.library.parameters() if p.requires_grad]
        for g_a, g_b in zip(torch.autograd.grad(a["loss_task"], modules, retain_graph=True),
                            torch.autograd.grad(b["loss_task"], [p for p in em.library.parameters() if p.requires_grad],
                                                retain_graph=True), strict=True):
            assert torch.allclose(g_a, g_b, atol=1e-5)
        # while the fresh samples' REINFORCE terms still reach the policy
        assert float(a["loss_policy"].detach()) != pytest.approx(float(b["loss_policy"].detach()), rel=1e-3)


def test_the_buffer_keeps_the_k_best_distinct_programs_sorted():
    data = _rows(planted_data(8), torch.arange(8))
    objective = make(config=ProgramSearchConfig(buffer_size=3, samples=6), dataset_size=8)
    for step in range(4):
        torch.manual_seed(step)
        objective.loss(data)
        for n in range(8):
            held = [objective.policy.space.decode(t) for t, ok in
                    zip(objective.buffer.tokens[n], objective.buffer.valid[n], strict=True) if ok]
            assert len(held) == len(set(held)) >= 1
            scores = objective.buffer.score[n][objective.buffer.valid[n]]
            assert torch.equal(scores, scores.sort(descending=True).values)


# ---------------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("config", [ProgramSearchConfig.reinforce(samples=4, baseline="learned", entropy=0.01),
                                    ProgramSearchConfig(buffer_size=2, samples=4),
                                    ProgramSearchConfig.em(samples=4)], ids=["reinforce", "top-k", "em"])
def test_the_loss_falls_and_the_planted_programs_are_found(config):
    """With the modules fixed, the answers identify each task's program; every algorithm finds all four. (The
    REINFORCE baseline is learned from the context: a single moving average across tasks of different
    difficulty lets the policy collapse onto a program that is good for some tasks in some seeds.)"""
    data = planted_data(256)
    objective = make(config=config, dataset_size=256)
    losses = train(objective, data, 150)
    assert sum(losses[-20:]) / 20 < 0.2 * sum(losses[:10]) / 10
    assert greedy_programs(objective) == GOLD


def test_modules_and_policy_learn_together_from_answers():
    data = planted_data(256)
    objective = make(config=ProgramSearchConfig(buffer_size=2, samples=4), trainable=True, dataset_size=256)
    losses = train(objective, data, 120)
    assert sum(losses[-20:]) / 20 < 0.6 * sum(losses[:10]) / 10


def test_cloning_learns_the_gold_programs_and_skips_examples_without_one():
    data = planted_data(128)
    data["program"] = [p if i % 3 else None for i, p in enumerate(data["program"])]  # two thirds given
    objective = make("clone", trainable=True)
    losses = []
    optimiser = torch.optim.Adam([p for p in objective.parameters() if p.requires_grad], lr=1e-2)
    for step in range(60):
        idx = torch.arange(step * 16, step * 16 + 16) % 128
        terms = objective.loss(_rows(data, idx))
        optimiser.zero_grad()
        terms["loss"].backward()
        optimiser.step()
        losses.append(float(terms["loss_policy"].detach()))
    assert losses[-1] < 0.1 * losses[0]
    assert greedy_programs(objective) == GOLD
    with pytest.raises(ConfigError, match="no example of the batch has a gold program"):
        objective.loss({**_rows(data, torch.arange(3)), "program": [None, None, None]})


def test_gold_programs_for_a_fraction_of_examples_are_cloned_during_the_search():
    data = planted_data(256)
    data["program"] = [p if i % 4 == 0 else None for i, p in enumerate(data["program"])]
    objective = make(config=ProgramSearchConfig(buffer_size=1, samples=2), trainable=True, dataset_size=256,
                     gold_key="program")
    assert objective.batch_keys["program"].startswith("B gold programs")
    with torch.no_grad():
        first = objective.loss(_rows(data, torch.arange(32)))
    assert float(first["loss_clone"]) > 0 and float(first["loss_gold"]) > 0
    train(objective, data, 80)
    with torch.no_grad():
        last = objective.loss(_rows(data, torch.arange(32)))
        none = objective.loss({**_rows(data, torch.tensor([1, 2, 3])), "program": [None, None, None]})
    assert float(last["loss_clone"]) < 0.2 * float(first["loss_clone"])
    assert float(none["loss_clone"]) == 0.0 and float(none["loss_gold"]) == 0.0
    with pytest.raises(ConfigError, match="must list B=3 gold programs"):
        objective.loss({k: v for k, v in _rows(data, torch.tensor([1, 2, 3])).items() if k != "program"})


def test_search_runs_under_fit_and_its_buffer_is_saved_with_it():
    class Planted(Dataset):
        def __init__(self, n):
            self.data = planted_data(n)

        def __len__(self):
            return self.data["x"].shape[0]

        def __getitem__(self, i):
            return {k: v[i] for k, v in self.data.items()}

    def collate(items):
        out = {k: torch.stack([it[k] for it in items]) for k in ("task", "x", "answer", "index")}
        out["program"] = [it["program"] for it in items]
        return out

    objective = make(config=ProgramSearchConfig(buffer_size=2, samples=2), dataset_size=64)
    result = fit(objective, Planted(64), config=FitConfig(epochs=2, batch_size=16, log_every=1), collate=collate)
    assert result.steps == 8 and bool(objective.buffer.valid[:, 0].all())
    again = make(config=ProgramSearchConfig(buffer_size=2, samples=2), dataset_size=64, seed=3)
    again.load_state_dict(objective.state_dict())
    assert torch.equal(again.buffer.tokens, objective.buffer.tokens)
    batch = collate([Planted(64)[i] for i in range(8)])
    assert torch.equal(again.predict(batch), objective.predict(batch))
    assert {"reward", "H(A|X)", "program_size", "buffer_score", "nll_trained"} <= set(result.history[-1])


# ---------------------------------------------------------------------------------------------- execution
def test_repeated_programs_run_once_with_the_same_values_and_gradients():
    objective = make(trainable=True)
    data = planted_data(4)
    programs = [GOLD[0], GOLD[0], GOLD[1], GOLD[0], GOLD[0]]
    examples = torch.tensor([0, 0, 1, 1, 0])
    ll = objective.log_likelihood(programs, examples, {"x": data["x"]}, data["answer"])
    grads = torch.autograd.grad(ll.sum(), [p for p in objective.library.parameters() if p.requires_grad],
                                allow_unused=True)
    out = torch.cat([objective.library([p], x=data["x"][e : e + 1]) for p, e in zip(programs, examples.tolist(),
                                                                                    strict=True)])
    expected = torch.log_softmax(out, 1).gather(1, data["answer"][examples][:, None])[:, 0]
    assert torch.allclose(ll, expected, atol=1e-6)
    wanted = torch.autograd.grad(expected.sum(), [p for p in objective.library.parameters() if p.requires_grad],
                                 allow_unused=True)
    for a, b in zip(grads, wanted, strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5)


def test_bad_settings_and_batches_raise_typed_errors():
    with pytest.raises(ConfigError, match="dataset_size must be a positive int"):
        make(config=ProgramSearchConfig(buffer_size=2), dataset_size=None)
    with pytest.raises(ConfigError, match="set sample_gradient=True"):
        ProgramSearchConfig(buffer_size=0, sample_gradient=False)
    with pytest.raises(ConfigError, match="score must be one of"):
        ProgramSearchConfig(score="router")
    with pytest.raises(ConfigError, match="entropy must be a number >= 0"):
        ProgramSearchConfig(entropy=-1.0)
    with pytest.raises(ConfigError, match="module_programs must be one of"):
        ProgramSearchConfig(module_programs="best")
    with pytest.raises(ConfigError, match="needs a buffer"):
        ProgramSearchConfig(buffer_size=0, module_programs="buffer")
    objective = make(config=ProgramSearchConfig(buffer_size=1), dataset_size=8)
    data = _rows(planted_data(8), torch.arange(8))
    with pytest.raises(ShapeError, match="batch\\['index'\\] must have shape"):
        objective.loss({k: v for k, v in data.items() if k != "index"})
    with pytest.raises(ConfigError, match="ids in \\[0, dataset_size=8\\)"):
        objective.loss({**data, "index": data["index"] + 4})
    with pytest.raises(ConfigError, match="batch has no 'answer'"):
        objective.loss({k: v for k, v in data.items() if k != "answer"})
    with pytest.raises(ConfigError, match="class ids in"):
        objective.loss({**data, "answer": data["answer"] + C})
    assert ProgramSearchConfig.from_dict(ProgramSearchConfig.em(samples=3).to_dict()) == ProgramSearchConfig.em(
        samples=3)
