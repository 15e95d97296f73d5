import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import modnets
from modnets import Library, Program, Signature, TypedModule
from modnets.errors import InterfaceError, ShapeError, TypeMismatchError, UnknownNameError
from modnets.modules import PerArgument, Typed
from modnets.types import Latent, Probs


class Leaf(TypedModule):
    def __init__(self):
        super().__init__(Signature(output=Latent(4), context={"x": Latent(4)}), arguments=["a", "b", "c"])
        self.emb = nn.Embedding(3, 4)

    def compute(self, *, arg=None, x):
        return torch.tanh(x * self.emb(arg))


def _scale(_value):
    return Typed(nn.Linear(4, 4), Signature(inputs={"v": Latent(4)}, output=Latent(4)))


class Add(TypedModule):
    def __init__(self):
        super().__init__(Signature(inputs={"u": Latent(4), "v": Latent(4)}, output=Latent(4)))
        self.lin = nn.Linear(4, 4)

    def compute(self, u, v, *, arg=None):
        return self.lin(u) * v


def toy_library():
    return Library(
        {
            "leaf": Leaf(),
            "scale": PerArgument(_scale, ["up", "down"]),
            "add": Add(),
            "head": Typed(nn.Linear(4, 3), Signature(inputs={"v": Latent(4)}, output=Probs(3))),
            "pick": Typed(nn.Identity(), Signature(inputs={"p": Probs(3)}, output=Probs(3))),
        }
    )


values = st.recursive(
    st.builds(lambda a: Program("leaf", a), st.sampled_from("abc")),
    lambda kids: st.one_of(
        st.builds(lambda a, k: Program("scale", a, (k,)), st.sampled_from(["up", "down"]), kids),
        st.builds(lambda u, v: Program("add", None, (u, v)), kids, kids),
    ),
    max_leaves=8,
)
batches = st.lists(values.map(lambda v: Program("head", None, (v,))), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(batches, st.integers(0, 1000))
def test_batched_execution_equals_per_example_in_values_and_gradients(programs, seed):
    torch.manual_seed(seed)
    lib = toy_library()
    x = torch.randn(len(programs), 4, requires_grad=True)

    out = lib(programs, x=x)
    out_ref = lib.execute_each(programs, x=x)
    assert out.shape == (len(programs), 3)
    torch.testing.assert_close(out, out_ref)

    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), [x, *lib.parameters()], allow_unused=True)
    grads_ref = torch.autograd.grad((out_ref * w).sum(), [x, *lib.parameters()], allow_unused=True)
    for g, r in zip(grads, grads_ref, strict=True):
        if r is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, r)


def test_grouping_runs_each_call_kind_once_per_height():
    lib = toy_library()
    progs = [Program.parse(t) for t in ["head(leaf[a])", "head(leaf[b])", "head(scale[up](leaf[c]))",
                                        "head(add(leaf[a], leaf[a]))"]]
    plan = lib.plan(progs)
    # identical leaf[a] inside the last program runs once; all leaves (embedded argument) share a group
    assert plan.n_calls == 2 + 2 + 3 + 3
    # leaves share one group (embedded argument); the roots (head) all wait for the last height
    assert plan.n_groups == len({(1, "leaf"), (2, "scale[up]"), (2, "add"), (3, "head")})
    x = torch.randn(4, 4)
    torch.testing.assert_close(lib(plan, x=x), lib.execute_each(progs, x=x))


def test_check_returns_output_type_and_names_mismatches():
    lib = toy_library()
    assert lib.check(Program.parse("head(add(leaf[a], leaf[b]))")) == Probs(3)
    with pytest.raises(TypeMismatchError, match=r"input 1 \('p'\) of 'pick' expects Probs\(3\), got Latent\(4\) "
                       r"from 'leaf\[a\]'"):
        lib.check(Program.parse("pick(leaf[a])"))
    with pytest.raises(TypeMismatchError, match=r"'add' takes 2 input\(s\)"):
        lib.check(Program.parse("head(add(leaf[a]))"))
    with pytest.raises(TypeMismatchError, match="needs an argument, one of: a, b, c"):
        lib.check(Program.parse("head(leaf)"))
    with pytest.raises(TypeMismatchError, match=r"takes no argument, got \[x\]"):
        lib.check(Program.parse("head[x](leaf[a])"))


def test_unknown_module_and_argument_are_named():
    lib = toy_library()
    with pytest.raises(UnknownNameError, match="unknown module 'fnd'; known modules: leaf, scale, add, head, pick"):
        lib.check(Program.parse("head(fnd[a])"))
    with pytest.raises(UnknownNameError, match="module 'leaf' has no argument 'z'; known: a, b, c"):
        lib.check(Program.parse("head(leaf[z])"))
    with pytest.raises(UnknownNameError, match=r"module 'scale' has no argument 'left'; known: up, down"):
        lib.check(Program.parse("head(scale[left](leaf[a]))"))


def test_bad_context_is_refused():
    lib = toy_library()
    progs = [Program.parse("head(leaf[a])")] * 2
    with pytest.raises(ShapeError, match="batch dimension 2"):
        lib(progs, x=torch.randn(3, 4))
    with pytest.raises(InterfaceError, match="missing context"):
        lib(progs)
    with pytest.raises(ShapeError, match="one Program per example"):
        lib(Program.parse("head(leaf[a])"), x=torch.randn(1, 4))


def test_interface_checking_names_module_type_and_problem():
    lib = toy_library()
    progs = [Program.parse("head(scale[up](leaf[a]))")]
    x = torch.full((1, 4), float("nan"))
    lib(progs, x=x)  # checking off: NaNs flow through silently
    modnets.check_interfaces(True)
    with pytest.raises(InterfaceError, match=r"module 'leaf' context 'x': Latent\(4\) value of shape \(1, 4\) "
                       r"contains 4 NaN"):
        lib(progs, x=x)
    with pytest.raises(InterfaceError, match="module 'leaf' context 'x'"):
        lib.execute_each(progs, x=x)
