"""Several redirector nodes in front of one PostgreSQL: kill -9 a node under load, restart it, lose nothing.

Each node is a granian server of its own (the production server, ``CLICK_INGESTER=process``) with its own
click log directory, as on a machine of its own; all of them store into one database. A load balancer
with source-address affinity sends each client address to one node (a hash of the address), so a
client's clicks are logged, and judged, in the order it made them.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from affiliate.extensions import db
from affiliate.ids import new_id
from affiliate.models import Click, Link, Program, User, utcnow
from affiliate.services import fraud_rules, links, rollups
from affiliate.services.traffic import human_click, unique_click
from redirector import create_redirector
from redirector.clickrecord import ClickRecord
from redirector.clickstore import ClickStore, decode_click
from redirector.engines import make_engine
from tests.conftest import dispose
from tests.factories import make_admin, make_affiliate, make_link, make_program
from tests.redirector.helpers import setup_link
from tests.servers import Server

CACHE_SECONDS = 2  # LINK_CACHE_SECONDS on every node: how long a paused link may still redirect
STORE_DEADLINE_SECONDS = 180  # waits end as soon as the clicks are stored; this only bounds a failing run
LOAD_DEADLINE_SECONDS = 120
PER_HOUR = 6  # the program's flooding limit: clicks from one device on one link in an hour
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "
    "Edg/131.0.0.0",
)
GROUPS = len(USER_AGENTS)
CLIENTS_PER_GROUP = 6
CLICKS_PER_CLIENT = 18


@dataclass(frozen=True)
class Shopper:
    """One client address with its browser: the same headers, and the same visitor cookie, on every click."""

    address: str
    user_agent: str
    visitor: str
    referrer: str

    def headers(self) -> dict[str, str]:
        return {
            "X-Forwarded-For": self.address,  # the load balancer's hop, trusted with TRUSTED_PROXY_COUNT=1
            "User-Agent": self.user_agent,
            "Accept-Language": "en-US,en;q=0.9",
            "Cookie": f"ct_vid={self.visitor}",
            "Referer": self.referrer,
        }


def shoppers() -> list[Shopper]:
    """Groups of shoppers on one /24 network with one browser: one device fingerprint to the redirector, as
    behind a carrier's NAT. Their addresses hash to different nodes, so one device's clicks reach both."""
    return [
        Shopper(
            address=f"198.18.{group}.{10 + n}",
            user_agent=USER_AGENTS[group],
            visitor=f"nodes-visitor-{group:03d}-{n:03d}-x",
            referrer=f"https://blog-{group}.example/review",
        )
        for group in range(GROUPS)
        for n in range(CLIENTS_PER_GROUP)
    ]


def node_of(shopper: Shopper, nodes: int) -> int:
    """Source-address affinity: the node a load balancer hashing the client address sends this shopper to."""
    return zlib.crc32(shopper.address.encode()) % nodes


@dataclass
class Traffic:
    """Shoppers clicking concurrently, each its own plan in order, through whichever node routing picks."""

    ports: list[int]
    plans: dict[Shopper, list[str]]
    down: set[int] = field(default_factory=set)  # nodes the load balancer takes out of rotation
    acknowledged: dict[str, Shopper] = field(default_factory=dict)  # click id of each 302 -> who got it
    failed: Counter = field(default_factory=Counter)  # requests without an answer, per shopper
    statuses: Counter = field(default_factory=Counter)
    gate: threading.Event | None = None  # once set, shoppers go on past the share of their plan held back
    held_share: float = 1.0
    held: int = 0  # shoppers waiting at the gate
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def route(self, shopper: Shopper) -> int:
        home = node_of(shopper, len(self.ports))
        if home not in self.down:
            return home
        return next(node for node in range(len(self.ports)) if node not in self.down)

    def run(self, deadline_s: float = LOAD_DEADLINE_SECONDS) -> list[threading.Thread]:
        stop_at = time.monotonic() + deadline_s
        threads = [threading.Thread(target=self._click, args=(shopper, stop_at)) for shopper in self.plans]
        for thread in threads:
            thread.start()
        return threads

    def _click(self, shopper: Shopper, stop_at: float) -> None:
        connections: dict[int, http.client.HTTPConnection] = {}
        plan = self.plans[shopper]
        try:
            for index, code in enumerate(plan):
                if self.gate is not None and index == int(len(plan) * self.held_share):
                    with self._lock:
                        self.held += 1
                    self.gate.wait(max(0.0, stop_at - time.monotonic()))
                if time.monotonic() > stop_at:
                    return
                self.request(shopper, code, connections)
        finally:
            for conn in connections.values():
                conn.close()

    def request(self, shopper: Shopper, code: str, connections: dict[int, http.client.HTTPConnection]) -> None:
        node = self.route(shopper)
        try:
            conn = connections.get(node)
            if conn is None:
                conn = connections[node] = http.client.HTTPConnection("127.0.0.1", self.ports[node], timeout=30)
            conn.request("GET", f"/r/{code}", headers=shopper.headers())
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            connections.pop(node).close()
            with self._lock:
                self.failed[shopper] += 1
            return
        with self._lock:
            self.statuses[response.status] += 1
            if response.status == 302:
                query = parse_qs(urlsplit(response.getheader("Location", "")).query)
                if "ct_click" in query:
                    self.acknowledged[query["ct_click"][0]] = shopper

    def wait_for(self, acknowledged: int, threads: list[threading.Thread]) -> None:
        """Until that many clicks are acknowledged, or every shopper has stopped or waits at the gate."""
        while len(self.acknowledged) < acknowledged and self.held < sum(thread.is_alive() for thread in threads):
            time.sleep(0.02)


@dataclass
class Shop:
    affiliate: User
    program: Program
    codes: list[str]
    paused_link: Link  # on a program of its own, so its few clicks stay out of the load's rollups


def _open_shop(app) -> Shop:
    admin = make_admin(app)
    affiliate = make_affiliate(app)
    program = make_program(app, admin)
    # Per hour only: a minute limit would make verdicts depend on how fast each run happens to go.
    with app.app_context():
        parsed = fraud_rules.parse_settings(
            {"click_flooding.per_minute": "100000", "click_flooding.per_hour": str(PER_HOUR)}
        )
        actor = db.session.get(User, admin.id)
        fraud_rules.save_rules(db.session, db.session.get(Program, program.id), parsed, actor=actor, now=utcnow())
        db.session.commit()
    codes = [make_link(app, affiliate, program).code for _ in range(3)]
    paused_link = make_link(app, affiliate, make_program(app, admin))
    return Shop(affiliate, program, codes, paused_link)


@contextlib.contextmanager
def _engine(uri: str) -> Iterator:
    engine = create_engine(uri)
    try:
        yield engine
    finally:
        engine.dispose()


def stored_ids(uri: str) -> Counter:
    with _engine(uri) as engine, engine.connect() as conn:
        return Counter(conn.execute(select(Click.click_id)).scalars())


def wait_until_stored(uri: str, click_ids: set[str]) -> set[str]:
    """Wait for the nodes' own ingesters to store these clicks; return those still missing at the deadline."""
    deadline = time.monotonic() + STORE_DEADLINE_SECONDS
    missing = click_ids - set(stored_ids(uri))
    while missing and time.monotonic() < deadline:
        time.sleep(0.2)
        missing = click_ids - set(stored_ids(uri))
    return missing


