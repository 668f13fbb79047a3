"""A command's arguments, checked against its signature before fire calls it.

fire calls a command first and complains about the arguments it could not use afterwards:
``run job.yaml --dryrun`` trained for minutes and then said ``Could not consume arg``, and
``sweep x.yaml --backend slurm --dryrun`` would have submitted. So every flag and positional is
checked here, before anything is read, written or submitted, and a word that is not the
command's gets a did-you-mean.

Also here: ``help_request`` (``sweep x.yaml --help`` shows the help instead of sweeping),
``wrapped`` (the help at 80 columns) and
``items`` (the one reading of a list-valued flag: ``a,b``, ``a b`` and ``[a, b]`` alike).
"""

from __future__ import annotations

import inspect
from typing import Iterable

from workflow.errors import Problem, WorkflowError, closest, suggest

HELP = ("--help", "-h")
SEPARATOR = "--"  # what follows it is fire's own flags (--help, --trace, --verbose, ...)


def help_request(argv: list[str]) -> list[str] | None:
    """fire's command line that shows ``argv[0]``'s help without calling it, when ``argv`` asks
    for help before fire's separator (fire itself would run the command, then show the help)."""
    words = argv[:argv.index(SEPARATOR)] if SEPARATOR in argv else argv
    if len(words) > 1 and any(w in HELP for w in words[1:]):
        return [argv[0], SEPARATOR, "--help"]
    return None


def wrapped(text: str, width: int = 80) -> str:
    """``text`` (fire's help: one line per paragraph) with each line wrapped at words to
    ``width``, its continuation lines indented as it is."""
    import textwrap

    out = []
    for line in text.splitlines():
        indent = line[:len(line) - len(line.lstrip())]
        out.extend(textwrap.wrap(line, width, initial_indent="", subsequent_indent=indent, break_long_words=False,
                                 break_on_hyphens=False) or [""])
    return "\n".join(out)


def check(command: str, signature: inspect.Signature, argv: list[str]) -> None:
    """Raise a WorkflowError naming the first word of ``argv`` (a command's arguments, after the
    command's name) that ``signature`` does not take: an unknown flag, a flag without its value,
    one positional too many, or a word where a whole number belongs. Overrides
    (``key.path=value``) are checked by the spec later."""
    params = {n: p for n, p in signature.parameters.items() if n != "self"}
    flags = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    positional = [n for n, p in params.items() if p.kind == p.POSITIONAL_OR_KEYWORD and not _is_bool(p)]
    takes_overrides = any(p.kind == p.VAR_POSITIONAL for p in params.values())
    values, loose = _words(command, argv, params, flags, takes_overrides)
    free = [n for n in positional if n not in values]
    if len(loose) > len(free) and not takes_overrides:
        extra = loose[len(free)]
        takes = ", ".join(n.upper() for n in positional) or "no positional arguments"
        raise _error(command, None, f"at most {len(positional)} positional argument(s) ({takes})",
                     repr(extra), _hint_for_extra(command, extra, flags))
    values.update(zip(free, loose))
    for name, value in values.items():
        if value is not None and str(params[name].annotation).startswith("int") and not _integer(value):
            raise _error(command, f"--{name}", "a whole number", repr(value), None)


def _words(command: str, argv: list[str], params: dict, flags: list[str],
           takes_overrides: bool) -> tuple[dict[str, str | None], list[str]]:
    """The flags' values by parameter (None: a boolean flag) and the positional words."""
    values, loose, i = {}, [], 0
    while i < len(argv) and argv[i] != SEPARATOR:
        word = argv[i]
        if word.startswith("-") and not _integer(word) and not _number(word):
            name, value = _flag(command, word, flags, takes_overrides)
            if value is None and not _is_bool(params[name]):
                if i + 1 >= len(argv) or argv[i + 1] == SEPARATOR:
                    raise _error(command, f"--{name}", "a value after it", "nothing", f"write --{name}=VALUE")
                i += 1
                value = argv[i]
            values[name] = value
        else:
            loose.append(word)
        i += 1
    return values, loose


def _flag(command: str, word: str, flags: list[str], takes_overrides: bool) -> tuple[str, str | None]:
    """The parameter a flag sets and the value it carries (``--name=value``), else None."""
    body, value = word.split("=", 1) if "=" in word else (word, None)
    if len(body) == 2 and body[1].isalpha():  # fire's one-letter form: -d for --dry_run
        starting = [n for n in flags if n.startswith(body[1])]
        if len(starting) == 1:
            return starting[0], value
    name = body.lstrip("-").replace("-", "_")
    if name in flags:
        return name, value
    if name.startswith("no") and name[2:] in flags and value is None:  # fire's --nodry_run
        return name[2:], "False"
    close = closest(name, flags)
    if takes_overrides and ("." in name or "=" in word):
        hint = f"an override is written without dashes: {word.lstrip('-')!r}"
    elif close:
        hint = f"did you mean '--{close}'?"
    else:
        hint = "its flags: " + (", ".join(f"--{n}" for n in flags) or "none")
    raise _error(command, word, f"a flag of '{command}'", repr(word), hint)


def _hint_for_extra(command: str, word: str, flags: list[str]) -> str:
    if "=" in word and word.split("=")[0] in flags:
        return f"to set a flag, write --{word}"
    if "=" in word:
        return f"'{command}' takes no key.path=value overrides"
    return f"see: python launch.py {command} --help"


def _is_bool(param: inspect.Parameter) -> bool:
    return isinstance(param.default, bool)


def _number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _integer(word: str) -> bool:
    return word.strip().lstrip("+-").isdigit()


def _error(command: str, key: str | None, expected: str, given: str, hint: str | None) -> WorkflowError:
    return WorkflowError(f"Bad arguments to '{command}'; nothing was run",
                         [Problem("<command line>", key, expected, given, hint)])


def items(value, flag: str, known: Iterable[str]) -> list[str]:
    """A list-valued flag's items, each one of ``known``: fire gives ``a,b`` as a tuple, ``[a, b]``
    as a list and ``"a b"`` as a string; all three mean the same here."""
    if value is None:
        return []
    parts = value if isinstance(value, (list, tuple)) else [value]
    words = [w.strip("[]'\" ") for part in parts for w in str(part).replace(",", " ").split()]
    words = [w for w in words if w]
    known = list(known)
    for word in words:
        if word not in known:
            raise WorkflowError(f"Unknown value for {flag}", [Problem(
                "<command line>", flag, "one of " + ", ".join(known), repr(word), suggest(word, known))])
    if not words:
        raise WorkflowError(f"Empty {flag}", [Problem("<command line>", flag, "one of " + ", ".join(known),
                                                      repr(value))])
    return words
