"""easy-vqa's vocabulary and a rule-based parser from its questions to NMN programs.

easy-vqa (PyPI ``easy-vqa``) asks about images of one coloured shape. Its questions name at most a
colour and a shape, ask for the colour or the shape, or ask whether one is (not) there. The parser maps
them to programs over this module vocabulary:

- ``find[v]``, ``v`` a colour, a shape, or ``object`` (any shape: "what color is *the shape*?");
- ``and(s1, s2)``: a question naming both a colour and a shape;
- ``describe[color](s)`` / ``describe[shape](s)``: the colour / shape of the object in ``s``;
- ``exist(s)``: yes / no;
- ``not(a)``: the negated yes / no answer ("is there *not* a red shape?", "is *no* circle present?").

Example:
    >>> str(parse_easy_vqa_question("does the image not contain a gray shape?"))
    'not(exist(find[gray]))'
    >>> str(parse_easy_vqa_question("what color is the shape?"))
    'describe[color](find[object])'
"""

from __future__ import annotations

import functools
import re

from ..compose._program import Program
from ..errors import ProgramSyntaxError

__all__ = [
    "EASY_VQA_ANSWERS",
    "EASY_VQA_ATTRIBUTES",
    "EASY_VQA_COLORS",
    "EASY_VQA_FIND_VALUES",
    "EASY_VQA_KINDS",
    "EASY_VQA_SHAPES",
    "easy_vqa_kind",
    "parse_easy_vqa_question",
]

EASY_VQA_COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
EASY_VQA_SHAPES = ("circle", "rectangle", "triangle")
#: Every answer, in a fixed order ("no", "yes" first, as in the CLEVR-like set); answers are indices into it.
EASY_VQA_ANSWERS = ("no", "yes", *EASY_VQA_COLORS, *EASY_VQA_SHAPES)
#: The arguments of ``find``: every colour, every shape, and ``object`` (whatever shape is there).
EASY_VQA_FIND_VALUES = (*EASY_VQA_COLORS, *EASY_VQA_SHAPES, "object")
#: The arguments of ``describe``.
EASY_VQA_ATTRIBUTES = ("color", "shape")
#: Question kinds: a yes / no question, or a question about the colour or the shape.
EASY_VQA_KINDS = ("yes/no", "color", "shape")

_WORD = re.compile(r"[a-z]+")
_OTHER = re.compile(r"[^a-z?\s]")  # anything but letters, spaces and the question mark
_VALUES = frozenset(EASY_VQA_COLORS + EASY_VQA_SHAPES)
_NEGATIONS = frozenset({"not", "no"})
# Words that carry no meaning for the program (articles, verbs, "image" as in "in the image").
_FILLER = frozenset({"a", "an", "the", "is", "are", "there", "does", "do", "of", "in", "image", "contain",
                     "present", "shape"})


def parse_easy_vqa_question(question: str) -> Program:
    """The program of an easy-vqa question.

    Rules: a question starting with "what" describes the colour when it says "color", else the shape
    when it says "shape"; one starting with "is" or "does" asks whether its object exists, negated when
    it says "not" or "no". The object is the colour and / or shape the question names (two: their
    ``and``), or ``find[object]`` when it names none.

    Args:
        question: the question text (case and punctuation are ignored).

    Returns:
        the program; its answer is an index into :data:`EASY_VQA_ANSWERS`.

    Raises:
        ProgramSyntaxError: the question does not follow the rules (an unknown word, a negated or
            yes / no-less "what" question, no attribute asked, two negations, two colours ...); the
            error holds the question and the position of the offending word.

    Example:
        >>> str(parse_easy_vqa_question("Is there a red circle in the image?"))
        'exist(and(find[red], find[circle]))'
    """
    if not isinstance(question, str):
        raise ProgramSyntaxError(f"a question must be a str, got {type(question).__name__}", text=repr(question),
                                 position=0)
    return _parse(question)


@functools.lru_cache(maxsize=4096)
def _parse(question: str) -> Program:
    # Cached: easy-vqa repeats a few hundred distinct questions, and programs are immutable.
    text = question.lower()
    if (bad := _OTHER.search(text)) is not None:
        raise ProgramSyntaxError("cannot parse question: unexpected character", text=question, position=bad.start())
    words = [(m.group(), m.start()) for m in _WORD.finditer(text)]
    if not words:
        raise ProgramSyntaxError("cannot parse question: it has no words", text=question, position=0)

    def fail(reason: str, position: int) -> ProgramSyntaxError:
        return ProgramSyntaxError(f"cannot parse question: {reason}", text=question, position=position)

    first, first_pos = words[0]
    if first not in ("what", "is", "does"):
        raise fail(f"a question must start with 'what', 'is' or 'does', got {first!r}", first_pos)
    values: list[tuple[str, int]] = []
    negations: list[int] = []
    for word, pos in words[1:]:
        if word in _VALUES:
            values.append((word, pos))
        elif word in _NEGATIONS:
            negations.append(pos)
        elif word not in _FILLER and word != "color":
            raise fail(f"unknown word {word!r}", pos)
    colours = [(w, p) for w, p in values if w in EASY_VQA_COLORS]
    shapes = [(w, p) for w, p in values if w in EASY_VQA_SHAPES]
    for named in (colours, shapes):
        if len(named) > 1:
            raise fail(f"it names two {'colours' if named is colours else 'shapes'}", named[1][1])
    target = _select([w for w, _ in colours + shapes])
    said = {w for w, _ in words[1:]}
    if first == "what":
        if negations:
            raise fail("a 'what' question cannot be negated", negations[0])
        if "color" in said:
            return Program("describe", "color", (target,))
        if "shape" in said:
            return Program("describe", "shape", (target,))
        raise fail("a 'what' question must ask for the color or the shape", first_pos)
    if "color" in said:
        pos = next(p for w, p in words if w == "color")
        raise fail("a yes/no question cannot ask for a color", pos)
    if len(negations) > 1:
        raise fail("more than one negation", negations[1])
    exist = Program("exist", None, (target,))
    return Program("not", None, (exist,)) if negations else exist


def _select(values: list[str]) -> Program:
    """``find`` of the named values (their ``and`` when there are two), ``find[object]`` for none."""
    if not values:
        return Program("find", "object")
    program = Program("find", values[0])
    for v in values[1:]:
        program = Program("and", None, (program, Program("find", v)))
    return program


def easy_vqa_kind(program: Program) -> int:
    """Index in :data:`EASY_VQA_KINDS` of the kind of question a parsed program asks."""
    if program.name == "describe":
        return EASY_VQA_KINDS.index(program.arg)
    return EASY_VQA_KINDS.index("yes/no")