def drain(config: dict, log_dir: Path) -> None:
    """Store whatever a stopped node's click log still holds (clicks logged but never acknowledged)."""
    survivor = create_redirector({**config, "CLICK_LOG_DIR": str(log_dir), "CLICK_INGESTER": "thread"})
    try:
        deadline = time.monotonic() + 60
        while [*log_dir.glob("clicks-*.log"), *log_dir.glob("sealed-*.log")] and time.monotonic() < deadline:
            survivor.recorder.ingest()
            time.sleep(0.1)
    finally:
        survivor.close()


def counts_per_link(uri: str, program_id: int) -> dict[int, tuple[int, int, int]]:
    """Raw, human and unique clicks per link of the program, counted from the clicks themselves."""
    with _engine(uri) as engine, engine.connect() as conn:
        rows = conn.execute(
            select(
                Click.link_id,
                func.count(),
                func.count().filter(human_click()),
                func.count().filter(unique_click()),
            )
            .where(Click.program_id == program_id)
            .group_by(Click.link_id)
        )
        return {link: (raw, human, unique) for link, raw, human, unique in rows}


def rollup_rows(uri: str, program_id: int) -> tuple[dict[tuple, list[int]], list]:
    """The program's click rollups summed over days (two runs minutes apart may straddle midnight), and any
    rollup that disagrees with the raw clicks."""
    with _engine(uri) as engine, Session(engine) as session:
        summed: dict[tuple, list[int]] = {}
        for (dimension, _day, affiliate, program, value), counts in rollups.stored(session).items():
            if program == program_id:
                totals = summed.setdefault((dimension, affiliate, value), [0, 0, 0])
                for index, count in enumerate(counts):
                    totals[index] += count
        return summed, rollups.differences(session)


