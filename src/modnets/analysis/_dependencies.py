"""The taxonomy of inter-module dependencies (thesis 4.1, Table 4.1) and the training plan it implies.

For every module that must be trained, :func:`dependencies` decides

- **input**: *decoupled* when everything it reads comes from data sources or frozen (pretrained) modules,
  *dependent* when it reads the output of a module that is trained too;
- **supervision**: *direct* when a loss is computed on its output (through merges only), *indirect* when
  a loss is only reached through other modules, *none* when no loss is reached at all;
- **codependent gradient**: the trained modules whose outputs meet its own in a merge that is not an
  addition, average, concatenation or scalar weighting (a product, min, max ...).

and derives a :class:`~modnets.plan.TrainingPlan`: stages of modules that can train in parallel (a module
waits for the modules whose outputs it reads; codependent modules train together in one job), the
auxiliary data sets of cached outputs to write after each stage, and the modules that need a surrogate
gradient module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..plan import Assembly, AuxiliaryNeed, Stage, SurrogateNeed, TrainingPlan

__all__ = [
    "DependencyReport",
    "ModuleDependencies",
    "dependencies",
    "format_dependency_table",
    "format_training_plan",
]


@dataclass(frozen=True)
class ModuleDependencies:
    """One row of the dependency table.

    Attributes:
        module: the module's name.
        input: ``"decoupled"`` or ``"dependent"``.
        supervision: ``"direct"``, ``"indirect"`` or ``"none"``.
        depends_on: the trained modules whose outputs it reads (through merges and frozen modules).
        nearest_losses: the losses nearest to its output (the ones an SGM would bridge to when indirect).
        through: the modules between its output and its nearest losses (what an SGM replaces); empty when
            the supervision is direct.
        codependent_with: trained modules whose outputs meet its own in a codependent merge (itself when two
            of its own outputs meet, as in ``and(find[a], find[b])``); operands that come from the data or
            from frozen modules are fixed values and do not count.
        codependent_merges: those merges, as ``"name (op)"``.
    """

    module: str
    input: str
    supervision: str
    depends_on: tuple[str, ...]
    nearest_losses: tuple[str, ...]
    through: tuple[str, ...]
    codependent_with: tuple[str, ...]
    codependent_merges: tuple[str, ...]

    @property
    def codependent(self) -> bool:
        """Whether its gradient is codependent."""
        return bool(self.codependent_merges)


@dataclass(frozen=True)
class DependencyReport:
    """What :func:`dependencies` found.

    Attributes:
        assembly: the assembly's name.
        rows: one per trained module, in declaration order.
        plan: the training plan.
    """

    assembly: str
    rows: tuple[ModuleDependencies, ...]
    plan: TrainingPlan

    def row(self, module: str) -> ModuleDependencies:
        """The row of a module.

        Raises:
            KeyError: no row of that name.
        """
        for r in self.rows:
            if r.module == module:
                return r
        raise KeyError(module)

    def to_dict(self) -> dict:
        """A JSON-ready dictionary."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=2)


def dependencies(assembly: Assembly) -> DependencyReport:
    """Classify every trained module of an assembly (thesis 4.1) and derive a training plan.

    Args:
        assembly: sources, modules, merges and losses.

    Returns:
        the table rows (one per module that is not pretrained) and the plan.

    Example:
        >>> from modnets.plan import Assembly, Loss, ModuleSpec
        >>> a = Assembly(sources=("x",), modules=(ModuleSpec("enc", ("x",)), ModuleSpec("head", ("enc",))),
        ...              losses=(Loss("y", on="head"),))
        >>> report = dependencies(a)
        >>> report.row("enc").input, report.row("enc").supervision, report.row("head").input
        ('decoupled', 'indirect', 'dependent')
        >>> [s.modules for s in report.plan.stages], report.plan.auxiliary[0].consumers
        ([('enc',), ('head',)], ('head',))
    """
    trained = tuple(m.name for m in assembly.modules if not m.pretrained)
    rows = tuple(_classify(assembly, name) for name in trained)
    return DependencyReport(assembly.name, rows, _plan(assembly, rows))


