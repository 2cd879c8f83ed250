"""Benchmark the fraud engine's quality: recall per fraud class and false positives on legitimate traffic.

Labelled synthetic traffic (bench/traffic.py) drives the real engine. It also runs every example
user agent of the crawler-user-agents package, and a few hundred real browser strings, through the
redirector's user-agent parsing and bot test. Prints one JSON line; diagnostics go to stderr.

Usage: .venv/bin/python bench/fraud.py
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))

from bench.redirector import say  # noqa: E402
from bench.traffic import CLASSES, browser_agents, evaluate  # noqa: E402
from redirector.enrich import bot_reason, parse_user_agent  # noqa: E402

LEGITIMATE = 20_000
PER_FRAUD_CLASS = 2_000


def crawler_agents() -> list[str]:
    """Every example user agent listed by the crawler-user-agents package."""
    data = json.loads((resources.files("crawleruseragents") / "crawler-user-agents.json").read_text())
    return sorted({instance for entry in data for instance in entry.get("instances", []) if instance})


def detected(agent: str) -> bool:
    return bot_reason("GET", parse_user_agent(agent), {}) is not None


def main() -> int:
    per_class = {label: (LEGITIMATE if label == "legitimate" else PER_FRAUD_CLASS) for label in CLASSES}
    notes: Counter = Counter()
    recall, false_positive_rate, events = evaluate(per_class, notes=notes)
    crawlers = crawler_agents()
    missed = [agent for agent in crawlers if not detected(agent)]
    browsers = browser_agents(random.Random(5), 300)
    flagged_browsers = [agent for agent in browsers if detected(agent)]
    say(f"recall {recall}, false positives {false_positive_rate:.2%} of {LEGITIMATE} legitimate events")
    for label in ("cookie_stuffing", "legitimate"):
        kinds = sorted({kind for (of, kind, _) in notes if of == label})
        say(
            f"{label} clicks caught by kind: "
            + "; ".join(
                f"{kind} {notes[(label, kind, True)]} of {notes[(label, kind, True)] + notes[(label, kind, False)]}"
                for kind in kinds
            )
        )
    say(
        f"crawler examples missed: {len(missed)} of {len(crawlers)}; by first word: "
        f"{Counter(agent.split('/')[0].split(' ')[0] for agent in missed).most_common(20)}"
    )
    for agent in missed[:15]:
        say(f"  missed: {agent[:140]}")
    for agent in flagged_browsers[:5]:
        say(f"  browser taken for a bot: {agent}")
    print(
        json.dumps(
            {
                "bench": "fraud",
                "database": "sqlite",
                "recall": recall,
                "false_positive_rate": false_positive_rate,
                "crawler_recall": round(1 - len(missed) / len(crawlers), 4),
                "crawler_user_agents": len(crawlers),
                "browser_false_positive_rate": round(len(flagged_browsers) / len(browsers), 4),
                "browsers": len(browsers),
                "events": events,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