def clicks_in_order(uri: str, program_id: int) -> list[tuple[str, int]]:
    """Every stored click of the program as (visitor, link), in the order its shopper made them."""
    with _engine(uri) as engine, engine.connect() as conn:
        return list(
            conn.execute(
                select(Click.visitor_id, Click.link_id)
                .where(Click.program_id == program_id)
                .order_by(Click.clicked_at, Click.id)
            )
        )


def _node(uri: str, instance: Path, port: int | None = None) -> Server:
    """A redirector node as on a machine of its own: its own instance folder (and so click log directory)."""
    instance.mkdir(exist_ok=True)
    return Server(
        uri,
        instance,
        port=port,
        CLICK_INGESTER="process",
        LINK_CACHE_SECONDS=str(CACHE_SECONDS),
        TRUSTED_PROXY_COUNT="1",  # behind the load balancer
    )


@pytest.fixture
def replay_database(app, database_uri, postgres, shop) -> Iterator[str]:
    """A second database, copied from the first once the shop is open (links and all, no clicks yet)."""
    dispose(app)  # a database with open connections cannot be copied
    name = f"{make_url(database_uri).database}_replay"
    yield postgres.create(name, template=make_url(database_uri).database)
    postgres.drop(name)


@pytest.fixture
def shop(app, postgres) -> Shop:
    if postgres is None:
        pytest.skip("nodes on separate machines share a networked database: runs on PostgreSQL only")
    return _open_shop(app)


def test_nodes_lose_no_click_judge_as_one_and_stop_paused_links(app, database_uri, shop, replay_database, tmp_path):
    """Two nodes under load, one killed with kill -9 (its whole process group) and restarted on its directory.

    (a) Every acknowledged click is stored, once. (b) The same clicks replayed through one node into a
    second database give the same raw, human and unique counts per link and the same rollups. The workload
    makes verdicts independent of spacing and of the order in which nodes store: everything happens
    within the hour, the program's flooding limit is per hour only, and a shopper's visitor cookie and
    device never change, so a device's first stored click on a link is its unique one and its clicks past
    the limit are the rejected ones, however the two runs are paced. Replayed are the acknowledged clicks
    and those the killed node had logged but not answered (stored all the same), each shopper's in the
    order it made them. (c) A paused link stops redirecting on every node once the cache time has passed.
    """
    population = shoppers()
    assert {node_of(shopper, 2) for shopper in population[:CLIENTS_PER_GROUP]} == {0, 1}, "a device on both nodes"
    plans = {
        shopper: [shop.codes[(n + k) % len(shop.codes)] for k in range(CLICKS_PER_CLIENT)]
        for n, shopper in enumerate(population)
    }
    nodes = [_node(database_uri, tmp_path / f"node{n}") for n in range(2)]
    try:
        traffic = _load_killing_a_node(nodes, plans, database_uri, tmp_path / "node1")
        acknowledged = set(traffic.acknowledged)
        missing = wait_until_stored(database_uri, acknowledged)
        assert not missing, f"{len(missing)} acknowledged clicks not stored by the nodes' ingesters"
        _pause_and_check_every_node(app, shop, nodes)
    finally:
        for node in nodes:
            node.stop()
    for n in range(2):
        drain(app.config, tmp_path / f"node{n}" / "clicklog")

    # (a) Stored once each: every acknowledged click, and at most the requests the kill left unanswered.
    stored = stored_ids(database_uri)
    assert [click for click, copies in stored.items() if copies > 1] == [], "a click stored twice"
    assert acknowledged <= set(stored)
    loads = {click for (click,) in _click_ids_of(database_uri, shop.program.id)}
    assert len(loads - acknowledged) <= sum(traffic.failed.values()), "only requests cut off are logged unanswered"

    # (b) The same clicks, each shopper's in its order, through one node into the copy made before the load.
    replayed = _replay(app, shop, population, database_uri, replay_database, tmp_path / "replay")
    assert replayed == len(loads)
    two_nodes, one_node = (counts_per_link(uri, shop.program.id) for uri in (database_uri, replay_database))
    assert sum(raw for raw, _, _ in two_nodes.values()) == len(loads)
    assert two_nodes == one_node, "raw, human and unique clicks per link differ from one node's"
    assert any(human < raw for raw, human, _ in two_nodes.values()), "the flooding limit was reached"
    (two_rollups, two_wrong), (one_rollups, one_wrong) = (
        rollup_rows(uri, shop.program.id) for uri in (database_uri, replay_database)
    )
    assert two_wrong == [] and one_wrong == [], "rollups disagree with the clicks they count"
    assert two_rollups == one_rollups, "rollups differ from one node's"


