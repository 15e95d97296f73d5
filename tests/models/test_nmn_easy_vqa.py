import pytest
import torch

from modnets import Program
from modnets.data import EASY_VQA_ANSWERS
from modnets.errors import ConfigError, UnknownNameError
from modnets.models import Negate, easy_vqa_library, nmn_library
from modnets.types import Logits, Probs


def test_easy_vqa_library_holds_exactly_the_modules_its_programs_use():
    lib = easy_vqa_library(grid=(8, 8))
    assert set(lib.names) == {"find", "and", "or", "exist", "describe", "not"}
    assert lib.check(Program.parse("not(exist(and(find[red], find[circle])))")) == Probs(len(EASY_VQA_ANSWERS))
    assert lib.check(Program.parse("describe[color](find[object])")) == Probs(len(EASY_VQA_ANSWERS))
    with pytest.raises(UnknownNameError, match="size"):
        lib.check(Program.parse("describe[size](find[red])"))
    untyped = easy_vqa_library(False, grid=(8, 8))
    assert untyped.check(Program.parse("not(exist(find[red]))")) == Logits(len(EASY_VQA_ANSWERS))


@pytest.mark.parametrize("answer", [Probs(5), Logits(5)])
def test_negate_swaps_yes_and_no_and_keeps_the_rest(answer):
    neg = Negate(answer=answer, swap=(0, 1))
    x = torch.softmax(torch.randn(3, 5), dim=1) if isinstance(answer, Probs) else torch.randn(3, 5)
    out = neg(x)
    torch.testing.assert_close(out[:, [1, 0, 2, 3, 4]], x)
    torch.testing.assert_close(neg(out), x)  # not(not(a)) = a
    assert sum(p.numel() for p in neg.parameters()) == 0
    assert Negate(**neg.hub_config()).swap == (0, 1)


def test_library_options_are_checked():
    with pytest.raises(ConfigError, match="swap must be two distinct answer indices in 0..4, got \\(1, 1\\)"):
        Negate(answer=Probs(5), swap=(1, 1))
    with pytest.raises(ConfigError, match="measures must be a subset of \\('exist', 'count'\\), got \\('size',\\)"):
        nmn_library(measures=("size",))
    assert "relate" not in nmn_library(relations=()).names
