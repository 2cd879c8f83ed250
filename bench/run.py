"""Run every benchmark script in bench/ and print each one's JSON line (``make bench``).

A benchmark script is a file here with a ``__main__`` block that prints one JSON object with a
"bench" key to stdout; helper modules (like apps.py) have none. Diagnostics pass through on stderr.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
TIME_LIMIT_SECONDS = 170  # per script; each cleans up after a SIGTERM
# The reports bench seeds 5,000,000 clicks on its first run (about 10 minutes), then reuses them.
TIME_LIMITS = {"reports.py": 1080}
MAIN_BLOCK = 'if __name__ == "__main__":'


def scripts() -> list[Path]:
    """The benchmark scripts, in name order."""
    return [
        path
        for path in sorted(BENCH_DIR.glob("*.py"))
        if path.name != Path(__file__).name and MAIN_BLOCK in path.read_text()
    ]


def run_script(path: Path) -> list[dict]:
    """Run one script within the time limit and return the JSON objects it printed."""
    print(f"[run] {path.relative_to(ROOT)}", file=sys.stderr, flush=True)
    process = subprocess.Popen([sys.executable, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = process.communicate(timeout=TIME_LIMITS.get(path.name, TIME_LIMIT_SECONDS))
    except subprocess.TimeoutExpired:
        limit = TIME_LIMITS.get(path.name, TIME_LIMIT_SECONDS)
        print(f"[run] {path.name} ran past {limit} s; stopping it", file=sys.stderr, flush=True)
        process.send_signal(signal.SIGTERM)
        try:
            stdout, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, _ = process.communicate()
        return []
    results = []
    for line in stdout.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            print(line, file=sys.stderr)
            continue
        if isinstance(value, dict) and "bench" in value:
            results.append(value)
    if process.returncode != 0:
        print(f"[run] {path.name} exited with {process.returncode}", file=sys.stderr, flush=True)
        return []
    return results


def main() -> int:
    """Run all benchmarks; fail if any printed no result."""
    failed = 0
    for path in scripts():
        results = run_script(path)
        if not results:
            failed += 1
        for result in results:
            print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
