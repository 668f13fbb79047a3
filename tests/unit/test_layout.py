"""The package's layering: node modules import nothing from the launcher side, shared modules
import from neither side, and the README's reference and layout follow the code."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "workflow"
SHIMS = {"seq2seq.py", "clf.py"}  # `python -m workflow.seq2seq` / `workflow.clf`: entry points, not shared code


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


def test_readme_spec_reference_is_generated_from_the_fields():
    from workflow.spec import reference_markdown

    text = (ROOT / "README.md").read_text()
    found = text.split("<!-- spec-reference:start -->\n", 1)[1].split("\n<!-- spec-reference:end -->", 1)[0]
    assert found == reference_markdown(), "regenerate: python launch.py schema --markdown"


def test_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text().split("## Layout", 1)[1]
    modules = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if m not in text and Path(m).name not in text]
    assert missing == []
