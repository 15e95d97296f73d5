"""Errors cross process boundaries (worker processes, Ray tasks) intact."""

import pickle

from modnets.errors import ConfigError, NumericalError, ProgramSyntaxError


def test_errors_with_keyword_fields_survive_pickling():
    e = pickle.loads(pickle.dumps(NumericalError("step 3: loss is NaN", step=3, module="find", quantity="loss")))
    assert (str(e), e.step, e.module, e.quantity) == ("step 3: loss is NaN", 3, "find", "loss")
    original = ProgramSyntaxError("expected ']'", text="find[red", position=8)
    e = pickle.loads(pickle.dumps(original))
    assert str(e) == str(original) and (e.text, e.position) == ("find[red", 8)
    assert str(pickle.loads(pickle.dumps(ConfigError("bad lr")))) == "bad lr"
