import importlib.util
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modnets.compose import Program, ProgramPolicy, ProgramSample, ProgramSpace
from modnets.errors import ConfigError, NumericalError, ShapeError, TypeMismatchError
from modnets.models import nmn_library
from modnets.types import Probs

_spec = importlib.util.spec_from_file_location("space_helpers", Path(__file__).with_name("test_space.py"))
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
toy_library = _helpers.toy_library


def policy_for(max_size=5, max_depth=None, d=6, seed=0, **kwargs):
    space = ProgramSpace.of(toy_library(), output=Probs(3), max_size=max_size, max_depth=max_depth)
    torch.manual_seed(seed)
    policy = ProgramPolicy(space=space, d_context=d, hidden=16, embed=8, **kwargs)
    with torch.no_grad():  # sharper than the initial, nearly uniform policy: a harder test of the masks
        policy.out.weight.mul_(6.0)
    return policy


def test_thousands_of_samples_all_type_check_within_the_bounds():
    lib = toy_library()
    for max_size, max_depth in ((3, None), (5, 3), (7, 4), (8, 2)):
        policy = policy_for(max_size, max_depth)
        depth = max_size if max_depth is None else max_depth
        drawn = policy(torch.randn(500, 6), samples=2, generator=torch.Generator().manual_seed(max_size))
        assert len(drawn.programs) == 1000
        for p in drawn.programs:
            assert isinstance(lib.check(p), Probs)
            assert p.size <= max_size and p.depth <= depth
        if max_size <= 5:  # the bounds bind: programs of every size the space holds occur
            assert {p.size for p in drawn.programs} == {p.size for p in policy.space.enumerate()}


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 9), st.integers(2, 6), st.integers(0, 10_000), st.sampled_from(["sample", "greedy"]))
def test_every_program_the_policy_writes_is_a_member(max_size, max_depth, seed, mode):
    policy = policy_for(max_size, max_depth, seed=seed % 7)
    drawn = policy(torch.randn(40, 6), mode=mode, generator=torch.Generator().manual_seed(seed))
    for p in drawn.programs:
        policy.space.check(p)
    # the tokens decode to the programs, and a program's log-probability is the sum of its steps'
    assert policy.decode(drawn.tokens) == drawn.programs
    assert torch.allclose(drawn.log_prob, drawn.step_log_prob.sum(1))
    ended = drawn.tokens < 0
    assert bool((drawn.step_log_prob[ended] == 0).all()) and bool((drawn.entropy[ended] == 0).all())
    assert bool((drawn.step_log_prob[~ended] <= 0).all())


def test_allowed_calls_are_exactly_the_prefixes_of_members():
    """At every step the calls with a finite probability are those that continue the prefix into a member."""
    policy = policy_for(5, 3)
    members = [tuple(policy.space.encode(p)) for p in policy.space.enumerate()]
    drawn = policy(torch.randn(30, 6), generator=torch.Generator().manual_seed(3))
    for row in drawn.tokens.tolist():
        seq = tuple(t for t in row if t >= 0)
        assert seq in members
    # scoring every member one step at a time: the step log-probabilities of a prefix's continuations sum to 1
    context = torch.randn(1, 6)
    scored = policy(context.expand(len(members), 6), programs=policy.space.enumerate())
    by_prefix: dict = {}
    for seq, steps in zip(members, scored.step_log_prob.tolist(), strict=True):
        for t, tok in enumerate(seq):
            by_prefix.setdefault(seq[:t], {})[tok] = steps[t]
    for continuations in by_prefix.values():
        assert sum(math.exp(v) for v in continuations.values()) == pytest.approx(1.0, abs=1e-5)


def test_sampling_and_scoring_agree_in_values_and_gradients():
    policy = policy_for(6, 4)
    context = torch.randn(7, 6, requires_grad=True)
    drawn = policy(context, samples=3)
    assert torch.allclose(drawn.log_prob, drawn.step_log_prob.sum(1))
    scored = policy(context.repeat(3, 1), programs=drawn.programs)
    assert torch.allclose(scored.log_prob, drawn.log_prob, atol=1e-5)
    assert torch.equal(scored.tokens, drawn.tokens[:, : scored.tokens.shape[1]])
    g_drawn = torch.autograd.grad(drawn.log_prob.sum(), [context, *policy.parameters()], allow_unused=True)
    g_scored = torch.autograd.grad(policy.log_prob(drawn.programs, context.repeat(3, 1)).sum(),
                                   [context, *policy.parameters()], allow_unused=True)
    for a, b in zip(g_drawn, g_scored, strict=True):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-5)


def test_the_policy_is_a_distribution_over_exactly_the_space():
    """The masked decoder puts all its mass on the members: the probabilities of all of them sum to 1, and the
    summed per-step entropies, averaged under the policy, are the entropy over whole programs."""
    policy = policy_for(4, 3)
    members = policy.space.enumerate()
    context = torch.randn(2, 6)
    for row in range(2):
        with torch.no_grad():
            scored = policy(context[row : row + 1].expand(len(members), 6), programs=members)
        p = scored.log_prob.exp()
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-4)
        exact_entropy = float(-(p * scored.log_prob).sum())
        assert float((p * scored.sequence_entropy()).sum()) == pytest.approx(exact_entropy, rel=1e-4)


