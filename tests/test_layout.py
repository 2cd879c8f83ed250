"""The code's layout: no import cycles, comments that cite nothing a clone cannot read, long modules say why."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("affiliate", "redirector")
PRODUCTION = [*(path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))), ROOT / "wsgi.py"]
PRODUCTION.append(ROOT / "config.py")
EVERYTHING = [*PRODUCTION, *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))]
LONG_MODULE_LINES = 400
# A long module explains itself with this phrase in its docstring, followed by the reason.
LONG_MODULE_REASON = "Why one module:"
# Check numbers, the private checks file and issue numbers: lists a clone of the repository cannot look up.
PRIVATE_CITATION = re.compile(r"\bC\d{1,2}\b|CHECKS\.md|\b[Ii]ssues? #?\d+")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules a module imports, wherever the import statement stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for neighbour in graph[node]:
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def production_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PRODUCTION}
    known = set(modules)
    graph = {name: imported_modules(path, known) for name, path in modules.items()}
    # Importing a submodule runs its package's __init__ first; that edge is Python's, not the author's.
    for name, targets in graph.items():
        targets.difference_update(parent for parent in list(targets) if name.startswith(parent + "."))
    return graph


def test_no_module_imports_one_that_imports_it_back():
    assert cycles(production_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def comments_and_docstrings(path: Path) -> list[tuple[int, str]]:
    source = path.read_text()
    found = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                found.append((node.body[0].lineno, docstring))
    return found


def test_no_comment_cites_a_check_number_or_an_issue():
    citations = [
        f"{path.relative_to(ROOT)}:{line}: {text.strip()[:100]}"
        for path in EVERYTHING
        for line, text in comments_and_docstrings(path)
        if PRIVATE_CITATION.search(text)
    ]
    assert citations == []


def test_the_citation_pattern_catches_what_it_should():
    cited = ["Staff never stay signed in (CHECKS.md, C17).", "Benchmark (issue 4).", "see C5"]
    fine = ["Cents in CAD, USD.", "The 0005 migration", "an issue with the key", "HMAC-SHA256 over C-strings"]
    assert all(PRIVATE_CITATION.search(text) for text in cited)
    assert not any(PRIVATE_CITATION.search(text) for text in fine)


def test_a_long_production_module_says_why_it_is_one_piece():
    unexplained = []
    for path in PRODUCTION:
        source = path.read_text()
        if source.count("\n") > LONG_MODULE_LINES:
            docstring = ast.get_docstring(ast.parse(source)) or ""
            if LONG_MODULE_REASON not in docstring:
                unexplained.append(f"{path.relative_to(ROOT)} ({source.count(chr(10))} lines)")
    assert unexplained == []
