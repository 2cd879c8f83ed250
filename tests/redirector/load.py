"""Load on a served redirector for the durability tests: many clicks at once, each acknowledged click remembered."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass
class Load:
    """Bounded concurrent clicks; remembers the click id of every acknowledged (302) answer."""

    port: int
    codes: list[str]
    acknowledged: set[str] = field(default_factory=set)
    failures: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, total: int, threads: int = 16, on_progress=None, deadline_s: float = 60.0) -> None:
        counter = iter(range(total))
        stop_at = time.monotonic() + deadline_s

        def worker() -> None:
            conn = None
            for n in counter:
                if time.monotonic() > stop_at:
                    return
                code = self.codes[n % len(self.codes)]
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                    conn.request("GET", f"/r/{code}", headers={"User-Agent": f"Mozilla/5.0 load-{n % 50}"})
                    response = conn.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    with self._lock:
                        self.failures += 1
                    conn = None
                    continue
                with self._lock:
                    self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
                    if response.status == 302:
                        location = response.getheader("Location", "")
                        self.acknowledged.add(parse_qs(urlsplit(location).query)["ct_click"][0])
                    if on_progress:
                        on_progress(len(self.acknowledged))

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
