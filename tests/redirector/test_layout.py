"""The click's documented keys match what is recorded and stored; the redirector's modules import no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from redirector import create_redirector
from redirector.clickrecord import ClickRecord, LoggedClick
from redirector.clickstore import COLUMNS
from tests.redirector.helpers import setup_link

ROOT = Path(__file__).resolve().parents[2]


def _keys(typed: type) -> set[str]:
    return set(typed.__required_keys__) | set(typed.__optional_keys__)


def test_a_click_record_has_a_key_for_every_stored_column():
    assert _keys(ClickRecord) == set(COLUMNS)


def test_a_logged_click_has_the_keys_the_request_records(app):
    s = setup_link(app)
    red = create_redirector(app.config)
    try:
        pending = red.respond({"REQUEST_METHOD": "GET", "PATH_INFO": f"/r/{s.link.code}", "REMOTE_ADDR": "192.0.2.1"})
        assert set(pending.click) == _keys(LoggedClick)
    finally:
        red.close()


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules a module names in its imports, anywhere in it (function-level imports included).

    ``from package import module`` counts as an import of the module, not of the package's ``__init__``.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found & modules


def test_no_module_of_the_redirector_imports_a_module_that_imports_it_back():
    modules = {}
    for package in ("redirector", "affiliate"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    cycles = []
    for start in [name for name in graph if name.startswith("redirector")]:
        seen, stack = set(), [(start, (start,))]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join((*trail, start)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*trail, nxt)))
    assert cycles == [], "a module imports a module that imports it back"
