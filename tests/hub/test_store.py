import json

import pytest
import torch
from torch import nn

from modnets import Program
from modnets.compose import Library
from modnets.data import ClevrLikeConfig, make_clevr_like
from modnets.errors import HubError
from modnets.hub import Hub, Manifest, load, register_module, save
from modnets.models import NMN
from modnets.modules import Signature, TypedModule
from modnets.types import Latent, Logits, Mask


@pytest.fixture(scope="module")
def scenes():
    return make_clevr_like(ClevrLikeConfig(n_examples=24, depths=(2, 3, 4), image_size=32, seed=5))


@pytest.mark.parametrize("name", ["find", "relate", "and", "exist", "describe"])
def test_round_trip_gives_bit_identical_outputs(hub, model, scenes, name):
    features = model.stem(scenes.images[:8])
    module = model.library[name]
    if name == "and":
        with pytest.raises(HubError, match="not registered"):  # parameter-free: nothing to store
            hub.save(module, name)
        return
    hub.save(module, name)
    loaded = hub.load(name)
    assert type(loaded) is type(module) and loaded.signature == module.signature
    for key, value in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    mask = torch.rand(8, 8, 8)
    inputs = (mask,) * module.signature.arity
    arg = None if module.arguments is None else torch.arange(8) % len(module.arguments)
    ctx = {n: features for n, _ in module.signature.context}
    assert torch.equal(loaded(*inputs, arg=arg, **ctx), module(*inputs, arg=arg, **ctx))


def test_round_trip_of_a_whole_assembly_gives_bit_identical_answers(hub, model, scenes):
    for name in ("find", "relate", "exist", "count", "describe"):
        hub.save(model.library[name], f"clevr-{name}")
    hub.save(model.stem, "clevr-stem")
    parts = {name: hub.load(f"clevr-{name}") for name in ("find", "relate", "exist", "count", "describe")}
    rebuilt = NMN(library=Library({**parts, "and": model.library["and"], "or": model.library["or"]}),
                  stem=hub.load("clevr-stem"))
    images, programs = scenes.images, scenes.programs
    assert torch.equal(rebuilt(images, programs), model(images, programs))


def test_load_leaves_the_random_stream_alone(hub, model):
    hub.save(model.stem, "stem")
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    hub.load("stem")
    assert torch.equal(torch.rand(3), expected)


def test_frozen_modules_keep_their_weights_and_statistics_inside_a_training_parent(hub, model):
    hub.save(model.stem, "stem")
    stem = hub.load("stem", frozen=True)
    before = {k: v.clone() for k, v in stem.state_dict().items()}
    parent = nn.Sequential(stem, nn.Conv2d(66, 4, 1))
    parent.train()
    assert not stem.training and all(not m.training for m in stem.modules())
    out = parent(torch.rand(4, 3, 32, 32))
    out.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in stem.parameters())
    for key, value in stem.state_dict().items():
        assert torch.equal(value, before[key]), key  # batch-norm running statistics untouched
    assert hub.load("stem").training is False and all(p.requires_grad for p in hub.load("stem").parameters())


def test_saving_a_name_again_makes_a_new_version_and_versions_are_immutable(hub, model, scramble):
    find = model.library["find"]
    first = hub.save(find, "find", metrics={"accuracy": 0.5})
    other = scramble(type(find)(**find.hub_config()), seed=1)
    second = hub.save(other, "find", metrics={"accuracy": 0.7})
    assert (first.version, second.version) == (1, 2)
    assert torch.equal(hub.load("find", 1).weight.weight, find.weight.weight)
    assert torch.equal(hub.load("find").weight.weight, other.weight.weight)  # latest
    assert [e.metrics["accuracy"] for e in hub.entries("find")] == [0.5, 0.7]
    assert hub.remove("find", 2) == ["find@2"]
    assert hub.save(other, "find").version == 3  # a removed number is never given again
    assert hub.versions("find") == [1, 3]
    with pytest.raises(HubError, match=r"no entry find@2 .* versions of 'find': 1, 3"):
        hub.load("find", 2)


def test_remove_needs_a_version_or_all_versions(hub, model):
    hub.save(model.stem, "stem")
    hub.save(model.stem, "stem")
    with pytest.raises(HubError, match="either a version or all_versions"):
        hub.remove("stem")
    assert hub.remove("stem", all_versions=True) == ["stem@1", "stem@2"]
    assert hub.entries() == [] and hub.names() == []
    with pytest.raises(HubError, match="no entry named 'stem'"):
        hub.load("stem")
    assert hub.save(model.stem, "stem").version == 3


