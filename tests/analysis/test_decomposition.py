import pytest
import torch

from modnets.analysis import decomposition_table, factor_alignment
from modnets.errors import ShapeError


def test_each_concept_always_won_by_one_module_is_a_full_decomposition():
    concepts = torch.arange(3).repeat(20)  # (60,)
    owner = torch.tensor([4, 0, 2])  # concept c is always won by module owner[c]
    t = decomposition_table(concepts, owner[concepts], n_concepts=3, n_modules=5)
    assert t.dominant.tolist() == [4, 0, 2]
    assert t.dominant_fraction.tolist() == [1.0, 1.0, 1.0]
    assert t.distinct_dominant == 3
    assert torch.equal(t.fractions, torch.eye(5)[owner])


def test_concepts_spread_evenly_over_the_modules_have_low_dominant_fractions():
    concepts = torch.arange(3).repeat_interleave(40)  # (120,)
    modules = torch.arange(4).repeat(30)  # every concept: 10 images for each of 4 modules
    t = decomposition_table(concepts, modules, n_concepts=3, n_modules=4)
    assert t.dominant_fraction.tolist() == [0.25, 0.25, 0.25]
    assert torch.allclose(t.fractions, torch.full((3, 4), 0.25))


def test_a_concept_without_images_has_a_zero_row_and_no_dominant_module():
    concepts, modules = torch.tensor([0, 0, 2, 2]), torch.tensor([1, 1, 1, 1])
    t = decomposition_table(concepts, modules, n_concepts=3, n_modules=2)
    assert t.fractions[1].tolist() == [0.0, 0.0] and t.dominant_fraction[1] == 0.0
    assert t.distinct_dominant == 1  # both concepts with images go to module 1


def test_mismatched_inputs_are_refused():
    with pytest.raises(ShapeError, match=r"concepts and modules must both be \(N,\)"):
        decomposition_table(torch.zeros(4, dtype=torch.long), torch.zeros(5, dtype=torch.long), n_concepts=1,
                            n_modules=1)


def test_factor_alignment_is_one_for_the_factor_the_module_follows_and_about_zero_for_others():
    g = torch.Generator().manual_seed(0)
    shape = torch.randint(0, 3, (3000,), generator=g)
    colour = torch.randint(0, 3, (3000,), generator=g)
    modules = torch.tensor([2, 0, 1])[shape]
    nmi = factor_alignment(torch.stack([shape, colour], dim=1), modules, ["shape", "colour"])
    assert nmi["shape"] == pytest.approx(1.0) and nmi["colour"] < 0.01
    with pytest.raises(ShapeError, match="factors must be"):
        factor_alignment(torch.stack([shape, colour], dim=1), modules, ["shape"])
