"""The exception hierarchy of modnets.

Every error raised on bad user input is a :class:`ModnetsError`. Messages name the argument or the
object at fault, the value received and what would have been accepted. The command line turns any
``ModnetsError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "ModnetsError",
    "ConfigError",
    "DataUnavailableError",
    "HubError",
    "InterfaceError",
    "MissingDependencyError",
    "NumericalError",
    "ProgramSyntaxError",
    "ShapeError",
    "TypeMismatchError",
    "UnknownNameError",
]


class ModnetsError(Exception):
    """Base class of every error modnets raises on bad input or bad state."""


class ConfigError(ModnetsError, ValueError):
    """A configuration field holds a value outside its accepted range or set."""


class DataUnavailableError(ModnetsError, FileNotFoundError):
    """A data set is missing or malformed; the message says how to obtain it."""


class HubError(ModnetsError):
    """The module hub refused an operation: a bad entry name or version, or an entry that is corrupt,
    tampered with or not loadable (wrong hash, truncated file, unknown class, mismatching signature).

    The message names the entry (``name@version``), the file at fault and what was expected.
    """


class InterfaceError(ModnetsError, ValueError):
    """A tensor crossing a module interface violates the interface's data type.

    Raised by ``DataType.validate`` (and so by every typed module when
    ``modnets.check_interfaces(True)`` is on); the message names the module, the data type, the tensor's
    shape and what was wrong.

    Attributes:
        where: the interface (e.g. ``"module 'find[red]' output"``), or ``""``.
        nonfinite: whether the problem is a NaN or an infinity (training loops report those as
            :class:`NumericalError` with the step).
    """

    def __init__(self, message: str, *, where: str = "", nonfinite: bool = False):
        super().__init__(message)
        self.where, self.nonfinite = where, nonfinite

    def __reduce__(self):
        return _rebuild, (type(self), self.args, {"where": self.where, "nonfinite": self.nonfinite})


class MissingDependencyError(ModnetsError, ImportError):
    """An optional dependency that the requested feature needs is not installed; the message says how to
    install it (``pip install 'modnets[ray]'``, ...)."""


class NumericalError(ModnetsError, ArithmeticError):
    """A NaN or infinity appeared in training: in a loss, a gradient or an interface.

    Attributes:
        step: the training step (1-based) at which it appeared.
        module: the module (or model) concerned.
        quantity: what was not finite (``"loss term 'loss_task'"``, ``"gradient of w1"``, ...).
    """

    def __init__(self, message: str, *, step: int, module: str, quantity: str):
        super().__init__(message)
        self.step, self.module, self.quantity = step, module, quantity

    def __reduce__(self):  # keyword-only fields: pickle (worker processes, Ray) needs to be told
        return _rebuild, (type(self), self.args, {"step": self.step, "module": self.module, "quantity": self.quantity})


class ShapeError(ModnetsError, ValueError):
    """A tensor argument has the wrong number of dimensions or the wrong size."""


class TypeMismatchError(ModnetsError, TypeError):
    """A program connects an output to an input whose data type does not accept it."""


class UnknownNameError(ModnetsError, KeyError):
    """A name (module, argument, experiment, benchmark) is not known; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ProgramSyntaxError(ModnetsError, ValueError):
    """Program text that does not parse.

    Attributes:
        text: the text that was parsed.
        position: 0-based character offset of the problem.
    """

    def __init__(self, message: str, *, text: str, position: int):
        self.text = text
        self.position = position
        self.message = message
        caret = " " * position + "^"
        super().__init__(f"{message} at position {position}\n  {text}\n  {caret}")

    def __reduce__(self):
        return _rebuild, (type(self), (self.message,), {"text": self.text, "position": self.position})


def _rebuild(cls: type, args: tuple, fields: dict) -> Exception:
    """Unpickle an error whose constructor takes keyword-only fields."""
    return cls(*args, **fields)