def _trained_producers(assembly: Assembly, names: tuple[str, ...]) -> set[str]:
    """The trained modules that the given nodes' values come from, looking through merges and frozen modules."""
    found: set[str] = set()
    stack, seen = list(names), set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        kind = assembly.kind(name)
        if kind == "module" and not assembly.node(name).pretrained:
            found.add(name)
        elif kind != "source":
            stack.extend(assembly.inputs_of(name))
    return found


def _classify(assembly: Assembly, name: str) -> ModuleDependencies:
    order = {m: i for i, m in enumerate(assembly.module_names)}

    def ordered(names) -> tuple[str, ...]:
        return tuple(sorted(set(names), key=lambda n: (order.get(n, len(order)), n)))

    depends_on = ordered(_trained_producers(assembly, assembly.inputs_of(name)))

    # Walk downstream through merges only: losses met there are direct; codependent merges met there couple
    # this module's gradient to the other operands.
    direct: list[str] = []
    merges: list[str] = []
    partners: set[str] = set()
    frontier: list[str] = []  # modules reading this module's output (directly or through merges)
    for node in _through_merges(assembly, name):
        direct += [loss.name for loss in assembly.losses_on(node)]
        for consumer in assembly.consumers(node):
            if assembly.kind(consumer) == "module":
                frontier.append(consumer)
                continue
            merge = assembly.node(consumer)
            if merge.codependent:
                operands = list(merge.inputs)
                operands.remove(node)  # the other operands, this module's own other outputs included
                # Operands from data or frozen modules are fixed values: only trained ones couple training.
                coupled = _trained_producers(assembly, tuple(operands))
                if coupled:
                    merges.append(f"{merge.name} ({merge.op})")
                    partners |= coupled

    if direct:
        supervision, nearest, through = "direct", tuple(dict.fromkeys(direct)), ()
    else:
        nearest, through = _nearest_losses(assembly, frontier)
        supervision = "indirect" if nearest else "none"
    return ModuleDependencies(
        module=name,
        input="dependent" if depends_on else "decoupled",
        supervision=supervision,
        depends_on=depends_on,
        nearest_losses=nearest,
        through=ordered(through),
        codependent_with=ordered(partners),
        codependent_merges=tuple(dict.fromkeys(merges)),
    )


def _through_merges(assembly: Assembly, start: str) -> list[str]:
    """``start`` and every merge its output reaches through merges only (depth first, each once)."""
    stack, seen, order = [start], set(), []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        order.append(node)
        stack += [c for c in assembly.consumers(node) if assembly.kind(c) == "merge"]
    return order


