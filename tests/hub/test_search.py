import itertools

import pytest

from modnets.errors import HubError
from modnets.hub import Hub, SignatureQuery
from modnets.models import nmn
from modnets.types import Bounded, FeatureMap, HeatMap, Image, Latent, Logits, Mask, Probs


@pytest.fixture(scope="module")
def stocked(tmp_path_factory):
    """A hub holding typed and untyped NMN modules and two stems of different widths."""
    hub = Hub(tmp_path_factory.mktemp("search") / "hub")
    typed, untyped = nmn(True, image_size=32, hidden=8), nmn(False, image_size=32, hidden=8, channels=(8, 16))
    for prefix, model in (("typed", typed), ("untyped", untyped)):
        for name in ("find", "relate", "count", "describe"):
            hub.save(model.library[name], f"{prefix}-{name}")
        hub.save(model.stem, f"{prefix}-stem")
    return hub


def names(entries):
    return sorted(e.name for e in entries)


@pytest.mark.parametrize(
    "query, expected",
    [
        # an untyped heat map accepts any bounded value, images included; a typed mask only masks
        ({"inputs": [Image(3)]}, ["typed-stem", "untyped-stem", "untyped-relate", "untyped-count", "untyped-describe"]),
        # FeatureMap is untyped (a Latent): it takes any value of a compatible size, a heat map too
        ({"inputs": [Image(3)], "output": FeatureMap(66)}, ["typed-stem", "untyped-relate"]),
        ({"inputs": [Image(3)], "output": FeatureMap(18)}, ["untyped-stem", "untyped-relate"]),
        ({"inputs": [], "output": Mask()}, ["typed-find"]),
        ({"inputs": [], "output": HeatMap()}, ["typed-find", "untyped-find"]),  # masks lie in [0, inf)
        ({"inputs": [Mask()], "output": Mask()}, ["typed-relate"]),
        ({"inputs": {"mask": Mask()}, "output": Mask()}, ["typed-relate"]),
        ({"inputs": {"map": Mask()}}, []),
        ({"inputs": [Mask()], "output": Probs()}, ["typed-count", "typed-describe"]),
        ({"inputs": [Mask()], "output": Probs(26), "context": {}}, ["typed-count"]),
        ({"output": Logits(26)}, ["untyped-count", "untyped-describe"]),
        ({"output": Latent()}, None),  # an untyped output accepts every value: everything matches
        ({"context": {"features": FeatureMap(18)}}, ["untyped-count", "untyped-find", "untyped-relate",
                                                     "untyped-stem", "untyped-describe", "typed-count",
                                                     "typed-stem"]),
        ({"inputs": [Mask(), Mask()]}, []),
        ({"output": Bounded(low=0.0, high=1.0)}, ["typed-find", "typed-relate"]),
        ({"inputs": [Bounded(low=0.0, high=1.0)]}, ["untyped-count", "untyped-describe", "untyped-relate"]),
        ({"inputs": [Bounded(low=0.0, high=2.0)]}, ["untyped-count", "untyped-describe", "untyped-relate"]),
        ({"inputs": [Bounded(low=-1.0, high=1.0)]}, []),  # outside [0, inf), and a plain range is no Mask
    ],
)
def test_search_finds_compatible_and_only_compatible_modules(stocked, query, expected):
    found = stocked.search(**query)
    every = stocked.entries()
    if expected is None:
        expected = [e.name for e in every]
    assert names(found) == sorted(expected)
    # the same answer as checking every stored signature by hand with DataType.accepts
    q = SignatureQuery(**query)
    assert names(found) == names(e for e in every if q.matches(e.signature))


def test_every_partial_query_agrees_with_accepts(stocked):
    every = stocked.entries()
    offers = [None, [], [Mask()], [HeatMap()], [Image(3)], [Latent()]]
    outputs = [None, Mask(), HeatMap(), Probs(26), Logits(26), FeatureMap(), Latent()]
    contexts = [None, {}, {"features": FeatureMap(66)}, {"features": FeatureMap(18)}]
    for inputs, output, context in itertools.product(offers, outputs, contexts):
        found = {e.ref for e in stocked.search(inputs=inputs, output=output, context=context)}
        for e in every:
            sig = e.signature
            fits = (
                (inputs is None or (len(inputs) == sig.arity
                                    and all(w.accepts(g) for (_, w), g in zip(sig.inputs, inputs, strict=True))))
                and (output is None or output.accepts(sig.output))
                and (context is None or all(n in context and w.accepts(context[n]) for n, w in sig.context))
            )
            assert (e.ref in found) == fits, (inputs, output, context, e.ref)


def test_search_looks_at_the_latest_versions_unless_asked(tmp_path):
    hub = Hub(tmp_path)
    typed, untyped = nmn(True, image_size=32, hidden=8), nmn(False, image_size=32, hidden=8)
    hub.save(typed.library["find"], "find")
    hub.save(untyped.library["find"], "find")  # the same name, now untyped
    assert [e.ref for e in hub.search(output=Mask())] == []
    assert [e.ref for e in hub.search(output=Mask(), all_versions=True)] == ["find@1"]
    assert [e.ref for e in hub.search(output=HeatMap())] == ["find@2"]


@pytest.mark.parametrize(
    "query, message",
    [
        ({"inputs": "Mask"}, "search inputs must be a list of data types"),
        ({"inputs": [Mask]}, "search inputs must be data types"),
        ({"output": "Mask"}, "search output must be data types"),
        ({"context": {"features": 3}}, "search context must be data types"),
        ({"context": [FeatureMap()]}, "search context must be a dict"),
    ],
)
def test_bad_queries_raise(stocked, query, message):
    with pytest.raises(HubError, match=message):
        stocked.search(**query)
