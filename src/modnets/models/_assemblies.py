"""Assembly descriptions of the presets, for the dependency analysis (``modnets analyze NAME``)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UnknownNameError
from ..plan import Assembly, Loss, Merge, ModuleSpec

__all__ = ["ASSEMBLIES", "example_assembly", "get_assembly", "nmn_assembly"]


def nmn_assembly(typed: bool = True, *, combine: bool = False, prior: bool = False) -> Assembly:
    """The NMN preset (:func:`~modnets.models.nmn`) as an assembly: what each module reads and where the loss is.

    The data give images, programs and answers. ``find`` is the image stem with the ``find[value]`` read-out
    (they train as one unit: the stem's features travel with the masks); ``describe[attribute]``,
    ``exist`` and ``count`` answer from a mask (``describe`` also reads the unit's features). Only the answer
    is supervised, so ``find`` learns by role, through the answering modules (thesis Table 4.1).

    Args:
        typed: typed interfaces (masks combined with min / max) or untyped ones (product / sum); only
            matters with ``combine``.
        combine: include ``and`` / ``or`` between ``find`` and the answering modules (CLEVR-like layouts);
            their merges are codependent except the untyped ``or`` (a sum).
        prior: add the question-prior branch of the thesis (``encoder``: the question's answer prior),
            merged with the answering modules' output by adding logits (typed, thesis Fig. 4.10) or by the
            original geometric average (untyped, Fig. 4.3).

    Returns:
        the assembly; :func:`~modnets.analysis.dependencies` gives its Table 4.1.

    Example:
        >>> from modnets.analysis import dependencies
        >>> report = dependencies(nmn_assembly())
        >>> report.row("find").supervision, report.row("describe").input
        ('indirect', 'dependent')
    """
    masks = ["find"]
    merges: list[Merge] = []
    if combine:
        merges += [Merge("and", ("find", "find"), "min" if typed else "product"),
                   Merge("or", ("find", "find"), "max" if typed else "add")]
        masks += ["and", "or"]
    modules = [
        ModuleSpec("find", ("image", "program"), description="image stem + find[value]: attention mask and features"),
        ModuleSpec("describe", (*masks, "program"), description="describe[attribute](mask): attribute answers"),
        ModuleSpec("exist", tuple(masks), description="exist(mask): yes / no"),
        ModuleSpec("count", tuple(masks), description="count(mask): a number"),
    ]
    answering = ("describe", "exist", "count")
    losses = [Loss("answer", on=m) for m in answering]
    if prior:
        modules.insert(0, ModuleSpec("encoder", ("program",), description="question encoder: an answer prior"))
        # One answering module per question (the layout's root), then the prior joins it.
        merges += [Merge("root", answering, "select"),
                   Merge("answer", ("encoder", "root"), "add" if typed else "geometric_mean")]
        losses = [Loss("answer", on="answer")]
    name = "nmn" + ("" if typed else "-untyped") + ("-combine" if combine else "") + ("-prior" if prior else "")
    return Assembly(sources=("image", "program"), modules=tuple(modules), merges=tuple(merges),
                    losses=tuple(losses), name=name)


def example_assembly() -> Assembly:
    """The four modules of thesis Figure 4.1: A and C read the data, B reads A, D reads the product of B and C.

    A and C have decoupled input; B and D dependent input; only D has direct supervision; B and C meet in
    a product, so their gradients are codependent.
    """
    return Assembly(
        sources=("x",),
        modules=(ModuleSpec("A", ("x",)), ModuleSpec("B", ("A",)), ModuleSpec("C", ("x",)), ModuleSpec("D", ("BC",))),
        merges=(Merge("BC", ("B", "C"), "product"),),
        losses=(Loss("y", on="D"),),
        name="thesis-figure-4.1",
    )


#: name -> (builder, one-line description)
ASSEMBLIES: dict[str, tuple[Callable[[], Assembly], str]] = {
    "nmn": (nmn_assembly, "the NMN preset: find (stem + find) feeds describe / exist / count (thesis Table 4.1)"),
    "nmn-prior": (lambda: nmn_assembly(prior=True), "the NMN preset with the question-prior branch (all of Table 4.1)"),
    "nmn-untyped-prior": (
        lambda: nmn_assembly(False, prior=True),
        "untyped NMN with the original geometric average of prior and answer (a codependent merge)",
    ),
    "nmn-combine": (
        lambda: nmn_assembly(combine=True),
        "typed NMN with and / or between find and the answers (min / max merges)",
    ),
    "figure-4.1": (example_assembly, "thesis Figure 4.1: four modules, a product merge of B and C"),
}


def get_assembly(name: str) -> Assembly:
    """The assembly of a preset name.

    Raises:
        UnknownNameError: unknown name; the message lists the known ones.
    """
    if name not in ASSEMBLIES:
        raise UnknownNameError(f"unknown assembly {name!r}; known assemblies: {', '.join(ASSEMBLIES)}")
    return ASSEMBLIES[name][0]()
