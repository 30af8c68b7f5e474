"""deploy/SECURITY.md stays true: every test it cites exists, and so does every module, file and name it points at.

A reference is a path of the repository (under api/, domain/, projections/, workers/, parvis/, deploy/ or tests/),
optionally followed by `::` and a dotted name: `tests/e2e/test_x.py::test_y` must define the test function
`test_y`, `api/auth.py::Tokens.verify` the class `Tokens` with a method `verify`. Files are read with `ast`, never
imported.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "deploy" / "SECURITY.md"

# Not preceded by a path or URL character, so that `https://host/api/...` or `../shared/api/...` is not read as one,
# nor by a double quote: `"parvis/fields"` is a string (an HKDF label), not a path.
REFERENCE = re.compile(
    r"(?<![\w./\"-])((?:api|domain|projections|workers|parvis|deploy|tests)/[\w./-]*\w)(?:::([A-Za-z_]\w*(?:\.\w+)*))?"
)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _names(node: ast.stmt) -> list[str]:
    """The names a statement defines: a function, a class, or the targets of an assignment."""
    if isinstance(node, _DEFINITIONS):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


@dataclass(frozen=True)
class Reference:
    path: str
    name: str | None

    def __str__(self) -> str:
        return f"{self.path}::{self.name}" if self.name else self.path

    @property
    def is_test(self) -> bool:
        return self.path.startswith("tests/") and self.name is not None


def references(text: str) -> list[Reference]:
    """Every path (and `::name`) the text cites, in order, without repeats."""
    found = [Reference(m.group(1), m.group(2)) for m in REFERENCE.finditer(text)]
    return list(dict.fromkeys(found))


def definition(tree: ast.Module, dotted: str) -> ast.AST | None:
    """The function, class or variable a dotted name designates in a module (`Class.method` looks inside the
    class)."""
    scope: list[ast.stmt] = tree.body
    node: ast.AST | None = None
    for part in dotted.split("."):
        node = next((n for n in scope if part in _names(n)), None)
        if node is None:
            return None
        scope = node.body if isinstance(node, ast.ClassDef) else []
    return node


def problems(text: str, root: Path = ROOT) -> list[str]:
    """What the text cites that does not exist: files, test functions, functions or classes."""
    out: list[str] = []
    trees: dict[str, ast.Module] = {}
    for ref in references(text):
        target = root / ref.path
        if not target.exists():
            out.append(f"{ref}: no such file or directory")
            continue
        if ref.name is None:
            continue
        if target.suffix != ".py" or not target.is_file():
            out.append(f"{ref}: only a Python file can define a name")
            continue
        if ref.path not in trees:
            trees[ref.path] = ast.parse(target.read_text(), filename=ref.path)
        node = definition(trees[ref.path], ref.name)
        if node is None:
            out.append(f"{ref}: {ref.path} defines no {ref.name}")
        elif ref.is_test and not (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        ):
            out.append(f"{ref}: not a test function")
    return out


def test_every_reference_of_the_security_document_exists() -> None:
    assert problems(DOC.read_text()) == []


def test_the_parser_sees_the_references_the_document_holds() -> None:
    # A change of notation would otherwise leave nothing to check.
    found = references(DOC.read_text())
    tests = [r for r in found if r.is_test]
    code = [r for r in found if not r.path.startswith("tests/")]
    assert len(tests) >= 80
    assert len(code) >= 60
    assert Reference("tests/e2e/test_abuse_limits.py", "test_forged_and_expired_access_tokens_are_refused") in tests
    assert Reference("api/auth.py", "Tokens.verify") in code


CONTROL = re.compile(r"^\| ([STRIDE]\d+) \|", re.MULTILINE)
GAP = re.compile(r"^\| (G\d+) \|", re.MULTILINE)
GAP_MENTION = re.compile(r"\bG\d+\b")


def unproved(text: str) -> list[str]:
    """Control rows (`| S1 | threat | control | code | tests |`) that cite no code, or neither a test nor a gap of
    section 7; and gaps mentioned but not listed."""
    gaps = set(GAP.findall(text))
    out = []
    for row in text.splitlines():
        control = CONTROL.match(row)
        if control is None:
            continue
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        code, proof = cells[-2], cells[-1]
        if not [r for r in references(code) if not r.path.startswith("tests/")]:
            out.append(f"{control.group(1)}: no code cited")
        if not [r for r in references(proof) if r.is_test] and not set(GAP_MENTION.findall(proof)) & gaps:
            out.append(f"{control.group(1)}: no test, and no gap of section 7 says so")
    out += [f"{gap}: mentioned, not listed" for gap in sorted(set(GAP_MENTION.findall(text)) - gaps)]
    return out


def test_every_control_names_its_code_and_a_test_or_its_gap() -> None:
    text = DOC.read_text()
    controls = CONTROL.findall(text)
    assert len(controls) >= 40
    assert len(controls) == len(set(controls)), "a control id is used twice"
    assert unproved(text) == []


def test_a_misspelt_or_missing_reference_is_named() -> None:
    text = """
    | S1 | misspelt | `api/auth.py::Tokens.verifi` | `tests/e2e/test_abuse_limits.py::test_forged_tokens_are_refused` |
    | S2 | gone | `api/nowhere.py` | `tests/e2e/test_gone.py::test_anything` |
    | S3 | a helper, not a test | `api/auth.py::Tokens` | `tests/e2e/test_abuse_limits.py::api_only` |
    | ok | right | `domain/roles.py::MATRIX` | `tests/unit/test_readme.py::test_the_readme_names_the_two_commands` |
    Not references: https://example.org/api/x.py, ../shared/api/contract.graphql, `"parvis/fields"`.
    """
    assert problems(text) == [
        "api/auth.py::Tokens.verifi: api/auth.py defines no Tokens.verifi",
        "tests/e2e/test_abuse_limits.py::test_forged_tokens_are_refused: "
        "tests/e2e/test_abuse_limits.py defines no test_forged_tokens_are_refused",
        "api/nowhere.py: no such file or directory",
        "tests/e2e/test_gone.py::test_anything: no such file or directory",
        "tests/e2e/test_abuse_limits.py::api_only: not a test function",
    ]


def test_a_control_without_code_or_without_a_test_or_gap_is_named() -> None:
    text = textwrap.dedent("""
    | S1 | no code | a control | in the API | `tests/unit/test_readme.py::test_the_readme_names_the_two_commands` |
    | S2 | no test | a control | `api/auth.py` | to be written |
    | S3 | a gap | a control | `api/auth.py` | none (G1) |
    | S4 | a gap that is not listed | a control | `api/auth.py` | none (G2) |
    | G1 | a known gap | its consequence | its mitigation |
    """)
    assert unproved(text) == [
        "S1: no code cited",
        "S2: no test, and no gap of section 7 says so",
        "S4: no test, and no gap of section 7 says so",
        "G2: mentioned, not listed",
    ]