def _nearest_losses(assembly: Assembly, frontier: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Breadth-first over module hops: the losses at the fewest modules downstream, and those modules."""
    level, seen, passed = list(dict.fromkeys(frontier)), set(), []
    while level:
        passed += level
        seen |= set(level)
        found: list[str] = []
        following: list[str] = []
        for module in level:
            for node in _through_merges(assembly, module):
                found += [loss.name for loss in assembly.losses_on(node)]
                following += [c for c in assembly.consumers(node) if assembly.kind(c) == "module" and c not in seen]
        if found:
            return tuple(dict.fromkeys(found)), tuple(passed)
        level = list(dict.fromkeys(following))
    return (), ()


def _plan(assembly: Assembly, rows: tuple[ModuleDependencies, ...]) -> TrainingPlan:
    by_name = {r.module: r for r in rows}
    trainable = [r.module for r in rows if r.supervision != "none"]
    # Jobs: codependent modules train jointly (union-find over the codependence relation).
    parent = {m: m for m in trainable}

    def root(m: str) -> str:
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    for m in trainable:
        for other in by_name[m].codependent_with:
            if other in parent:
                parent[root(other)] = root(m)
    # A job waits for the jobs whose outputs its modules read; a cycle between jobs merges them.
    while True:
        jobs: dict[str, list[str]] = {}
        for m in trainable:
            jobs.setdefault(root(m), []).append(m)
        needs = {j: {root(d) for m in ms for d in by_name[m].depends_on if d in parent} - {j}
                 for j, ms in jobs.items()}
        cycle = _find_cycle(needs)
        if not cycle:
            break
        for j in cycle[1:]:
            parent[root(j)] = root(cycle[0])
    level: dict[str, int] = {}

    def depth(j: str) -> int:
        if j not in level:
            level[j] = 1 + max((depth(d) for d in needs[j]), default=0)
        return level[j]

    for j in jobs:
        depth(j)
    stages = []
    for s in range(1, max(level.values(), default=0) + 1):
        stage_jobs = tuple(tuple(jobs[j]) for j in jobs if level[j] == s)
        stages.append(Stage(modules=tuple(m for job in stage_jobs for m in job), jobs=stage_jobs))

    auxiliary = []
    for producer in trainable:
        consumers = tuple(r.module for r in rows if producer in r.depends_on and r.module in parent
                          and root(r.module) != root(producer))
        if consumers:
            targets = tuple(dict.fromkeys(t for c in consumers for t in by_name[c].nearest_losses))
            auxiliary.append(AuxiliaryNeed(producer, consumers, targets, level[root(producer)]))
    surrogates = tuple(
        SurrogateNeed(r.module, r.nearest_losses, r.through) for r in rows if r.supervision == "indirect"
    )
    return TrainingPlan(
        stages=tuple(stages),
        auxiliary=tuple(auxiliary),
        surrogates=surrogates,
        frozen=tuple(m.name for m in assembly.modules if m.pretrained),
        unsupervised=tuple(r.module for r in rows if r.supervision == "none"),
    )


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of a small directed graph as a list of its nodes, or ``[]``."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        path.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                return path[path.index(d):]
            if d not in state and (found := visit(d)):
                return found
        state[n] = 2
        path.pop()
        return []

    for n in graph:
        if n not in state and (found := visit(n)):
            return found
    return []


# ------------------------------------------------------------------------------------------------ rendering
def format_dependency_table(report: DependencyReport, *, markdown: bool = False) -> str:
    """The dependency table, laid out like thesis Table 4.1 with a codependent-gradient column.

    Args:
        report: what :func:`dependencies` returned.
        markdown: a Markdown table (checkmarks) instead of plain aligned text (``x`` marks).

    Returns:
        the table as text, one line per module after the header.
    """
    mark = "✓" if markdown else "x"
    headers = ["module", "input: decoupled", "input: dependent", "supervision: direct", "supervision: indirect",
               "codependent gradient"]
    rows = []
    for r in report.rows:
        codep = f"with {', '.join(r.codependent_with)} in {', '.join(r.codependent_merges)}" if r.codependent else ""
        indirect = mark if r.supervision == "indirect" else ("none" if r.supervision == "none" else "")
        rows.append([r.module, mark if r.input == "decoupled" else "", mark if r.input == "dependent" else "",
                     mark if r.supervision == "direct" else "", indirect, codep])
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def format_training_plan(plan: TrainingPlan) -> str:
    """The plan as readable lines: each stage's jobs, the SGMs and auxiliary data sets they need.

    Args:
        plan: a :class:`~modnets.plan.TrainingPlan`.

    Returns:
        text, one stage per paragraph.
    """
    lines = []
    if plan.frozen:
        lines.append(f"frozen (pretrained, not trained): {', '.join(plan.frozen)}")
    for i, stage in enumerate(plan.stages, 1):
        parallel = f" ({len(stage.jobs)} jobs in parallel)" if len(stage.jobs) > 1 else ""
        lines.append(f"stage {i}: {', '.join(stage.modules)}{parallel}")
        for job in stage.jobs:
            joint = " (trained jointly: codependent gradient)" if len(job) > 1 else ""
            lines.append(f"  - {' + '.join(job)}{joint}")
            for m in job:
                cached = plan.cached_inputs(m)
                source = f"from the auxiliary data set of {', '.join(cached)}" if cached else "from the data"
                sgm = plan.surrogate_for(m)
                signal = (f"through an SGM to {', '.join(sgm.losses)} (standing in for {', '.join(sgm.replaces)})"
                          if sgm is not None else "on its own loss")
                lines.append(f"      {m}: {source}, {signal}")
        for aux in plan.auxiliary:
            if aux.after_stage == i:
                targets = f" with targets {', '.join(aux.targets)}" if aux.targets else ""
                lines.append(f"  then cache {aux.producer}'s outputs{targets} for {', '.join(aux.consumers)}")
    if plan.unsupervised:
        lines.append(f"no loss reaches {', '.join(plan.unsupervised)}: add a loss or an SGM target to train them")
    return "\n".join(lines)
