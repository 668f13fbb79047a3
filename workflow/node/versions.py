"""Installed versions of the training stack, checked against the versions the project pins.

A cluster image often carries its own transformers or peft, and a different minor version
can fail in obscure ways (peft 0.21.0 instead of 0.21.2 crashed LoRA with an AttributeError on
``LoraModel``). The job logs what is installed and warns, in its log and in an MLflow tag,
when a package is outside its pin. The pins are read from ``setup.cfg`` (the one place they
live), or from the installed distribution's metadata. No heavy imports.
"""

from __future__ import annotations

import configparser
import re
from importlib import metadata

from workflow.paths import PROJECT_ROOT

CHECKED = ("torch", "transformers", "deepspeed", "peft", "accelerate", "datasets")
DISTRIBUTION = "t5-workflow"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*((?:[<>=!~]=?[^,;\s]+\s*,?\s*)*)")


def installed(names=CHECKED + ("mlflow",)) -> dict[str, str]:
    """{name: version or "absent"}."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def pins() -> dict[str, str]:
    """{name: specifier} from setup.cfg's install_requires, else from the installed metadata."""
    cfg = PROJECT_ROOT / "setup.cfg"
    lines: list[str] = []
    if cfg.is_file():
        parser = configparser.ConfigParser()
        parser.read(cfg)
        lines = parser.get("options", "install_requires", fallback="").splitlines()
    else:
        try:
            lines = [r for r in metadata.requires(DISTRIBUTION) or [] if "extra ==" not in r]
        except metadata.PackageNotFoundError:
            pass
    return parse_requirements(lines)


def parse_requirements(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        match = _REQUIREMENT.match(line.split("#")[0])
        if match and match.group(2).strip():
            out[match.group(1).lower()] = match.group(2).replace(" ", "")
    return out


def mismatches(found: dict[str, str], pinned: dict[str, str], names=CHECKED) -> list[str]:
    """One line per checked package whose installed version is outside its pin (or absent)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    out = []
    for name in names:
        spec, version = pinned.get(name), found.get(name, "absent")
        if not spec:
            continue
        if version == "absent":
            out.append(f"{name} absent (pinned {spec})")
            continue
        try:
            ok = Version(version) in SpecifierSet(spec, prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            out.append(f"{name} {version} (pinned {spec})")
    return out