def _load_killing_a_node(nodes: list[Server], plans: dict, database_uri: str, instance: Path) -> Traffic:
    """Shoppers on both nodes; node 1 killed a quarter of the way and restarted on the same directory.

    While it is down the load balancer sends its shoppers to node 0; each shopper then waits, three
    quarters through its plan, for node 1 to be back, so the rest of the load reaches both again.
    """
    total = sum(len(plan) for plan in plans.values())
    restarted = threading.Event()
    traffic = Traffic([node.port for node in nodes], plans, gate=restarted, held_share=0.75)
    threads = traffic.run()
    try:
        traffic.wait_for(total // 4, threads)
        victim = nodes[1]
        traffic.down.add(1)  # the load balancer sees it fail: requests under way are lost, new ones go to node 0
        victim.stop()  # SIGKILL to the node's process group: workers and its ingester
        traffic.wait_for(total // 2, threads)
        nodes[1] = _node(database_uri, instance, port=victim.port)
        traffic.down.discard(1)
    finally:
        restarted.set()
        for thread in threads:
            thread.join()
    assert set(traffic.statuses) == {302}, traffic.statuses
    assert len(traffic.acknowledged) + sum(traffic.failed.values()) == total, "every shopper went through its plan"
    return traffic


def _pause_and_check_every_node(app, shop: Shop, nodes: list[Server]) -> None:
    """The affiliate pauses a link every node has cached (each worker preloads the links that redirect);
    once the cache time has passed since the pause, no node redirects it.

    Each cached copy expires at most CACHE_SECONDS after it was read, and every copy was read before the
    pause committed, so every request sent after the sleep is refused however busy the machine is."""
    for node in nodes:
        assert _status(node.port, shop.paused_link.code) == 302
    with app.app_context():
        owner = db.session.get(User, shop.affiliate.id)
        links.set_link_active(db.session, owner, shop.paused_link.id, active=False)
        db.session.commit()
    time.sleep(CACHE_SECONDS + 0.1)
    for node in nodes:
        answers = [_status(node.port, shop.paused_link.code) for _ in range(8)]
        assert answers == [404] * 8, f"node on port {node.port} still redirects a paused link: {answers}"


def _replay(app, shop: Shop, population: list[Shopper], source: str, target: str, instance: Path) -> int:
    """Send every click stored in ``source`` again, each shopper's in its order, through one node on ``target``;
    return how many were acknowledged (and stored) there."""
    by_visitor = {shopper.visitor: shopper for shopper in population}
    with app.app_context():
        codes = dict(db.session.execute(select(Link.id, Link.code).where(Link.program_id == shop.program.id)).all())
    plans: dict[Shopper, list[str]] = {shopper: [] for shopper in population}
    for visitor, link_id in clicks_in_order(source, shop.program.id):
        plans[by_visitor[visitor]].append(codes[link_id])
    node = _node(target, instance)
    try:
        replay = Traffic([node.port], plans)
        for thread in replay.run():
            thread.join()
        assert set(replay.statuses) == {302} and not replay.failed, (replay.statuses, replay.failed)
        assert not wait_until_stored(target, set(replay.acknowledged)), "the replay node stored its clicks"
    finally:
        node.stop()
    drain(app.config | {"SQLALCHEMY_DATABASE_URI": target}, instance / "clicklog")
    return len(replay.acknowledged)


def _click_ids_of(uri: str, program_id: int) -> list:
    with _engine(uri) as engine, engine.connect() as conn:
        return list(conn.execute(select(Click.click_id).where(Click.program_id == program_id)))


def _status(port: int, code: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"/r/{code}", headers={"User-Agent": USER_AGENTS[0], "X-Forwarded-For": "198.18.99.1"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _click(setup, visitor: str, at: datetime) -> ClickRecord:
    """A logged click of one device (one network, one browser) on the setup's link, as the ingester reads it."""
    return decode_click(
        {
            "link_id": setup.link.id,
            "affiliate_id": setup.affiliate.id,
            "program_id": setup.program.id,
            "ip": "198.18.7.20",
            "ip_prefix": "198.18.7.0/24",
            "user_agent": USER_AGENTS[0],
            "is_bot": False,
            "fingerprint": "f" * 32,
            "is_unique": True,
            "fraud_score": 0,
            "click_id": new_id(),
            "visitor_id": visitor,
            "clicked_at": at.isoformat(),
        }
    )


def test_ingesters_of_two_nodes_judge_one_device_as_one_would(app, database_uri, postgres):
    """One device's clicks reach two nodes; their ingesters store them at the same moment.

    The second ingester's transaction starts while the first has judged its click and not yet committed:
    it must wait for that commit, and so find the device's earlier click and not count another unique one.
    """
    if postgres is None:
        pytest.skip("SQLite lets one writer in at a time (BEGIN IMMEDIATE); two ingesters need PostgreSQL")
    setup = setup_link(app)
    stores = [ClickStore(make_engine(database_uri, immediate=True), timedelta(hours=1)) for _ in range(2)]
    judged, release = threading.Event(), threading.Event()
    copy = stores[0]._copy

    def copy_then_wait(conn, rows) -> None:
        copy(conn, rows)
        judged.set()
        release.wait(STORE_DEADLINE_SECONDS)

    stores[0]._copy = copy_then_wait
    now = datetime.now(UTC)
    errors: list[BaseException] = []

    def store(n: int) -> None:
        # As the ingester does: a batch the database refused (a lock wait past lock_timeout) is offered again.
        deadline = time.monotonic() + STORE_DEADLINE_SECONDS
        while True:
            try:
                stores[n].insert([_click(setup, f"nodes-visitor-900-00{n}-x", now + timedelta(seconds=n))])
                return
            except Exception as error:  # retried, and reported if it never goes through
                if time.monotonic() > deadline:
                    errors.append(error)
                    return
                time.sleep(0.1)

    first = threading.Thread(target=store, args=(0,))
    second = threading.Thread(target=store, args=(1,))
    try:
        first.start()
        assert judged.wait(STORE_DEADLINE_SECONDS), "the first ingester judged its click"
        second.start()
        with _engine(database_uri) as engine, engine.connect() as conn:
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            deadline = time.monotonic() + STORE_DEADLINE_SECONDS
            while second.is_alive() and not conn.execute(waiting).scalar() and time.monotonic() < deadline:
                conn.rollback()
                time.sleep(0.02)
    finally:
        release.set()
        first.join()
        second.join()
        for click_store in stores:
            click_store.engine.dispose()
    assert errors == []
    with _engine(database_uri) as engine, engine.connect() as conn:
        uniques = conn.execute(select(Click.is_unique).order_by(Click.clicked_at)).scalars().all()
    assert uniques == [True, False], "the device's second click, stored by another node, is not unique"
