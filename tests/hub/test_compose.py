"""Composition over the hub: the type-correct programs of stored modules, found from the signatures alone,
loaded and run; a planted chain is among them and is the one that fits the examples."""

import pytest
import torch
from torch import nn

from modnets import hub as hub_api
from modnets.compose import Program, ProgramPolicy, ProgramSpace
from modnets.errors import HubError, TypeMismatchError
from modnets.hub import Composition, Hub, register_module
from modnets.models import nmn
from modnets.modules import Signature, TypedModule
from modnets.types import FeatureMap, Latent, Logits, Mask, Probs

KINDS = {"latent": Latent, "logits": Logits, "mask": Mask}


class Affine(TypedModule):
    """``x @ W + b`` with fixed, seeded weights, between typed interfaces of given sizes."""

    def __init__(self, size_in: int, size_out: int, output: str = "latent", seed: int = 0) -> None:
        super().__init__(Signature(inputs={"x": Latent(size_in)}, output=KINDS[output](size_out)))
        self.config = {"size_in": size_in, "size_out": size_out, "output": output, "seed": seed}
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(size_in, size_out, generator=g))
        self.bias = nn.Parameter(torch.randn(size_out, generator=g))

    def hub_config(self) -> dict:
        return dict(self.config)

    def compute(self, x, *, arg=None):
        return x @ self.weight + self.bias


register_module(Affine)


@pytest.fixture
def stocked(tmp_path):
    hub = Hub(tmp_path / "hub")
    hub.save(Affine(3, 3, seed=1), "rotate-a")
    hub.save(Affine(3, 3, seed=2), "rotate-b")
    hub.save(Affine(3, 5, seed=3), "widen")
    hub.save(Affine(5, 2, "logits", seed=4), "decide.5")
    hub.save(Affine(3, 2, "logits", seed=5), "decide.3")
    hub.save(Affine(3, 3, "mask", seed=6), "gate")  # a mask: an untyped Latent(3) input accepts it too
    return hub


PLANTED = "decide_5(widen(rotate_b(rotate_a(input0))))"


def test_the_planted_chain_is_found_and_fits_the_examples_best(stocked):
    found = stocked.compose(inputs=[Latent(3)], output=Logits(2), max_size=5)
    texts = [str(c) for c in found]
    assert PLANTED in texts
    assert len(texts) == len(set(texts)) and [c.program.size for c in found] == sorted(c.program.size for c in found)
    for c in found:
        assert "input0" in {k.name for k in c.program.unique_calls()}  # every composition uses the input
        assert c.program.name in ("decide_5", "decide_3")
    # the examples: answers of the planted chain; trying every composition on them finds it again
    x = torch.randn(64, 3)
    planted = next(c for c in found if str(c) == PLANTED)
    with torch.no_grad():
        y = planted.load()([planted.program] * 64, input0=x).argmax(1)
        errors = {}
        for c in found:
            out = c.load()([c.program] * 64, input0=x)
            errors[str(c)] = float((out.argmax(1) != y).float().mean())
    assert min(errors, key=errors.get) == PLANTED and errors[PLANTED] == 0.0
    assert sorted(errors.values())[1] > 0.05  # no other composition computes the same function
    assert planted.entries["decide_5"].name == "decide.5" and planted.inputs == {"input0": Latent(3)}


def test_size_bounds_types_and_named_inputs(stocked):
    assert stocked.compose(inputs=[Latent(3)], output=Logits(2), max_size=1) == []
    small = {str(c) for c in stocked.compose(inputs={"x": Latent(3)}, output=Logits(2), max_size=3)}
    assert small == {"decide_3(x)", "decide_3(rotate_a(x))", "decide_3(rotate_b(x))", "decide_3(gate(x))",
                     "decide_5(widen(x))"}
    loose = {str(c) for c in stocked.compose(inputs={"x": Latent(3)}, output=Logits(2), max_size=2,
                                               use_all_inputs=False)}
    assert loose == {"decide_3(x)"}  # a program needs a leaf: here only the input
    assert [str(c) for c in stocked.compose(inputs=[Latent(3)], output=Mask(), max_size=2)] == ["gate(input0)"]
    assert len(stocked.compose(inputs=[Latent(3)], output=Logits(2), max_size=5, limit=3)) == 3
    assert [str(c) for c in hub_api.compose(inputs=[Latent(3)], output=Logits(2), max_size=2,
                                            root=stocked.root)] == ["decide_3(input0)"]


def test_bad_arguments_raise_hub_errors(stocked):
    with pytest.raises(HubError, match="must be a data type"):
        stocked.compose(inputs=["Latent"], output=Logits(2))
    with pytest.raises(HubError, match="named by identifiers"):
        stocked.compose(inputs={"a-b": Latent(3)}, output=Logits(2))
    with pytest.raises(HubError, match="max_size must be an int >= 1"):
        stocked.compose(inputs=[Latent(3)], output=Logits(2), max_size=0)


def test_nmn_modules_compose_by_structure_and_a_policy_fills_in_the_arguments(tmp_path):
    hub = Hub(tmp_path / "hub")
    torch.manual_seed(0)
    model = nmn(True, image_size=32, hidden=8)
    for name in ("find", "relate", "count", "describe"):
        hub.save(model.library[name], f"typed-{name}")
    features = FeatureMap(model.stem.out_channels)
    found = hub.compose(output=Probs(26), context={"features": features}, max_size=3)
    assert {str(c) for c in found} == {"typed_count(typed_find)", "typed_describe(typed_find)",
                                       "typed_count(typed_relate(typed_find))",
                                       "typed_describe(typed_relate(typed_find))"}
    assert hub.compose(output=Probs(26), max_size=3) == []  # without the features, nothing can run
    composition = next(c for c in found if str(c) == "typed_count(typed_relate(typed_find))")
    assert isinstance(composition, Composition)
    library = composition.load()
    with pytest.raises(TypeMismatchError, match="needs an argument"):
        library.check(composition.program)
    # the loaded library's own space lists the arguments; a policy writes complete programs over it
    space = ProgramSpace.of(library, output=Probs(26), max_size=3)
    policy = ProgramPolicy(space=space, d_context=4)
    programs = policy(torch.randn(4, 4)).programs
    out = library(programs, features=torch.randn(4, features.size, 8, 8))
    assert out.shape == (4, 26)
    assert Program.parse("typed_count(typed_relate[left](typed_find[red]))") in space.enumerate()
