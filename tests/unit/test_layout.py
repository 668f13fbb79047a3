"""The package's layering: node modules import nothing from the launcher side, shared modules
import from neither side, and the README's reference and layout follow the code."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "workflow"
SHIMS = {"seq2seq.py", "clf.py", "shim.py"}  # `python -m workflow.seq2seq` / `workflow.clf`, what they run


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def offending(folder: Path, banned: tuple[str, ...], skip: set[str] = frozenset()) -> dict[str, list[str]]:
    out = {}
    for path in sorted(folder.glob("*.py")):
        if path.name not in skip:
            bad = sorted(m for m in imports(path) if m.startswith(banned))
            if bad:
                out[path.name] = bad
    return out


def test_node_imports_nothing_from_the_launcher():
    assert offending(PACKAGE / "node", ("workflow.launch",)) == {}


def test_shared_modules_import_neither_side():
    assert offending(PACKAGE, ("workflow.launch", "workflow.node"), skip=SHIMS) == {}


def test_the_layering_check_can_fail(tmp_path):
    (tmp_path / "bad.py").write_text("def f():\n    from workflow.launch.plan import make_plan\n")
    assert offending(tmp_path, ("workflow.launch",)) == {"bad.py": ["workflow.launch.plan",
                                                                     "workflow.launch.plan.make_plan"]}


def module_file(name: str, base: Path) -> Path | None:
    """The file of a ``workflow`` module under ``base``, or None (an imported name, not a module)."""
    path = base.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable(roots: list[str], base: Path = ROOT) -> dict[str, str]:
    """Every module (of the package and outside it) that importing ``roots`` can load, through
    imports at any depth, each with the package module that imports it: {module: importer}."""
    seen: dict[str, str] = {root: "<root>" for root in roots}
    todo = list(roots)
    while todo:
        current = todo.pop()
        parts = current.split(".")
        parents = [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        for name in parents + sorted(imports(module_file(current, base))):
            if "." in name and module_file(name, base) is None and module_file(name.rsplit(".", 1)[0], base):
                name = name.rsplit(".", 1)[0]  # from m import attribute: the module is m
            if name not in seen:
                seen[name] = current
                if module_file(name, base) is not None:
                    todo.append(name)
    return seen


def node_paths() -> list[str]:
    """The modules a job runs on a node: the job entry, SLURM's task, the shims' --job_file
    reader, and each task's recipe."""
    from workflow.tasks import TASKS

    return ["workflow.node.run", "workflow.node.slurm_task", "workflow.job_file",
            *(task.recipe.split(":")[0] for task in TASKS.values())]


def test_no_node_path_can_load_the_launcher():
    found = reachable(node_paths())
    assert {m: by for m, by in found.items() if m.startswith(("workflow.launch", "rich"))} == {}


def test_the_generic_job_entry_loads_no_submitit():
    found = reachable(["workflow.node.run"])
    assert "workflow.node.slurm_task" not in found and not [m for m in found if m.startswith("submitit")]


def test_the_reachability_check_follows_imports_into_functions(tmp_path):
    (tmp_path / "workflow/node").mkdir(parents=True)
    (tmp_path / "workflow/__init__.py").write_text("")
    (tmp_path / "workflow/node/__init__.py").write_text("")
    (tmp_path / "workflow/node/run.py").write_text("from workflow.shared import helper\n")
    (tmp_path / "workflow/shared.py").write_text("def helper():\n    import workflow.launch.console\n")
    found = reachable(["workflow.node.run"], tmp_path)
    assert found["workflow.launch.console"] == "workflow.shared" and found["workflow.shared"] == "workflow.node.run"


def test_readme_spec_reference_is_generated_from_the_fields():
    from workflow.spec import reference_markdown

    text = (ROOT / "README.md").read_text()
    found = text.split("<!-- spec-reference:start -->\n", 1)[1].split("\n<!-- spec-reference:end -->", 1)[0]
    assert found == reference_markdown(), "regenerate: python launch.py schema --markdown"


def test_the_layout_in_docs_internals_names_every_module():
    text = (ROOT / "docs/internals.md").read_text().split("## Layout", 1)[1]
    modules = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if m not in text and Path(m).name not in text]
    assert missing == []
