"""Training the control module by reward: the REINFORCE estimator, the rewards of hand-made episodes, learning."""

import io

import pytest
import torch

from modnets.agents import EpisodeRecorder
from modnets.data import OPERATIONS, SortingEnvironment, SortingInterface, sorting_episodes, sorting_potential
from modnets.errors import ConfigError, ShapeError
from modnets.models import sorting_agent, sorting_control, sorting_operators
from modnets.train import (
    AgentTrainingConfig,
    ControlReinforceConfig,
    Criterion,
    EpisodeBuffer,
    RunDir,
    episode_rewards,
    reinforce_episode_loss,
    returns_to_go,
    train_control_by_reward,
)


def reference_agent(control=None):
    return sorting_agent(operators=sorting_operators(reference=True),
                         control=control if control is not None else sorting_control(reference=True))


def actions(*names):
    return [OPERATIONS.index(n) for n in names]


# ----------------------------------------------------------------------------- the estimator


def test_reinforce_gradient_equals_the_hand_computed_score_function_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, requires_grad=True)  # (B, T, A)
    taken = torch.tensor([[1, 3, 0], [2, -1, -1]])  # the second episode stopped after one step
    adv = torch.tensor([[0.5, -1.0, 2.0], [1.5, 7.0, 7.0]])  # advantages after the stop must not count
    w = 0.1
    terms = reinforce_episode_loss(logits, taken, adv, entropy=w)
    terms.loss.backward()

    p = logits.detach().softmax(-1)
    log_p = p.log()
    h = -(p * log_p).sum(-1)  # (B, T)
    expected = torch.zeros_like(p)
    loss = 0.0
    for b, t in [(0, 0), (0, 1), (0, 2), (1, 0)]:
        a = int(taken[b, t])
        one_hot = torch.nn.functional.one_hot(torch.tensor(a), 4).float()
        # d/dz of -A log p_a is -A (onehot_a - p); d/dz of -w H is w p (log p + H); both divided by B = 2
        expected[b, t] = (-adv[b, t] * (one_hot - p[b, t]) + w * p[b, t] * (log_p[b, t] + h[b, t])) / 2
        loss += (-adv[b, t] * log_p[b, t, a] - w * h[b, t]) / 2
    torch.testing.assert_close(logits.grad, expected)
    torch.testing.assert_close(terms.loss, torch.as_tensor(loss, dtype=torch.float32))
    assert terms.entropy.item() == pytest.approx(float(h[0].sum() + h[1, 0]) / 2, rel=1e-5)


def test_reinforce_loss_refuses_mismatched_shapes():
    with pytest.raises(ShapeError, match="logits"):
        reinforce_episode_loss(torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2))


def test_returns_to_go_discounts_the_future():
    rewards = torch.tensor([[1.0, 0.0, 2.0, 4.0]])
    assert returns_to_go(rewards).tolist() == [[7.0, 6.0, 6.0, 4.0]]
    assert returns_to_go(rewards, 0.5).tolist() == [[1.0 + 0.0 + 0.5 + 0.5, 0.0 + 1.0 + 1.0, 2.0 + 2.0, 4.0]]


# ----------------------------------------------------------------------------- rewards of a hand-made episode


def hand_made_episode():
    """Three lists run with given actions through the reference operators, every state recorded:
    [3, 1, 2] sorted by selection sort; [1, 2] swapped out of order, then stopped; [2, 1] swapped and solved."""
    env = SortingEnvironment()
    env.reset(torch.tensor([[3, 1, 2], [1, 2, -1], [2, 1, -1]]))
    teacher = torch.full((3, 7), -1)
    teacher[0] = torch.tensor(actions("swap", "movb", "mova", "retb", "swap", "mova", "eop"))
    teacher[1, :3] = torch.tensor(actions("swap", "mova", "eop"))
    teacher[2, :3] = torch.tensor(actions("swap", "mova", "eop"))
    recorder = EpisodeRecorder(SortingInterface(env))
    trace = reference_agent().solve(recorder, teacher=teacher)
    return env, recorder, trace


