"""Learning programs from answers alone: REINFORCE, generalised EM and the top-K buffer over whole programs
(research note seed 000, "Other kinds of training"; Kirsch et al. 2018; priority-queue training, Abolafia
et al. 2018), with :class:`~modnets.compose.ProgramPolicy` as the router and a library as the modules.

Each training example n keeps a buffer A*_n of the K best distinct programs seen so far. A step on a
minibatch:

1. **Sample** S fresh programs Ã_n ~ p(a | x_n) per example (the policy's masked decoder: every sample
   type-checks).
2. **Execute** the buffer entries and the fresh samples together, in one batched library call.
3. **E-step**: score every candidate by ``log p(y_n | x_n, a) + log p(a | x_n)`` (``score="joint"``) or
   ``log p(y_n | x_n, a)`` (``"likelihood"``), with the current parameters, and keep the K best distinct
   programs; ties go to the buffer's entries, so a sample replaces an entry only when it scores strictly
   higher.
4. **M-step**: with A_n = A*_n (plus Ã_n when ``sample_gradient``), minimise
   ``(1/|B|) sum_n (1/|A_n|) [ sum_{a in A*_n} -(log p(y|x,a) + log p(a|x))
   + sum_{a in Ã_n} -(log p(y|x,a) + (R(a) - b) log p(a|x)) ]``:
   the modules fit every program of A_n by maximum likelihood (``module_programs="buffer"``: those of
   A*_n only, as EM's M-step), the policy fits the buffer's programs by
   maximum likelihood (behaviour cloning of its own best finds) and the fresh samples by REINFORCE with the
   reward R = log p(y|x,a) (or p(y|x,a)) and a moving-average baseline b; an entropy bonus
   ``-entropy * H`` (the per-step entropies summed along the samples) keeps the policy exploring.

Special cases: K = 0 (an empty buffer) is REINFORCE with S samples (:meth:`ProgramSearchConfig.reinforce`);
K = 1 without the samples' gradient is generalised EM with a per-example incumbent program
(:meth:`ProgramSearchConfig.em`): the E-step keeps the best of the incumbent and S samples by the joint
score, the M-step fits the executor on the incumbent and the policy by maximum likelihood of it.

Gold programs for some examples (``gold_key``): their log p(gold | x) is maximised (behaviour cloning) and
the modules fit log p(y | x, gold), next to the search on every example, so that a policy cloned from a
fraction of gold programs stays anchored to them while it learns from the answers of the rest.

The buffers are tensors of token ids (the policy's prefix-order coding), saved with the objective's
``state_dict``, so a resumed run continues with the same incumbents.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._checks import check_ints
from .._config import Config
from ..compose import Library, Program, ProgramPolicy
from ..errors import ConfigError, ShapeError
from ._buffer import best_distinct
from ._likelihood import LogLikelihood
from ._objective import Batch
from ._program_objective import ProgramObjective
from ._routing_objective import BASELINES, REWARDS, Baseline, make_reward

__all__ = ["MODULE_PROGRAMS", "PROGRAM_SCORES", "ProgramSearch", "ProgramSearchConfig"]

#: What the E-step ranks programs by (``ProgramSearchConfig.score``).
PROGRAM_SCORES = ("joint", "likelihood")
#: The programs the modules fit (``ProgramSearchConfig.module_programs``).
MODULE_PROGRAMS = ("all", "buffer")


@dataclass
class ProgramSearchConfig(Config):
    """Settings of :class:`ProgramSearch`; the defaults are the top-K buffer of the research note.

    Attributes:
        buffer_size: K, programs kept per example (0: no buffer, plain REINFORCE).
        samples: S, fresh programs sampled per example and step.
        sample_gradient: whether the fresh samples enter the gradient (REINFORCE terms for the policy,
            maximum likelihood for the modules); without it they only compete for a place in the buffer.
        score: what the E-step ranks programs by: ``"joint"`` (log p(y|x,a) + log p(a|x)) or
            ``"likelihood"`` (log p(y|x,a)).
        reward: ``"log_likelihood"`` or ``"likelihood"`` (of the fresh samples' REINFORCE terms).
        baseline: ``"moving_average"``, ``"learned"`` (linear in the policy's context) or ``"none"``.
        baseline_decay: decay of the moving-average baseline.
        entropy: weight of the entropy bonus on the fresh samples (0: none).
        module_programs: the programs the modules fit: ``"all"`` (the buffer's and, with ``sample_gradient``,
            the fresh samples, as the note's top-K buffer) or ``"buffer"`` (the buffer's only, as EM's M-step:
            the modules never fit the fresh samples' mostly wrong programs, which still train the policy).
    """

    buffer_size: int = 4
    samples: int = 4
    sample_gradient: bool = True
    score: str = "joint"
    reward: str = "log_likelihood"
    baseline: str = "moving_average"
    baseline_decay: float = 0.9
    entropy: float = 0.0
    module_programs: str = "all"

    def __post_init__(self) -> None:
        check_ints(self, "buffer_size", minimum=0)
        if self.module_programs not in MODULE_PROGRAMS:
            raise ConfigError(f"ProgramSearchConfig.module_programs must be one of {MODULE_PROGRAMS}, got "
                              f"{self.module_programs!r}")
        if self.module_programs == "buffer" and self.buffer_size == 0:
            raise ConfigError("module_programs='buffer' needs a buffer (buffer_size >= 1)")
        check_ints(self, "samples")
        if not isinstance(self.sample_gradient, bool):
            raise ConfigError(f"ProgramSearchConfig.sample_gradient must be True or False, got "
                              f"{self.sample_gradient!r}")
        if self.buffer_size == 0 and not self.sample_gradient:
            raise ConfigError("with buffer_size=0 the fresh samples are the only programs: set sample_gradient=True")
        for name, accepted in (("score", PROGRAM_SCORES), ("reward", REWARDS), ("baseline", BASELINES)):
            if getattr(self, name) not in accepted:
                raise ConfigError(f"ProgramSearchConfig.{name} must be one of {accepted}, got {getattr(self, name)!r}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ConfigError(f"ProgramSearchConfig.baseline_decay must be in [0, 1), got {self.baseline_decay!r}")
        if not isinstance(self.entropy, int | float) or isinstance(self.entropy, bool) or self.entropy < 0:
            raise ConfigError(f"ProgramSearchConfig.entropy must be a number >= 0, got {self.entropy!r}")

    @classmethod
    def reinforce(cls, *, samples: int = 4, entropy: float = 0.0, baseline: str = "moving_average",
                  baseline_decay: float = 0.9) -> ProgramSearchConfig:
        """REINFORCE over programs with S samples, a baseline and an entropy bonus: ``buffer_size=0``."""
        return cls(buffer_size=0, samples=samples, sample_gradient=True, baseline=baseline,
                   baseline_decay=baseline_decay, entropy=entropy)

    @classmethod
    def em(cls, *, samples: int = 4, score: str = "joint") -> ProgramSearchConfig:
        """Generalised EM over programs: one incumbent per example, replaced by the best of S samples when
        that scores strictly higher, and an M-step on the incumbents only: ``buffer_size=1``,
        ``sample_gradient=False``, no baseline."""
        return cls(buffer_size=1, samples=samples, sample_gradient=False, score=score, baseline="none")


class ProgramBuffer(nn.Module):
    """The per-example table of the K best programs seen, as prefix-order token ids.

    Args:
        dataset_size: N, the number of training examples (ids 0 .. N-1).
        size: K, programs kept per example.
        length: T, the most tokens of a program (the space's ``max_size``).

    Attributes:
        tokens: (N, K, T) long token ids, ``-1`` padded.
        valid: (N, K) bool, which slots hold a program.
        score: (N, K) their scores when last computed.
    """

    def __init__(self, *, dataset_size: int, size: int, length: int) -> None:
        super().__init__()
        self.dataset_size = dataset_size
        self.register_buffer("tokens", torch.full((dataset_size, size, length), -1, dtype=torch.long))
        self.register_buffer("valid", torch.zeros(dataset_size, size, dtype=torch.bool))
        self.register_buffer("score", torch.full((dataset_size, size), float("-inf")))

    def check_ids(self, index: object, batch: int) -> Tensor:
        """``index`` checked: (B,) long ids in [0, N)."""
        if not isinstance(index, Tensor) or index.dim() != 1 or index.shape[0] != batch:
            shape = tuple(index.shape) if isinstance(index, Tensor) else type(index).__name__
            raise ShapeError(f"batch['index'] must have shape (batch={batch},), got {shape}")
        if index.dtype != torch.long or (index.numel() and (int(index.min()) < 0
                                                            or int(index.max()) >= self.dataset_size)):
            raise ConfigError(f"batch['index'] must hold long ids in [0, dataset_size={self.dataset_size}), got "
                              f"dtype {index.dtype}, range [{int(index.min())}, {int(index.max())}]")
        return index


class ProgramSearch(ProgramObjective):
    """The top-K buffer over programs (see the module docstring): REINFORCE at K = 0, generalised EM at K = 1
    without the samples' gradient.

    Loss terms: ``loss_task`` (-log p(y|x,a), trains the library's modules and the context modules),
    ``loss_policy`` (-log p(a|x) of the buffer's programs, -(R - b) log p(a|x) of the fresh samples),
    ``loss_entropy`` (with an entropy bonus), ``loss_baseline`` (learned baseline), ``loss_clone`` and
    ``loss_gold`` (with ``gold_key``: -mean log p(gold | x) and -mean log p(y | x, gold) over the examples
    that have a gold program, 0 in a batch without one); logged: ``reward`` (the
    samples' mean log p(y|x,a)), ``H(A|X)`` (the samples' mean summed per-step entropy, in nats),
    ``program_size`` (their mean number of calls), ``buffer_score`` (the mean best score) and
    ``nll_trained`` (the task loss under the best buffer entry, or the samples).

    Args:
        policy: the program policy.
        library: the modules that run the programs.
        dataset_size: N; with a buffer, batches must carry ``"index"`` ids in [0, N).
        config: settings.
        gold_key: the batch entry of gold programs (a list of B programs, ``None`` where an example has none)
            to clone alongside the search; ``None``: answers only.
        library_context: as for :class:`~modnets.train.ProgramObjective`.
        encoder: as for :class:`~modnets.train.ProgramObjective`.
        context_key: as for :class:`~modnets.train.ProgramObjective`.
        target: as for :class:`~modnets.train.ProgramObjective`.
        likelihood: as for :class:`~modnets.train.ProgramObjective`.

    Example:
        >>> import torch
        >>> from modnets.compose import ProgramPolicy, ProgramSpace
        >>> from modnets.models import nmn
        >>> from modnets.types import Probs
        >>> model = nmn(image_size=16, channels=(8,), hidden=8)
        >>> space = ProgramSpace.of(model.library, output=Probs(26), max_size=3, max_depth=3,
        ...                         modules=("find", "relate", "exist", "count"))
        >>> search = ProgramSearch(policy=ProgramPolicy(space=space, d_context=4), library=model.library,
        ...                        library_context={"features": ("image", model.stem)}, dataset_size=10,
        ...                        config=ProgramSearchConfig(buffer_size=2, samples=3))
        >>> batch = {"question": torch.randn(5, 4), "image": torch.rand(5, 3, 16, 16),
        ...          "answer": torch.randint(0, 2, (5,)), "index": torch.arange(5)}
        >>> terms = search.loss(batch)
        >>> terms["loss"].backward()
        >>> int(search.buffer.valid[:5].sum(1).min()), int(search.buffer.valid[5:].sum())  # 2 kept each
        (2, 0)
    """

    def __init__(
        self,
        *,
        policy: ProgramPolicy,
        library: Library,
        dataset_size: int | None = None,
        config: ProgramSearchConfig | None = None,
        gold_key: str | None = None,
        library_context=None,
        encoder: nn.Module | None = None,
        context_key: str = "question",
        target: str = "answer",
        likelihood: LogLikelihood | None = None,
    ) -> None:
        super().__init__(policy=policy, library=library, library_context=library_context, encoder=encoder,
                         context_key=context_key, target=target, likelihood=likelihood)
        self.config = config or ProgramSearchConfig()
        if not isinstance(self.config, ProgramSearchConfig):
            raise ConfigError(f"config must be a ProgramSearchConfig, got {type(self.config).__name__}")
        k = self.config.buffer_size
        if k and (not isinstance(dataset_size, int) or isinstance(dataset_size, bool) or dataset_size < 1):
            raise ConfigError(f"a buffer (buffer_size={k}) keeps programs per example: dataset_size must be a "
                              f"positive int, got {dataset_size!r}")
        self.buffer = ProgramBuffer(dataset_size=dataset_size, size=k, length=policy.space.max_size) if k else None
        self.baseline = Baseline(self.config.baseline, decay=self.config.baseline_decay)
        self.gold_key = gold_key

    @property
    def batch_keys(self) -> dict[str, str]:
        keys = super().batch_keys
        if self.buffer is not None:
            keys["index"] = "(B,) long example ids in [0, dataset_size), for the per-example buffer"
        if self.gold_key is not None:
            keys[self.gold_key] = "B gold programs, None where an example has none"
        return keys

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        cfg = self.config
        y = self.answers(batch)
        b, s, k = y.shape[0], cfg.samples, cfg.buffer_size
        index = self.buffer.check_ids(batch.get("index"), b) if self.buffer is not None else None
        context = self.policy_context(batch)  # (B, d)
        library_context = self.library_context(batch)
        device = context.device
        arange = torch.arange(b, device=device)
        fresh = self.policy(context, samples=s, mode="sample")  # S * B rows, sample-major
        programs, examples = list(fresh.programs), [arange.repeat(s)]
        if self.buffer is not None:
            assert index is not None
            stored, valid = self.buffer.tokens[index], self.buffer.valid[index]  # (B, K, T), (B, K)
            held = valid.nonzero()  # (M, 2): (example, slot) of each entry
            stored_programs = self.policy.decode(stored[held[:, 0], held[:, 1]])
            programs += stored_programs
            examples.append(held[:, 0])
        n_searched = len(programs)
        gold_rows, gold_programs = self._gold(batch, b)
        programs += gold_programs  # run in the same batched call
        examples.append(torch.tensor(gold_rows, dtype=torch.long, device=device))
        ll = self.log_likelihood(programs, torch.cat(examples), library_context, y)
        ll, gold_ll = ll[:n_searched], ll[n_searched:]
        fresh_ll = ll[: s * b]
        terms: dict[str, Tensor] = {}
        task_rows, task_examples, policy_rows, example_rows = [], [], [], []
        per_example = torch.full((b,), float(s if cfg.sample_gradient else 0), device=device)
        fit_samples = cfg.sample_gradient and cfg.module_programs == "all"
        per_example_task = torch.full((b,), float(s if fit_samples else 0), device=device)
        trained_nll = -fresh_ll.mean()
        if self.buffer is not None:
            stored_lp = None
            if len(held):  # the buffer's programs scored by the current policy (teacher forcing)
                stored_lp = self.policy.log_prob(stored_programs, context.index_select(0, held[:, 0]))
            pick, ok = self._e_step(index, stored, valid, held, fresh, fresh_ll, ll[s * b:], stored_lp)
            # M-step on the updated buffer: the candidates' likelihoods and log-probabilities carry the gradient
            cand_ll = self._candidates(fresh_ll, ll[s * b:], held, b, k, s)
            cand_lp = self._candidates(fresh.log_prob, stored_lp, held, b, k, s)
            entry_ll, entry_lp = cand_ll.gather(1, pick), cand_lp.gather(1, pick)  # (B, K)
            mask = ok.to(entry_ll.dtype)
            per_example = per_example + ok.sum(1)
            per_example_task = per_example_task + ok.sum(1)
            task_rows.append((entry_ll * mask).flatten())
            task_examples.append(arange.repeat_interleave(k))
            policy_rows.append((entry_lp * mask).flatten())
            example_rows.append(arange.repeat_interleave(k))
            terms["buffer_score"] = self.buffer.score[index, 0].mean().detach()
            if bool(ok[:, 0].any()):
                trained_nll = -entry_ll[:, 0][ok[:, 0]].mean()  # the best entry: the incumbent, for K = 1
        if cfg.sample_gradient:
            reward = make_reward(fresh_ll, cfg.reward)
            advantage, baseline_terms = self.baseline.advantage(reward, context.detach())
            terms.update(baseline_terms)
            if fit_samples:
                task_rows.append(fresh_ll)
                task_examples.append(arange.repeat(s))
            policy_rows.append(advantage * fresh.log_prob)
            example_rows.append(arange.repeat(s))
        weight = 1.0 / (per_example.clamp_min(1)[torch.cat(example_rows)] * b)  # each example's programs: 1/|A_n|
        task_weight = 1.0 / (per_example_task.clamp_min(1)[torch.cat(task_examples)] * b)
        terms["loss_task"] = -(torch.cat(task_rows) * task_weight).sum()
        terms["loss_policy"] = -(torch.cat(policy_rows) * weight).sum()
        if self.gold_key is not None:
            zero = fresh_ll.new_zeros(())
            terms["loss_gold"] = -gold_ll.mean() if gold_rows else zero
            terms["loss_clone"] = zero
            if gold_rows:
                rows = torch.tensor(gold_rows, dtype=torch.long, device=device)
                terms["loss_clone"] = -self.policy.log_prob(gold_programs, context.index_select(0, rows)).mean()
        entropy = fresh.sequence_entropy()
        if cfg.entropy:
            terms["loss_entropy"] = -cfg.entropy * entropy.mean()
        terms["reward"] = fresh_ll.detach().mean()
        terms["H(A|X)"] = entropy.detach().mean()
        terms["program_size"] = (fresh.tokens >= 0).sum(1).float().mean()
        terms["nll_trained"] = trained_nll.detach()
        return self._finish(terms)

    def _gold(self, batch: Batch, b: int) -> tuple[list[int], list]:
        """The rows of the batch with a gold program, and those programs (none without ``gold_key``)."""
        if self.gold_key is None:
            return [], []
        gold = batch.get(self.gold_key)
        if gold is None or isinstance(gold, Program) or len(gold) != b:
            got = f"{len(gold)} entries" if hasattr(gold, "__len__") else type(gold).__name__
            raise ConfigError(f"ProgramSearch: batch[{self.gold_key!r}] must list B={b} gold programs (None where "
                              f"missing), got {got}")
        rows = [i for i, p in enumerate(gold) if p is not None]
        return rows, [gold[i] for i in rows]

    @staticmethod
    def _candidates(fresh: Tensor, stored: Tensor | None, held: Tensor, b: int, k: int, s: int) -> Tensor:
        """(B, K + S) per example: its buffer entries' values (0 in empty slots), then its fresh samples'."""
        out = fresh.new_zeros(b, k)
        if stored is not None and len(held):
            out = out.index_put((held[:, 0], held[:, 1]), stored.to(out.dtype))
        return torch.cat([out, fresh.view(s, b).t()], 1)

    @torch.no_grad()
    def _e_step(self, index: Tensor, stored: Tensor, valid: Tensor, held: Tensor, fresh, fresh_ll: Tensor,
                stored_ll: Tensor, stored_lp: Tensor | None) -> tuple[Tensor, Tensor]:
        """Keep each example's K best distinct programs among its buffer and its fresh samples.

        Returns:
            pick (B, K): the candidate (in [0, K + S)) each updated slot holds, and ok (B, K): which hold one.
        """
        assert self.buffer is not None
        b, k = valid.shape
        s = self.config.samples
        length = self.buffer.tokens.shape[-1]
        fresh_tokens = torch.full((s * b, length), -1, dtype=torch.long, device=index.device)
        fresh_tokens[:, : fresh.tokens.shape[1]] = fresh.tokens
        tokens = torch.cat([stored, fresh_tokens.view(s, b, length).transpose(0, 1)], 1)  # (B, K + S, T)
        ll = self._candidates(fresh_ll.detach(), stored_ll.detach(), held, b, k, s)
        lp = self._candidates(fresh.log_prob.detach(), None if stored_lp is None else stored_lp.detach(), held, b, k, s)
        score = (ll + lp if self.config.score == "joint" else ll).float()
        score = score.masked_fill(torch.cat([~valid, valid.new_zeros(b, s)], 1), float("-inf"))
        pick, best, ok = best_distinct(tokens[..., None], score, k)  # the buffer's entries come first: ties keep them
        self.buffer.tokens[index] = tokens.gather(1, pick[..., None].expand(-1, -1, length))
        self.buffer.score[index] = best
        self.buffer.valid[index] = ok
        return pick, ok
