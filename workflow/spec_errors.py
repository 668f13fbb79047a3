"""The one translation of pydantic's validation errors into ``workflow.errors.Problem`` lists.

Each error becomes a Problem that names its key path, what was expected and what was given,
with a hint for unknown keys ("did you mean ..."). The spec's own validators raise errors of
type ``SPEC_ERROR`` whose context already names all three (``workflow.spec.fail``).
``workflow.errors`` itself stays free of pydantic: every module may import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from workflow.errors import Problem, short, suggest
from workflow.spec import SPEC_ERROR, JobSpec, block_type, field_paths

if TYPE_CHECKING:
    from pydantic import ValidationError


def problems_from(exc: ValidationError, file: str, model: type[BaseModel] = JobSpec,
                  noun: str = "key") -> list[Problem]:
    """Every error of ``exc`` as a Problem in ``file``, once each, in pydantic's order."""
    return list(dict.fromkeys(problem_from(err, file, model, noun) for err in exc.errors()))


def problem_from(err: dict, file: str, model: type[BaseModel] = JobSpec, noun: str = "key") -> Problem:
    loc = tuple(err.get("loc", ()))
    key = ".".join(str(p) for p in loc) or None
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        block = _block_at(loc[:-1], model)
        elsewhere = [p for p in field_paths(model) if p.rsplit(".", 1)[-1] == loc[-1]]
        hint = (f"did you mean '{elsewhere[0]}'?" if len(elsewhere) == 1
                else suggest(str(loc[-1]), block.model_fields if block else []))
        return Problem(file, key, f"a known {noun}", f"unknown key '{loc[-1]}'", hint)
    if kind == "missing":
        return Problem(file, key, "a value (this key is required)", "nothing")
    if kind == SPEC_ERROR:
        ctx = err["ctx"]
        return Problem(file, ".".join(x for x in (key, ctx["key"]) if x), ctx["expected"], ctx["given"])
    message = err.get("msg", "a valid value").removeprefix("Value error, ").removeprefix("Input should be ")
    given = short(err.get("input")) if kind != "value_error" or loc else None
    return Problem(file, key, message, given)


def _block_at(path: tuple, model: type[BaseModel]) -> type[BaseModel] | None:
    """The pydantic model found at a key path (ignoring list indices), or None."""
    for part in path:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        sub = block_type(info.annotation) if info else None
        if sub is None:
            return None
        model = sub
    return model