def test_the_recorder_keeps_every_state_of_the_episode():
    env, recorder, trace = hand_made_episode()
    assert len(recorder.states) == trace.actions.shape[1] + 1 == 8
    assert recorder.states[0].values[0].tolist() == [3, 1, 2]
    assert recorder.states[1].values[0].tolist() == [1, 3, 2]
    assert recorder.states[-1].values.tolist() == [[1, 2, 3], [2, 1, -1], [1, 2, -1]]
    assert env.is_target().tolist() == [True, False, True] and trace.stopped.all()


def test_terminal_reward_is_one_at_the_last_step_of_a_solved_episode():
    env, recorder, trace = hand_made_episode()
    rewards = episode_rewards(recorder.states, trace, env)
    assert rewards.tolist() == [[0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0]]


def test_shaped_rewards_pay_for_the_inversions_each_step_removes():
    env, recorder, trace = hand_made_episode()
    rewards = episode_rewards(recorder.states, trace, env, potential=sorting_potential, shaping=1.0)
    third = 1 / 3
    expected = torch.tensor([
        [third, 0, 0, 0, third, 0, 1],  # each swap removes one of the 3 possible inversions; then solved
        [-1, 0, 0, 0, 0, 0, 0],  # the swap puts the only possible inversion in; never solved
        [1, 0, 1, 0, 0, 0, 0],  # the swap removes it; solved
    ])
    torch.testing.assert_close(rewards, expected)
    # potential-based: the shaping sums to the change of potential over the episode
    shaping = rewards.sum(1) - episode_rewards(recorder.states, trace, env).sum(1)
    torch.testing.assert_close(shaping, sorting_potential(recorder.states[-1]) - sorting_potential(recorder.states[0]))


def test_episode_rewards_need_one_state_per_step_and_one_more():
    env, recorder, trace = hand_made_episode()
    with pytest.raises(ShapeError, match="states"):
        episode_rewards(recorder.states[:-1], trace, env)


def test_a_lost_digit_never_pays():
    from modnets.data import SortingState

    zeros = torch.zeros(2, dtype=torch.long)
    state = SortingState(torch.tensor([[2, 1, 0], [2, -1, 0]]), torch.tensor([3, 3]), zeros, zeros + 1)
    phi = sorting_potential(state)
    assert phi[1] < phi[0] and phi[0] == -1.0  # 3 inversions of 3; a lost digit is worse than any order


# ----------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("field, value, message", [
    ("reward", "sorted", "reward must be one of"),
    ("entropy", -0.1, "entropy must be a number >= 0"),
    ("shaping", "big", "shaping must be a number >= 0"),
    ("baseline", "learned", "baseline must be one of"),
    ("baseline_decay", 1.0, "baseline_decay must be in"),
    ("discount", 0.0, "discount must be in"),
])
def test_config_names_the_bad_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        ControlReinforceConfig(**{field: value})


def test_config_round_trips_through_json():
    config = ControlReinforceConfig(training=AgentTrainingConfig(batch_size=8, max_size=3), reward="shaped")
    assert ControlReinforceConfig.from_dict(config.to_dict()) == config


def test_a_shaped_reward_needs_a_potential():
    with pytest.raises(ConfigError, match="potential"):
        train_control_by_reward(reference_agent(), episodes=sorting_episodes,
                                config=ControlReinforceConfig(reward="shaped"))


def test_select_must_return_one_action_per_example():
    env = SortingEnvironment()
    env.reset(torch.tensor([[2, 1], [1, 2]]))
    with pytest.raises(ShapeError, match="select"):
        reference_agent().solve(SortingInterface(env), select=lambda scores: scores.argmax(-1, keepdim=True))


# ----------------------------------------------------------------------------- learning


