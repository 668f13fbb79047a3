"""``TORCH_CUDA_ARCH_LIST`` in the form DeepSpeed's JIT op builder can parse.

Hopper and Blackwell images often set arch-specific entries such as ``9.0a``, ``10.0a`` or
``12.0f``. PyTorch accepts them, but DeepSpeed 0.19 parses each minor version with ``int()``
and fails before training (``invalid literal for int() with base 10: '0a'``, DeepSpeed issue
7589). The ops DeepSpeed builds (FusedAdam, CPUAdam, the comm ops) use no arch-specific
instructions, so the plain ``X.Y`` entry builds the same kernels. Named entries (``Hopper``)
become their numbers. No heavy imports: the node calls this before deepspeed loads.
"""

from __future__ import annotations

import re

VARIABLE = "TORCH_CUDA_ARCH_LIST"
_ENTRY = re.compile(r"^(\d+)\.(\d+)[A-Za-z]*(\+PTX)?$")
# PyTorch's named architectures (torch.utils.cpp_extension._get_cuda_arch_flags).
_NAMED = {"kepler+tesla": ["3.7"], "kepler": ["3.5"], "maxwell+tegra": ["5.3"], "maxwell": ["5.0", "5.2"],
          "pascal": ["6.0", "6.1"], "volta+tegra": ["7.2"], "volta": ["7.0"], "turing": ["7.5"],
          "ampere+tegra": ["8.7"], "ampere": ["8.0", "8.6"], "ada": ["8.9"], "hopper": ["9.0"]}


def normalize(value: str) -> tuple[str, list[str]]:
    """(the list DeepSpeed accepts, the entries that were changed or dropped, in words).

    Separators (``;`` or spaces) become ``;``; duplicates go; the order is kept.
    An empty result means: unset the variable and let DeepSpeed probe the visible GPUs.
    """
    out: list[str] = []
    changes: list[str] = []
    for entry in value.replace(",", ";").replace(" ", ";").split(";"):
        entry = entry.strip()
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match:
            fixed = [f"{match.group(1)}.{match.group(2)}{match.group(3) or ''}"]
        elif entry.lower().split("+ptx")[0] in _NAMED:
            ptx = "+PTX" if entry.lower().endswith("+ptx") else ""
            fixed = [f"{cc}{ptx}" for cc in _NAMED[entry.lower().split("+ptx")[0]]]
        else:
            changes.append(f"{entry} (dropped: not an X.Y compute capability)")
            continue
        if fixed != [entry]:
            changes.append(f"{entry} -> {';'.join(fixed)}")
        out += [cc for cc in fixed if cc not in out]
    return ";".join(out), changes


def fix_environment(environ: dict) -> str | None:
    """Rewrite ``environ[TORCH_CUDA_ARCH_LIST]`` in place when DeepSpeed could not parse it.
    Returns a log line describing the change, or None when nothing changed."""
    value = environ.get(VARIABLE)
    if value is None:
        return None
    fixed, changes = normalize(value)
    if not changes:
        return None
    if fixed:
        environ[VARIABLE] = fixed
    else:
        del environ[VARIABLE]
    return (f"{VARIABLE}={value!r} changed to {fixed!r} for DeepSpeed's op builds: " + "; ".join(changes)
            if fixed else f"{VARIABLE}={value!r} unset (no usable entry): DeepSpeed probes the GPUs instead")
