"""Every blueprint follows the layout in docs/layout.md, so any one of its name, module, URL prefix and template
folder tells where the others are."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from tests.conftest import build_app

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# Pages at the site's root: the home page and health check, and signing in with the signed links mail carries.
SITE_ROOT = {"main", "auth"}
# Template folders that belong to no one blueprint.
COMMON_FOLDERS = {"_macros", "shared", "errors", "mail"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    database = tmp_path_factory.mktemp("blueprints") / "layout.db"
    return build_app(f"sqlite:///{database}", DEMO_SHOP=True)


def _place(blueprint) -> tuple[str, str]:
    """(package, module) of the module that creates the blueprint: affiliate.<package>.<module>."""
    parts = blueprint.import_name.split(".")
    assert len(parts) == 3 and parts[0] == "affiliate", f"{blueprint.name} is made outside affiliate/<package>/"
    return parts[1], parts[2]


def _expected_name(package: str, module: str) -> str:
    return package if module == "routes" else f"{package}_{module}"


def _template_folder(package: str, module: str) -> str:
    return f"{package}/" if module == "routes" else f"{package}/{module}/"


def _rendered(module_name: str) -> list[str]:
    """The template paths a module passes to render_template as literal strings."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    paths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "render_template" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                paths.append(first.value)
    return paths


def test_a_blueprint_is_named_after_its_package_and_module(app):
    for name, blueprint in app.blueprints.items():
        package, module = _place(blueprint)
        assert name == _expected_name(package, module), f"{name} lives in affiliate/{package}/{module}.py"


def test_a_blueprints_views_live_in_its_module(app):
    for endpoint, view in app.view_functions.items():
        if endpoint == "static":
            continue
        blueprint = app.blueprints[endpoint.rpartition(".")[0]]
        assert view.__module__ == blueprint.import_name, f"{endpoint} is defined in {view.__module__}"


def test_the_urls_first_segment_is_the_package(app):
    for name, blueprint in app.blueprints.items():
        package, _ = _place(blueprint)
        if name in SITE_ROOT:
            assert not blueprint.url_prefix, f"{name} serves the site's root"
            continue
        segment = "/" + package.replace("_", "-")
        prefix = blueprint.url_prefix or ""
        assert prefix == segment or prefix.startswith(segment + "/"), f"{name} is under {prefix}, not {segment}/"


def test_a_module_renders_templates_from_its_own_folder(app):
    for name, blueprint in app.blueprints.items():
        folder = _template_folder(*_place(blueprint))
        for path in _rendered(blueprint.import_name):
            assert (TEMPLATES / path).is_file(), f"{blueprint.import_name} renders {path}, which does not exist"
            own = path.startswith(folder) and (folder.count("/") == 2 or "/" not in path[len(folder) :])
            assert own or path.startswith("shared/"), f"{name} renders {path}: its templates are in {folder}"


def test_every_template_folder_belongs_to_a_blueprint(app):
    folders = {_template_folder(*_place(blueprint)).rstrip("/") for blueprint in app.blueprints.values()}
    folders |= {_place(blueprint)[0] for blueprint in app.blueprints.values()}
    for path in TEMPLATES.rglob("*"):
        if not path.is_dir():
            continue
        relative = path.relative_to(TEMPLATES).as_posix()
        if relative.split("/")[0] in COMMON_FOLDERS:
            continue
        assert relative in folders, f"templates/{relative}/ is no blueprint's folder"