def test_manifest_records_class_config_signature_provenance_and_hash(hub, model):
    hub.save(model.stem, "stem", seed=0)
    entry = hub.save(model.library["find"], "find", description="colours and shapes", data={"family": "exist"},
                     seed=3, metrics={"accuracy": 0.875}, parents=["stem@1"])
    folder = hub.root / "modules" / "find" / "1"
    assert sorted(p.name for p in folder.iterdir()) == ["module.json", "module.safetensors"]
    raw = json.loads((folder / "module.json").read_text())
    assert raw["class"] == "modnets.models.Find" and raw["config"]["channels"] == 66
    assert raw["config"]["mask"] == {"$type": "Mask", "size": None, "low": 0.0, "high": 1.0}
    assert raw["provenance"] == {"data": {"family": "exist"}, "seed": 3, "metrics": {"accuracy": 0.875},
                                 "parents": ["stem@1"]}
    manifest = hub.manifest("find")
    assert isinstance(manifest, Manifest) and manifest.signature == model.library["find"].signature
    assert Manifest.from_json(manifest.to_json()) == manifest
    import hashlib

    assert manifest.weights_sha256 == hashlib.sha256((folder / "module.safetensors").read_bytes()).hexdigest()
    assert entry.weights_sha256 == manifest.weights_sha256 and entry.ref == "find@1"


def test_provenance_is_checked(hub, model):
    with pytest.raises(HubError, match="parent stem@1: no entry stem@1"):
        hub.save(model.library["find"], "find", parents=["stem@1"])
    with pytest.raises(HubError, match="needs a version"):
        hub.save(model.library["find"], "find", parents=["stem"])
    with pytest.raises(HubError, match="metric 'accuracy' must be a finite number"):
        hub.save(model.library["find"], "find", metrics={"accuracy": float("nan")})
    with pytest.raises(HubError, match="plain JSON"):
        hub.save(model.library["find"], "find", data=object())
    assert hub.entries() == []


class Scale(TypedModule):
    """A user-defined module: registered, it can be stored like the built-in ones."""

    def __init__(self, size: int, *, init: float = 1.0) -> None:
        super().__init__(Signature(inputs={"x": Latent(size)}, output=Logits(size)))
        self.size = size
        self.scale = nn.Parameter(torch.full((size,), init))

    def hub_config(self) -> dict:
        return {"size": self.size}

    def compute(self, x, *, arg=None):
        return x * self.scale


class Unregistered(Scale):
    pass


def test_user_classes_are_stored_once_registered(hub):
    module = Scale(4, init=3.0)
    with pytest.raises(HubError, match="is not registered with the hub"):
        save(module, "scale", root=hub.root)
    register_module(Scale, name="tests.Scale")
    save(module, "scale", root=hub.root)
    x = torch.randn(2, 4)
    assert torch.equal(load("scale", root=hub.root)(x), module(x))
    with pytest.raises(HubError, match="is not registered"):  # subclasses are not covered
        hub.save(Unregistered(4), "sub")
    with pytest.raises(HubError, match="already registered for another class"):
        register_module(Unregistered, name="tests.Scale")


def test_a_config_that_does_not_rebuild_the_module_is_refused_at_save(hub):
    class Liar(Scale):
        def hub_config(self) -> dict:
            return {"size": self.size + 1}

    class Opaque(Scale):
        def hub_config(self) -> dict:
            return {"size": self.size, "init": torch.tensor(1.0)}

    register_module(Liar, name="tests.Liar")
    register_module(Opaque, name="tests.Opaque")
    with pytest.raises(HubError, match="config does not describe the module"):
        hub.save(Liar(4), "liar")
    with pytest.raises(HubError, match="tests.Opaque config 'init' is a Tensor, which cannot be stored"):
        hub.save(Opaque(4), "opaque")
    assert hub.entries() == []


def test_the_default_hub_follows_the_environment(tmp_path, monkeypatch, model):
    monkeypatch.setenv("MODNETS_HUB", str(tmp_path / "from-env"))
    assert Hub().root == tmp_path / "from-env"
    save(model.stem, "stem")
    assert (tmp_path / "from-env" / "modules" / "stem" / "1" / "module.json").is_file()
    monkeypatch.delenv("MODNETS_HUB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert Hub().root == tmp_path / "data" / "modnets" / "hub"


def test_reading_an_empty_or_missing_hub_creates_nothing(tmp_path):
    hub = Hub(tmp_path / "nothing")
    assert hub.entries() == [] and hub.search(output=Mask()) == [] and hub.verify().ok
    assert not (tmp_path / "nothing").exists()


def test_programs_still_type_check_with_loaded_modules(hub, model):
    hub.save(model.library["relate"], "relate")
    lib = Library({"find": model.library["find"], "relate": hub.load("relate"), "exist": model.library["exist"]})
    assert lib.check(Program.parse("exist(relate[left](find[red]))")) == model.library["exist"].signature.output