@pytest.mark.parametrize("buffer", [0, 32], ids=["reinforce", "priority_queue"])
def test_training_by_reward_on_lists_of_length_two_raises_the_solved_fraction(buffer):
    torch.manual_seed(0)
    agent = reference_agent(sorting_control(hidden=16))
    config = ControlReinforceConfig(
        training=AgentTrainingConfig(batch_size=64, lr=3e-3, max_size=2, max_steps=150, log_every=5,
                                     criterion=Criterion(max_saturation=None, patience=None)),
        entropy=0.05, buffer=buffer)
    result = train_control_by_reward(agent, episodes=sorting_episodes, config=config, run=RunDir(progress=False))
    solved = [row["solved"] for row in result.history]
    start, end = sum(solved[:4]) / 4, sum(solved[-4:]) / 4
    assert start < 0.2 and end > start + 0.3, solved
    if buffer:
        assert result.history[-1]["buffer_size"] == buffer and result.history[-1]["buffer_nll"] >= 0
    else:
        assert "buffer_size" not in result.history[-1]


def test_neural_operators_stay_fixed_and_trainable_afterwards():
    torch.manual_seed(0)
    agent = sorting_agent(hidden=4)
    operators = [p.clone() for p in agent.operators.parameters()]
    control = [p.clone() for p in agent.control.parameters()]
    config = ControlReinforceConfig(training=AgentTrainingConfig(batch_size=4, max_size=3, max_steps=2))
    result = train_control_by_reward(agent, episodes=sorting_episodes, config=config, run=RunDir(progress=False))
    assert result.steps == 2 and result.stop_reason == "step limit"
    assert all(torch.equal(a, b) for a, b in zip(operators, agent.operators.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(control, agent.control.parameters(), strict=True))
    assert all(p.requires_grad for p in agent.parameters())  # the operators were frozen during training only


# ----------------------------------------------------------------------------- the episode buffer


def sampled_run(agent, lists, seed=0):
    env = SortingEnvironment()
    env.reset(lists)
    recorder = EpisodeRecorder(SortingInterface(env))
    gen = torch.Generator().manual_seed(seed)

    def sample(scores):
        return torch.multinomial(scores.softmax(-1), 1, generator=gen).squeeze(1)

    return recorder, agent.solve(recorder, select=sample, reread=True, record=True)


def test_the_buffer_keeps_the_best_positive_episodes_ties_to_the_newer():
    torch.manual_seed(0)
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(hidden=8))
    _, trace = sampled_run(agent, torch.tensor([[2, 1, 3], [1, 2, 3], [3, 2, 1], [1, 3, 2]]))
    buffer = EpisodeBuffer(capacity=2)
    assert buffer.offer(trace, torch.tensor([0.5, 0.0, 2.0, -1.0])) == 2
    assert buffer.scores == [2.0, 0.5]
    assert buffer.offer(trace, torch.tensor([0.0, 0.5, 0.0, 0.0])) == 1  # ties with the kept 0.5: newer wins
    assert buffer.scores == [2.0, 0.5]
    [replayed] = buffer.replay()
    assert torch.equal(replayed.actions[1, : int(trace.steps[1])], trace.actions[1, : int(trace.steps[1])])
    assert buffer.offer(trace, torch.tensor([0.1, 0.0, 0.0, 0.0])) == 0  # not among the two best


def test_replaying_an_episode_gives_the_logits_the_policy_had_when_it_acted():
    torch.manual_seed(0)
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(hidden=8))
    _, trace = sampled_run(agent, torch.tensor([[2, 1, 3], [3, 1, 2], [1, 2, 0]]))
    buffer = EpisodeBuffer(capacity=8)
    assert buffer.offer(trace, torch.tensor([1.0, 3.0, 2.0])) == 3
    [replayed] = buffer.replay()
    order, steps = [1, 2, 0], replayed.actions.shape[1]  # best first
    assert torch.equal(replayed.actions, trace.actions[order][:, :steps])
    assert torch.equal(replayed.steps, trace.steps[order])
    reps = replayed.representations.map(lambda x: x[:, :steps])
    active = replayed.active
    with torch.no_grad():
        logits = agent.control.sequence(reps, replayed.previous, mask=active)
    torch.testing.assert_close(logits[active], trace.logits[order][:, :steps][active])


