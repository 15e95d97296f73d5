"""Training an agent's control module by reward (thesis 5.3): REINFORCE through the perception-action loop.

The operators stay fixed (trained from traces first, or hand-written); only the control module (digestor
and policy) learns, from rewards the environment gives, with no expert trace. A step:

1. **Roll out** a batch of fresh problems (:class:`EpisodeSource`) through the agent's own loop, the
   actions sampled from the policy's softmax, every R(t) written to the environment (and, with
   ``reread``, read back from it), every environment state recorded (:class:`~modnets.agents.EpisodeRecorder`).
2. **Reward** each step (:func:`episode_rewards`): ``"terminal"`` gives 1 at an example's last step when it
   stopped on the target state (for sorting: the list sorted, both pointers on its last digit) and 0
   otherwise; ``"shaped"`` adds ``shaping * (phi(s_{t+1}) - phi(s_t))`` at every step for a potential phi of
   the environment's state (for sorting, minus the normalised number of inversions: a swap that removes
   inversions earns their share). Potential-based shaping (Ng et al. 1999) sums to
   ``shaping * (phi(s_T) - phi(s_0))`` over an episode, so it changes which episodes are rewarded early,
   not which policy is best.
3. **Learn** by the score-function estimator (:func:`reinforce_episode_loss`)::

       loss = -(1/B) sum_b sum_t (G_bt - b) log pi(a_bt | h_bt)  -  entropy * (1/B) sum_b sum_t H(pi(. | h_bt))

   over the steps each example took, with the return-to-go ``G_bt = sum_{t' >= t} discount^(t'-t) r_bt'``
   and a moving-average baseline b of the returns (:class:`~modnets.train.Baseline`).
4. **Replay the best episodes** (``buffer=K > 0``, priority-queue training): the K highest-return episodes
   found so far (:class:`EpisodeBuffer`) are replayed by teacher forcing and their mean negative
   log-likelihood, ``-(1/K) sum_k sum_t log pi(a_kt | h_kt)``, weighted by ``buffer_weight``, joins the loss;
   then this step's episodes are offered to the buffer. ``buffer=0`` is plain REINFORCE.

Training follows the curriculum loop of the trace-based regimes (:func:`~modnets.train.train_control`):
levels of problem size, the thesis criterion on an error rate (an episode is wrong when it does not end
solved), a step or time limit; the criterion's tiny / stagnant tests watch the error rate, since the
REINFORCE loss has no fixed scale. By default the error is that of greedy (argmax) episodes on the step's
own problems, as the trace-trained controller's criterion counts its argmax selections: the sampled
episodes keep failing at the rate of the policy's exploration (its entropy bonus), so a criterion of 1 %
on them can hold a controller at a level it has mastered (``criterion_episodes="sampled"`` counts them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._config import Config
from ..agents import Agent, Environment, EpisodeRecorder, Interface, Trace
from ..errors import ConfigError, ShapeError
from ._agents import AgentTrainingConfig, TrainResult, _Terms, _train
from ._device import resolve_device
from ._episode_buffer import EpisodeBuffer
from ._routing_objective import Baseline
from ._run_dir import RunDir

__all__ = [
    "EPISODE_REWARDS",
    "ControlReinforceConfig",
    "EpisodeLoss",
    "EpisodeSource",
    "Potential",
    "episode_rewards",
    "reinforce_episode_loss",
    "returns_to_go",
    "train_control_by_reward",
]

#: The rewards :class:`ControlReinforceConfig` accepts.
EPISODE_REWARDS = ("terminal", "shaped")
#: The baselines :class:`ControlReinforceConfig` accepts.
_BASELINES = ("moving_average", "none")


class EpisodeSource(Protocol):
    """Fresh problems: ``episodes(batch_size, max_size, generator)`` resets an environment with
    ``batch_size`` problems of sizes up to ``max_size`` and returns an interface bound to it."""

    def __call__(self, batch_size: int, max_size: int, generator: torch.Generator) -> Interface: ...


class Potential(Protocol):
    """A potential of the environment's state for reward shaping: ``(batch,)`` float, higher is closer to a
    solution (e.g. minus the number of inversions of a list)."""

    def __call__(self, state: Any) -> Tensor: ...


@dataclass
class ControlReinforceConfig(Config):
    """Settings of :func:`train_control_by_reward`.

    Attributes:
        training: batch size (episodes per step), learning rate, curriculum, limits, criterion, seed, device.
        criterion_episodes: the episodes whose error the criterion watches: ``"greedy"`` (argmax actions on
            the step's problems, one more rollout without gradient) or ``"sampled"`` (the training episodes).
        reward: ``"terminal"`` (1 when an episode stops on the target state, else 0) or ``"shaped"`` (the
            terminal reward plus potential-based shaping; needs a potential).
        shaping: weight of the shaping rewards.
        entropy: weight of the entropy bonus (0: none).
        baseline: ``"moving_average"`` (of the returns) or ``"none"``.
        baseline_decay: decay of the moving average.
        discount: discount of the returns-to-go, in (0, 1].
        reread: read R(t) back from the environment after every step (the loop continues from the decoded
            state, as the environment holds it, rather than the operators' soft outputs).
        buffer: K, the number of best episodes kept and replayed every step (0: none, plain REINFORCE).
        buffer_weight: weight of the replayed episodes' negative log-likelihood.
    """

    training: AgentTrainingConfig = field(default_factory=AgentTrainingConfig)
    criterion_episodes: str = "greedy"
    reward: str = "terminal"
    shaping: float = 1.0
    entropy: float = 0.01
    baseline: str = "moving_average"
    baseline_decay: float = 0.9
    discount: float = 1.0
    reread: bool = True
    buffer: int = 0
    buffer_weight: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.training, dict):
            self.training = AgentTrainingConfig.from_dict(self.training)
        if not isinstance(self.training, AgentTrainingConfig):
            raise ConfigError(f"ControlReinforceConfig.training must be an AgentTrainingConfig, got "
                              f"{type(self.training).__name__}")
        if self.reward not in EPISODE_REWARDS:
            raise ConfigError(f"ControlReinforceConfig.reward must be one of {EPISODE_REWARDS}, got {self.reward!r}")
        if self.criterion_episodes not in ("greedy", "sampled"):
            raise ConfigError(f"ControlReinforceConfig.criterion_episodes must be 'greedy' or 'sampled', got "
                              f"{self.criterion_episodes!r}")
        if self.baseline not in _BASELINES:
            raise ConfigError(f"ControlReinforceConfig.baseline must be one of {_BASELINES}, got {self.baseline!r}")
        if isinstance(self.buffer, bool) or not isinstance(self.buffer, int) or self.buffer < 0:
            raise ConfigError(f"ControlReinforceConfig.buffer must be an int >= 0, got {self.buffer!r}")
        for name in ("shaping", "entropy", "buffer_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"ControlReinforceConfig.{name} must be a number >= 0, got {value!r}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"ControlReinforceConfig.baseline_decay must be in [0, 1), got {self.baseline_decay!r}")
        if not 0.0 < self.discount <= 1.0:
            raise ConfigError(f"ControlReinforceConfig.discount must be in (0, 1], got {self.discount!r}")


class EpisodeLoss(NamedTuple):
    """The REINFORCE terms of a batch of episodes.

    Attributes:
        loss: ``loss_policy - entropy_weight * entropy``, minimised.
        loss_policy: ``-(1/B) sum_b sum_t A_bt log pi(a_bt)`` over the steps taken.
        entropy: ``(1/B) sum_b sum_t H(pi_bt)`` over the steps taken (the entropy of the action sequence
            under the policy's per-step choices).
    """

    loss: Tensor
    loss_policy: Tensor
    entropy: Tensor


def reinforce_episode_loss(logits: Tensor, actions: Tensor, advantages: Tensor, *, entropy: float = 0.0) -> EpisodeLoss:
    """The score-function estimator over whole episodes, with an entropy bonus.

    Args:
        logits: ``(batch, steps, n_actions)`` the policy's scores at each step (differentiable).
        actions: ``(batch, steps)`` long actions taken, ``-1`` once an example has stopped.
        advantages: ``(batch, steps)`` return minus baseline of each step (no gradient flows through it).
        entropy: weight of the entropy bonus.

    Returns:
        the loss and its terms (see :class:`EpisodeLoss`).

    Raises:
        ShapeError: shapes that do not match.

    Example:
        >>> logits = torch.zeros(1, 2, 2, requires_grad=True)
        >>> terms = reinforce_episode_loss(logits, torch.tensor([[0, -1]]), torch.tensor([[1.0, 0.0]]))
        >>> round(float(terms.loss_policy.detach()), 4)  # -(1 * log 1/2)
        0.6931
    """
    if logits.dim() != 3 or actions.shape != logits.shape[:2] or advantages.shape != actions.shape:
        raise ShapeError(f"need logits (batch, steps, n_actions) and actions, advantages (batch, steps), got "
                         f"{tuple(logits.shape)}, {tuple(actions.shape)}, {tuple(advantages.shape)}")
    active = actions >= 0
    log_p = F.log_softmax(logits, dim=-1)  # (B, T, A)
    taken = log_p.gather(-1, actions.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    b = logits.shape[0]
    loss_policy = -(advantages.detach() * taken)[active].sum() / b
    h = -(log_p.exp() * log_p).sum(-1)  # (B, T)
    ent = h[active].sum() / b
    return EpisodeLoss(loss_policy - entropy * ent, loss_policy, ent)


def returns_to_go(rewards: Tensor, discount: float = 1.0) -> Tensor:
    """``G_t = sum_{t' >= t} discount^(t' - t) r_t'`` along the last dimension.

    Args:
        rewards: ``(batch, steps)``.
        discount: in (0, 1].

    Returns:
        ``(batch, steps)``.

    Example:
        >>> returns_to_go(torch.tensor([[1.0, 0.0, 2.0]]), 0.5)
        tensor([[1.5000, 1.0000, 2.0000]])
    """
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + discount * running
        out[:, t] = running
    return out


def episode_rewards(
    states: Sequence[Any],
    trace: Trace,
    environment: Environment,
    *,
    potential: Potential | None = None,
    shaping: float = 0.0,
) -> Tensor:
    """The reward of every step of a batch of episodes.

    An example's last step earns 1 when it took the stop action and the environment's final state is a
    target (``environment.is_target()``); with a ``potential`` phi, step t also earns
    ``shaping * (phi(s_{t+1}) - phi(s_t))``. Steps after an example stopped earn 0.

    Args:
        states: the environment's states s_0 ... s_T (an :class:`~modnets.agents.EpisodeRecorder`'s
            ``states``), T = ``trace.actions.shape[1]``.
        trace: the run (its ``actions``, ``steps`` and ``stopped``).
        environment: the environment, in its final state.
        potential: the shaping potential (``None``: the terminal reward only).
        shaping: its weight.

    Returns:
        ``(batch, steps)`` float rewards, on the trace's device.

    Raises:
        ShapeError: a number of states other than ``steps + 1``.
    """
    b, t = trace.actions.shape
    if len(states) != t + 1:
        raise ShapeError(f"need the {t + 1} states s_0 ... s_{t} of a {t}-step trace, got {len(states)}")
    device = trace.actions.device
    active = trace.active
    rewards = torch.zeros(b, t, device=device)
    if potential is not None and shaping:
        phi = torch.stack([potential(s).to(device=device, dtype=torch.float32) for s in states], dim=1)  # (B, T+1)
        rewards += shaping * (phi[:, 1:] - phi[:, :-1]) * active
    solved = (trace.stopped & environment.is_target().to(device)).float()  # (B,)
    last = (trace.steps - 1).clamp_min(0)
    if t:
        rewards[torch.arange(b, device=device), last] += solved
    return rewards


def _sampler(generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    """Draw one action per row from ``softmax(scores)``, with uniforms from the CPU ``generator`` (the same
    draws on every device)."""

    def select(scores: Tensor) -> Tensor:
        u = torch.rand(scores.shape[0], 1, generator=generator).to(scores.device)
        cdf = scores.detach().softmax(-1).cumsum(-1)
        return (cdf < u).sum(-1).clamp_max(scores.shape[-1] - 1)

    return select


@contextlib.contextmanager
def _frozen(modules: Sequence[nn.Module]) -> Iterator[None]:
    """The modules' parameters need no gradient inside the block (restored after)."""
    params = [p for m in modules for p in m.parameters()]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


class _Learner(nn.Module):
    """What the loop trains and checkpoints: the control module, the baseline's state and the buffer."""

    def __init__(self, control: nn.Module, baseline: Baseline, buffer: EpisodeBuffer | None) -> None:
        super().__init__()
        self.control = control
        self.baseline = baseline
        self.buffer = buffer


def _replay_loss(control: nn.Module, buffer: EpisodeBuffer, device: torch.device) -> Tensor:
    """``-(1/K) sum_k sum_t log pi(a_kt | h_kt)`` over the buffer's episodes, teacher-forced."""
    total = torch.zeros((), device=device)
    for trace in buffer.replay(device):
        steps, active = trace.actions.shape[1], trace.active
        reps = trace.representations.map(lambda x, steps=steps: x[:, :steps])  # R(0) ... R(T-1)
        logits = control.sequence(reps, trace.previous, mask=active)  # (n, T, A)
        total = total + F.cross_entropy(logits[active], trace.actions[active], reduction="sum")
    return total / len(buffer)


def train_control_by_reward(
    agent: Agent,
    *,
    episodes: EpisodeSource,
    config: ControlReinforceConfig,
    potential: Potential | None = None,
    run: RunDir | None = None,
    name: str = "control_reinforce",
) -> TrainResult:
    """Train an agent's control module by REINFORCE from the environment's rewards, the operators fixed.

    Each step rolls out ``config.training.batch_size`` fresh problems through the agent's loop with sampled
    actions, rewards every step (:func:`episode_rewards`) and takes one Adam step on the control module
    (see the module docstring). The history logs ``loss``, ``error`` (the criterion's: greedy or sampled
    episodes not solved), ``solved`` (sampled episodes solved), ``reward`` (mean episode return), ``entropy``
    (per step), ``episode_steps`` and ``grad_abs``; with a buffer also ``buffer_nll`` (the replayed episodes'
    mean negative log-likelihood) and ``buffer_size``.

    Args:
        agent: the agent; its control module is trained in place, its operators are not.
        episodes: fresh problems, as an interface to a reset environment.
        config: settings.
        potential: the shaping potential (needed when ``config.reward == "shaped"``).
        run: where logs and checkpoints go (``tensorboard/NAME``, ``checkpoints/NAME``), whether to resume
            and to show a progress bar (default ``RunDir()``: nothing written).
        name: the run's name in logs.

    Raises:
        ConfigError: a shaped reward without a potential.
    """
    if config.reward == "shaped" and potential is None:
        raise ConfigError("ControlReinforceConfig.reward='shaped' needs a potential of the environment's state")
    training = config.training
    device = resolve_device(training.device)
    agent.to(device)
    buffer = EpisodeBuffer(config.buffer) if config.buffer else None
    learner = _Learner(agent.control, Baseline(config.baseline, decay=config.baseline_decay), buffer)
    shaped = potential if config.reward == "shaped" else None

    def unsolved(recorder: EpisodeRecorder, trace: Trace) -> float:
        return 1.0 - float((trace.stopped & recorder.environment.is_target().to(trace.stopped.device)).float().mean())

    def step(size: int, gen: torch.Generator, device: torch.device) -> _Terms:
        problems = gen.get_state()
        recorder = EpisodeRecorder(episodes(training.batch_size, size, gen), device=device)
        trace = agent.solve(recorder, select=_sampler(gen), reread=config.reread, record=buffer is not None)
        rewards = episode_rewards(recorder.states, trace, recorder.environment, potential=shaped,
                                  shaping=config.shaping)
        returns = returns_to_go(rewards, config.discount)
        active = trace.active
        flat = returns[active]  # (n,) the return of every step taken
        advantage, _ = learner.baseline.advantage(flat, flat)  # x is read by a learned baseline only
        advantages = torch.zeros_like(returns).masked_scatter(active, advantage)
        terms = reinforce_episode_loss(trace.logits, trace.actions, advantages, entropy=config.entropy)
        loss, replayed = terms.loss, {}
        if buffer is not None:
            if len(buffer):
                nll = _replay_loss(agent.control, buffer, device)
                loss = loss + config.buffer_weight * nll
                replayed["buffer_nll"] = float(nll.detach())
            buffer.offer(trace, rewards.sum(1))
            replayed["buffer_size"] = float(len(buffer))
        with torch.no_grad():
            sampled_error = unsolved(recorder, trace)
            error = sampled_error
            if config.criterion_episodes == "greedy":
                again = EpisodeRecorder(episodes(training.batch_size, size, torch.Generator().set_state(problems)),
                                        device=device)
                error = unsolved(again, agent.solve(again, reread=config.reread))
            steps = float(trace.steps.float().mean())
            measures = {"solved": 1.0 - sampled_error, "reward": float(rewards.sum(1).mean()),
                        "entropy": float(terms.entropy) * training.batch_size / max(1.0, float(active.sum())),
                        "episode_steps": steps, **replayed}
        return _Terms(loss, error, None, measures, monitored=error)

    with _frozen(list(agent.operators)):
        return _train(name, learner, step, training, saturation=False, run=run)
