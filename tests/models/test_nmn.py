import pytest
import torch

import modnets
from modnets import Program
from modnets.data import ANSWERS, ClevrLikeConfig, collate_clevr_like, make_clevr_like
from modnets.errors import InterfaceError, ShapeError, TypeMismatchError, UnknownNameError
from modnets.models import nmn, nmn_library
from modnets.train import Classification, FitConfig, RunDir, fit
from modnets.types import HeatMap, Logits, Mask, Probs


@pytest.fixture(scope="module")
def data():
    return make_clevr_like(ClevrLikeConfig(n_examples=96, depths=(2, 3, 4, 5, 6), image_size=32, seed=3))


@pytest.mark.parametrize("typed", [True, False])
def test_variants_differ_only_in_interface_types(typed):
    lib = nmn_library(typed, grid=(8, 8))
    sig_find, sig_and = lib.signature("find"), lib.signature("and")
    assert sig_find.output == (Mask() if typed else HeatMap())
    assert sig_and.inputs[0][1] == sig_find.output
    assert lib.check(Program.parse("exist(find[red])")) == (Probs(len(ANSWERS)) if typed else Logits(len(ANSWERS)))
    a, b = torch.tensor([[[0.2]]]), torch.tensor([[[0.6]]])
    expected = 0.2 if typed else 0.12
    assert lib["and"](a, b).item() == pytest.approx(expected)


def test_typed_masks_stay_bounded_at_any_depth_untyped_do_not_have_to():
    torch.manual_seed(0)
    deep = "exist(" + "or(find[red], " * 12 + "find[cube]" + ")" * 12 + ")"
    prog = Program.parse(deep)
    for typed in (True, False):
        model = nmn(typed, image_size=32)
        torch.nn.init.constant_(model.library["find"].bias.weight, 0.5)  # non-empty maps for the untyped check
        feats = model.stem(torch.rand(2, 3, 32, 32))
        inner = prog.children[0]
        out = model.library([inner, inner], features=feats)
        if typed:
            assert 0 <= out.min() and out.max() <= 1
        else:
            assert out.max() > 1  # sums grow with depth


def test_nmn_batched_equals_per_example_on_real_layouts(data):
    torch.manual_seed(0)
    model = nmn(True, image_size=32)
    feats = model.stem(data.images[:24]).detach().requires_grad_(True)
    progs = data.programs[:24]
    out = model.library(progs, features=feats)
    ref = model.library.execute_each(progs, features=feats)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    g = torch.autograd.grad(out.square().sum(), feats)[0]
    g_ref = torch.autograd.grad(ref.square().sum(), feats)[0]
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-4)
    assert model.library.plan(progs).n_groups < model.library.plan(progs).n_calls / 3


def test_training_lowers_the_loss(data):
    torch.manual_seed(0)
    model = nmn(True, image_size=32)
    batch = collate_clevr_like([data[i] for i in range(len(data))])
    objective = Classification(model, target="answer")
    before = objective.loss(batch)["loss"].item()
    fit(objective, data, config=FitConfig(epochs=6, batch_size=32, lr=3e-3), collate=collate_clevr_like,
        run=RunDir(progress=False))
    after = objective.loss(batch)["loss"].item()
    assert after < before - 0.3


def test_bad_programs_and_nan_interfaces_are_reported(data):
    model = nmn(True, image_size=32)
    images = data.images[:2]
    with pytest.raises(UnknownNameError, match="unknown module 'fnd'"):
        model(images, [Program.parse("exist(fnd[red])")] * 2)
    with pytest.raises(UnknownNameError, match="has no argument 'pink'"):
        model(images, [Program.parse("exist(find[pink])")] * 2)
    with pytest.raises(TypeMismatchError, match=r"input 1 \('mask'\) of 'exist' expects Mask, got Probs\(26\)"):
        model(images, [Program.parse("exist(count(find[red]))")] * 2)
    with pytest.raises(ShapeError, match="2 images but 1 programs"):
        model(images, [Program.parse("exist(find[red])")])
    bad = images.clone()
    bad[0, :, :8, :8] = float("nan")
    with modnets.checking_interfaces():
        with pytest.raises(InterfaceError, match=r"module 'find' context 'features': FeatureMap\(66\) value .* NaN"):
            model(bad, [Program.parse("exist(find[red])")] * 2)


def test_relate_is_a_full_size_convolution_of_the_map_plus_a_feature_read_out():
    import torch.nn.functional as F

    from modnets.models import Relate

    torch.manual_seed(0)
    r = Relate(["left", "right"], channels=4, grid=(3, 4), mask=Mask())
    m, f = torch.rand(5, 3, 4), torch.randn(5, 4, 3, 4)
    arg = torch.tensor([0, 1, 1, 0, 1])
    h, w = 3, 4
    patches = F.unfold(F.pad(m.unsqueeze(1), (w - 1, w - 1, h - 1, h - 1)), (2 * h - 1, 2 * w - 1))
    conv = torch.einsum("bkn,bk->bn", patches, r.kernels[arg].flip(1)).view(-1, h, w)
    local = torch.einsum("bchw,bc->bhw", f, r.weight(arg)) + r.bias(arg)[:, :, None]
    out = r.compute(m, arg=arg, examples=torch.arange(5), shared=r.share(features=f), features=f)
    torch.testing.assert_close(out, conv + local)
    torch.testing.assert_close(r(m, arg=arg, features=f), torch.sigmoid(conv + local))
