"""Credentials: found by environment variable name, kept out of everything this tool writes.

Jobs get credentials from the environment they inherit (local processes and SLURM's default
``--export=ALL``); nothing here writes a value to disk. Specs may not contain credential values
or URIs with passwords, so nothing derived from a spec (params, tags, manifests, sbatch scripts,
ctl commands) can carry one; log records and MLflow values are also redacted defensively.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

PATTERN = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|_KEY$|^KEY$|API_KEY|ACCESS_KEY|CREDENTIAL|^AWS_)", re.I)
NOT_SECRET = {"AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_CONFIG_FILE"}
MIN_LENGTH = 6
MASK = "***"


def is_secret_name(name: str) -> bool:
    return bool(PATTERN.search(name)) and name not in NOT_SECRET


def secret_values(environ: dict | None = None) -> list[str]:
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= MIN_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: list[str] | None = None) -> str:
    for value in secret_values() if values is None else values:
        text = text.replace(value, MASK)
    return re.sub(r"(://[^/:@\s]+:)[^@/\s]+@", rf"\1{MASK}@", text)


def find_in_spec(tree: Any, path: str = "", values: list[str] | None = None) -> list[tuple[str, str]]:
    """(key path, reason) for every credential value or password-bearing URI in a spec."""
    values = secret_values() if values is None else values
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += find_in_spec(value, f"{path}.{key}" if path else str(key), values)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += find_in_spec(value, f"{path}[{i}]", values)
    elif isinstance(tree, str):
        if any(v in tree for v in values):
            found.append((path, "the value of a credential environment variable"))
        elif "://" in tree and urlsplit(tree).password:
            found.append((path, "a URI with a password"))
    return found


def last_words(exc: BaseException, limit: int = 500) -> str:
    """The last line of what an exception says (a tool's stderr ends with its verdict), redacted."""
    text = str(exc).strip()
    return redact(text.splitlines()[-1] if text else repr(exc))[:limit]