def test_sampling_frequencies_match_the_probabilities():
    policy = policy_for(3, 3)
    members = policy.space.enumerate()
    context = torch.randn(1, 6)
    exact = policy(context.expand(len(members), 6), programs=members).log_prob.exp().detach()
    drawn = policy(context, samples=20_000, mode="sample", generator=torch.Generator().manual_seed(0))
    counts = torch.tensor([sum(1 for p in drawn.programs if p == m) for m in members], dtype=torch.float)
    assert float((counts / counts.sum() - exact).abs().sum()) / 2 < 0.02  # total variation


def test_greedy_is_beam_width_one_and_beam_search_finds_the_most_probable_programs():
    policy = policy_for(4, 3)
    members = policy.space.enumerate()
    context = torch.randn(3, 6)
    greedy = policy(context, mode="greedy")
    beam1 = policy.beam_search(context, width=1)
    assert beam1.programs == greedy.programs
    assert torch.allclose(beam1.log_prob, greedy.log_prob, atol=1e-5)
    width = 5
    beams = policy.beam_search(context, width=width)
    assert beams.log_prob.shape == (width * 3,)
    for n in range(3):
        exact = policy(context[n : n + 1].expand(len(members), 6), programs=members).log_prob
        top = exact.topk(width)
        found = [beams.programs[w * 3 + n] for w in range(width)]
        assert found == [members[i] for i in top.indices.tolist()]
        assert torch.allclose(beams.log_prob[n::3], top.values, atol=1e-5)


def test_beams_beyond_the_space_repeat_the_best_with_minus_infinity():
    space = ProgramSpace.of(toy_library(), output=Probs(3), max_size=2, modules=("leaf", "head"))
    policy = ProgramPolicy(space=space, d_context=3)
    beams = policy.beam_search(torch.randn(2, 3), width=3)  # only head(leaf[a]) and head(leaf[b]) exist
    assert set(beams.programs[:4]) == {Program.parse("head(leaf[a])"), Program.parse("head(leaf[b])")}
    assert beams.programs[4:] == beams.programs[:2]
    assert torch.isinf(beams.log_prob[4:]).all() and torch.isfinite(beams.log_prob[:4]).all()


def test_samples_are_sample_major_and_eval_mode_is_greedy():
    policy = policy_for(5, 3)
    context = torch.randn(4, 6)
    drawn = policy(context, samples=3, mode="greedy")
    assert drawn.programs[:4] == drawn.programs[4:8] == drawn.programs[8:]
    assert isinstance(drawn, ProgramSample) and drawn.tokens.shape[0] == 12
    policy.eval()
    assert policy(context).programs == policy(context, mode="greedy").programs
    policy.train()
    stochastic = {policy(context[:1], samples=50).programs for _ in range(1)}
    assert len(set(next(iter(stochastic)))) > 1


def test_save_and_load_give_the_same_programs_and_probabilities():
    policy = policy_for(6, 4, seed=1)
    again = policy_for(6, 4, seed=2)
    again.load_state_dict(policy.state_dict())
    context = torch.randn(5, 6)
    a, b = policy(context, mode="greedy"), again(context, mode="greedy")
    assert a.programs == b.programs and torch.allclose(a.log_prob, b.log_prob)


def test_on_the_nmn_library_every_sample_is_a_valid_layout():
    lib = nmn_library(grid=(4, 4))
    space = ProgramSpace.of(lib, output=Probs(26), max_size=7, max_depth=4)
    policy = ProgramPolicy(space=space, d_context=8)
    drawn = policy(torch.randn(256, 8), samples=8, generator=torch.Generator().manual_seed(0))
    for p in drawn.programs:
        assert isinstance(lib.check(p), Probs) and p.size <= 7 and p.depth <= 4
    assert len(set(drawn.programs)) > 1000  # a nearly uniform policy over a large space


def test_bad_calls_raise_typed_errors():
    policy = policy_for(4, 3)
    with pytest.raises(ShapeError, match="context must have shape"):
        policy(torch.randn(3, 5))
    with pytest.raises(ShapeError, match="one program per context row"):
        policy(torch.randn(3, 6), programs=[Program.parse("head(leaf[a])")])
    with pytest.raises(TypeMismatchError, match="outside the space's bounds"):
        policy.log_prob([Program.parse("pick(pick(pick(head(leaf[a]))))")], torch.randn(1, 6))
    with pytest.raises(ConfigError, match="mode must be None or one of"):
        policy(torch.randn(3, 6), mode="argmax")
    with pytest.raises(ConfigError, match="samples must be an int >= 1"):
        policy(torch.randn(3, 6), samples=0)
    with pytest.raises(ConfigError, match="d_context must be an int >= 1"):
        ProgramPolicy(space=policy.space, d_context=0)
    with torch.no_grad():
        policy.out.bias.fill_(math.nan)
    with pytest.raises(NumericalError, match="NaN"):
        policy(torch.randn(3, 6))
