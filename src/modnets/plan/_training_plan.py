"""Training plans: how to train an assembly module by module (thesis 4.1).

A plan is what :func:`modnets.analysis.dependencies` derives from an :class:`~modnets.plan.Assembly` and
what :func:`modnets.train.run_stages` executes: **stages** that run in order, each made of **jobs** that
can train in parallel (one module, or a group of codependent modules trained jointly); the **auxiliary data
sets** of cached outputs to write after a stage, for the modules of later stages that read them; and the
modules that train through a **surrogate gradient module** because no loss sits on their output.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AuxiliaryNeed", "Stage", "SurrogateNeed", "TrainingPlan"]


@dataclass(frozen=True)
class Stage:
    """Modules that can train at the same time; the stages of a plan run in order.

    Attributes:
        modules: the modules trained in this stage, each of them able to train in parallel with the others
            except within a job of ``jobs``.
        jobs: independent training jobs: one module, or a group of codependent modules trained jointly.
    """

    modules: tuple[str, ...]
    jobs: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class AuxiliaryNeed:
    """An auxiliary data set to cache (thesis 4.1): a trained module's outputs with the sample ids and the
    nearest targets of the modules that read them.

    Attributes:
        producer: the module whose outputs are cached (once it is trained).
        consumers: the modules that train from the cache instead of running the producer.
        targets: the targets to store next to the outputs (the consumers' nearest losses).
        after_stage: the 1-based stage after which it can be written.
    """

    producer: str
    consumers: tuple[str, ...]
    targets: tuple[str, ...]
    after_stage: int


@dataclass(frozen=True)
class SurrogateNeed:
    """A module with indirect supervision, to be trained through a surrogate gradient module (thesis 4.2.3).

    Attributes:
        module: the module trained through the SGM.
        losses: the nearest losses, which the SGM connects the module's output to.
        replaces: the modules between the module's output and those losses, whose gradient the SGM stands in for.
    """

    module: str
    losses: tuple[str, ...]
    replaces: tuple[str, ...]


@dataclass(frozen=True)
class TrainingPlan:
    """How to train an assembly module by module.

    Attributes:
        stages: in order; the modules of a stage can train in parallel.
        auxiliary: auxiliary data sets to cache, producer -> consumers.
        surrogates: modules that need an SGM.
        frozen: pretrained modules, not trained.
        unsupervised: modules that no loss reaches; the plan cannot train them.

    Example:
        >>> plan = TrainingPlan(stages=(Stage(("enc",), (("enc",),)), Stage(("head",), (("head",),))),
        ...                     auxiliary=(AuxiliaryNeed("enc", ("head",), ("y",), after_stage=1),),
        ...                     surrogates=(SurrogateNeed("enc", ("y",), ("head",)),), frozen=(), unsupervised=())
        >>> plan.stage_of("head"), plan.cached_inputs("head"), plan.surrogate_for("enc").losses
        (2, ('enc',), ('y',))
    """

    stages: tuple[Stage, ...]
    auxiliary: tuple[AuxiliaryNeed, ...]
    surrogates: tuple[SurrogateNeed, ...]
    frozen: tuple[str, ...]
    unsupervised: tuple[str, ...]

    def stage_of(self, module: str) -> int:
        """The 1-based stage that trains a module (0 when no stage does)."""
        for i, stage in enumerate(self.stages, 1):
            if module in stage.modules:
                return i
        return 0

    def surrogate_for(self, module: str) -> SurrogateNeed | None:
        """The SGM need of a module, or ``None``."""
        return next((s for s in self.surrogates if s.module == module), None)

    def cached_inputs(self, module: str) -> tuple[str, ...]:
        """The producers whose auxiliary data sets a module trains from."""
        return tuple(a.producer for a in self.auxiliary if module in a.consumers)