def test_the_buffer_state_round_trips_through_a_state_dict():
    torch.manual_seed(0)
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(hidden=8))
    _, trace = sampled_run(agent, torch.tensor([[2, 1], [1, 2], [2, 2]]))
    buffer = EpisodeBuffer(capacity=3)
    buffer.offer(trace, torch.tensor([1.0, 2.0, 0.5]))
    saved = io.BytesIO()
    torch.save(buffer.state_dict(), saved)  # as checkpoints are written and read
    saved.seek(0)
    restored = EpisodeBuffer(capacity=3)
    restored.load_state_dict(torch.load(saved, weights_only=True))
    assert restored.scores == buffer.scores
    [kept], [back] = buffer.replay(), restored.replay()
    assert torch.equal(kept.actions, back.actions) and torch.equal(kept.steps, back.steps)
    assert all(torch.equal(kept.representations[k], back.representations[k]) for k in kept.representations)


def test_the_buffer_refuses_bad_input():
    with pytest.raises(ConfigError, match="capacity"):
        EpisodeBuffer(capacity=0)
    with pytest.raises(ConfigError, match="empty"):
        EpisodeBuffer(capacity=2).replay()
    agent = reference_agent()
    env = SortingEnvironment()
    env.reset(torch.tensor([[2, 1]]))
    trace = agent.solve(SortingInterface(env))  # representations not recorded
    with pytest.raises(ShapeError, match="record=True"):
        EpisodeBuffer(capacity=2).offer(trace, torch.ones(1))
    _, recorded = sampled_run(agent, torch.tensor([[2, 1]]))
    with pytest.raises(ShapeError, match="one per episode"):
        EpisodeBuffer(capacity=2).offer(recorded, torch.ones(2))


def test_episodes_on_tapes_of_different_widths_replay_in_separate_batches():
    torch.manual_seed(0)
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(hidden=8))
    buffer = EpisodeBuffer(capacity=8)
    _, narrow = sampled_run(agent, torch.tensor([[2, 1], [1, 2]]))
    _, wide = sampled_run(agent, torch.tensor([[2, 1, 3]]))
    buffer.offer(narrow, torch.tensor([1.0, 1.0]))
    buffer.offer(wide, torch.tensor([1.0]))
    batches = buffer.replay()
    assert sorted(t.actions.shape[0] for t in batches) == [1, 2]
    assert {t.representations["digits"].shape[2] for t in batches} == {2, 3}


@pytest.mark.parametrize("field, value, message", [
    ("buffer", -1, "buffer must be an int >= 0"),
    ("buffer_weight", -1.0, "buffer_weight must be a number >= 0"),
    ("criterion_episodes", "best", "criterion_episodes must be"),
])
def test_buffer_and_criterion_settings_name_the_bad_field(field, value, message):
    with pytest.raises(ConfigError, match=message):
        ControlReinforceConfig(**{field: value})


def test_the_criterion_watches_greedy_episodes_on_the_steps_own_problems():
    torch.manual_seed(0)
    agent = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(hidden=8))
    before = sorting_agent(operators=sorting_operators(reference=True), control=sorting_control(hidden=8))
    before.control.load_state_dict(agent.control.state_dict())
    training = AgentTrainingConfig(batch_size=32, max_size=3, max_steps=1, log_every=1, seed=5,
                                   criterion=Criterion(max_saturation=None, patience=None))
    result = train_control_by_reward(agent, episodes=sorting_episodes, config=ControlReinforceConfig(training=training),
                                     run=RunDir(progress=False))
    recorder = EpisodeRecorder(sorting_episodes(32, training.min_size, torch.Generator().manual_seed(5)))
    greedy = before.solve(recorder, reread=True)
    expected = 1.0 - float((greedy.stopped & recorder.environment.is_target()).float().mean())
    assert result.history[0]["error"] == pytest.approx(expected)
