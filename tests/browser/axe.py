"""axe-core for the accessibility test: the npm registry's tarball of one pinned version, checked against its
published sha512 integrity, kept in a cache folder outside git, and injected into pages only by the tests.

``python -m tests.browser.axe`` fetches it (CI runs that before the tests, so a registry that cannot be reached
fails the run there rather than skipping the check).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

VERSION = "4.10.3"
TARBALL = f"https://registry.npmjs.org/axe-core/-/axe-core-{VERSION}.tgz"
# The registry's dist.integrity for this version (npm view axe-core@4.10.3 dist.integrity).
INTEGRITY = "sha512-Xm7bpRXnDSX2YE2YFfBk2FnF0ep6tmG7xPh8iHee8MIcrgq762Nkce856dYtJYLkuIoYZvGfTs/PbZhideTcEg=="
CACHE = Path(os.environ.get("AXE_CORE_CACHE") or Path.home() / ".cache" / "clicktrail" / "axe-core")
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SEVERE = {"serious", "critical"}


def _matches(data: bytes) -> bool:
    algorithm, expected = INTEGRITY.split("-", 1)
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == expected


def _tarball_path() -> Path:
    return CACHE / f"axe-core-{VERSION}.tgz"


def fetch(timeout: float = 60) -> Path:
    """The verified tarball in the cache, downloaded first if it is not there (or does not match)."""
    path = _tarball_path()
    if path.exists() and _matches(path.read_bytes()):
        return path
    try:
        with urllib.request.urlopen(TARBALL, timeout=timeout) as response:
            data = response.read()
    except OSError as error:
        raise RuntimeError(
            f"could not download axe-core {VERSION} from {TARBALL} ({error}); the accessibility test needs it: "
            f"run `python -m tests.browser.axe` where the npm registry is reachable, or put the tarball at {path}"
        ) from error
    if not _matches(data):
        raise RuntimeError(f"{TARBALL} does not match its pinned integrity {INTEGRITY}: refusing to use it")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def source() -> str:
    """axe.min.js from the verified tarball (checked again on every read)."""
    data = fetch().read_bytes()
    if not _matches(data):
        raise RuntimeError(f"the cached {_tarball_path()} no longer matches its integrity")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        member = archive.extractfile("package/axe.min.js")
        if member is None:
            raise RuntimeError(f"axe-core {VERSION}'s tarball has no package/axe.min.js")
        return member.read().decode()


def run(page, script: str) -> list[dict]:
    """Inject axe into the page (its context must bypass the page's CSP) and return the WCAG 2.1 A/AA violations."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=script)
    result = page.evaluate(
        "options => axe.run(document, options)",
        {"runOnly": {"type": "tag", "values": TAGS}, "resultTypes": ["violations"]},
    )
    return result["violations"]


def severe(violations: list[dict], where: str) -> list[str]:
    """One line per element of every serious or critical violation: page, rule, impact, target, what is wrong."""
    lines = []
    for violation in violations:
        if violation.get("impact") not in SEVERE:
            continue
        for node in violation["nodes"]:
            target = " ".join(" > ".join(part) if isinstance(part, list) else part for part in node["target"])
            summary = (node.get("failureSummary") or "").replace("\n", " ")[:300]
            lines.append(f"{where}: {violation['id']} ({violation['impact']}) at {target}: {summary}")
    return lines


if __name__ == "__main__":
    print(f"axe-core {VERSION}: {fetch()}", file=sys.stderr)
