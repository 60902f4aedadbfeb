"""Replicas exchanging replication messages through a hostile network (hypothesis).

Three to five nodes run the sans-IO replication protocol; the test is the network:
it delivers, drops, duplicates and reorders messages, partitions and heals replicas,
and restarts them from compacted stores, while they write at random; time passes,
and replicas in touch with a majority prune the tombstones older than the horizon.
After healing, anti-entropy and a read of every key everywhere, every replica holds
identical directories, values and state vectors, and no key deleted and pruned is
live again unless it was written again after its prune.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import pydds
from pydds.clock import FakeClock
from pydds.crdt.directory import encode_update, merge_updates
from pydds.crdt.sync import decode_state_vector
from pydds.crdt.ydoc import EMPTY_STATE_VECTOR
from pydds.keyspace import NOT_HELD
from pydds.net import messages as m
from pydds.net.replication import HoldingDue, Replication
from pydds.storage import fold_updates

from ..helpers import exact, sent

KEYS = ["a", "b", "c"]
STATS: list[tuple[int, int]] = []  # live keys and directory entries at the end of each run
DB = "db"
HORIZON = 100.0  # seconds a tombstone is kept


class Replica:
    def __init__(
        self,
        name: str,
        client_id: int,
        outbox: list[tuple[str, str, m.Message]],
        clock: FakeClock,
    ):
        self.name = name
        limits = pydds.Limits(tombstone_horizon=HORIZON)
        self.node = pydds.Node(name, clock=clock, limits=limits)
        self.node.client_id = client_id
        self.replication = Replication(
            name,
            lambda db: self.node.database(db)._keyspace,
            self.node.databases,
            digest_from=1,  # anti-entropy by digests from the second exchange on
        )
        self.outbox = outbox
        self.node.add_change_listener(lambda change: self.post(self.replication.changed(change)))
        self.node.database(DB)

    def post(self, sends: list[tuple[str, Any]]) -> None:
        for peer, message in sent(sends):
            self.outbox.append((self.name, peer, message))

    @property
    def ks(self) -> Any:
        return self.node.database(DB)._keyspace


class Chaos(RuleBasedStateMachine):
    @initialize(count=st.integers(3, 5))
    def start(self, count: int) -> None:
        self.flight: list[tuple[str, str, m.Message]] = []
        self.clock = FakeClock()
        self.replicas: dict[str, Replica] = {}
        for i in range(count):
            self._add(Replica(f"r{i}", 1000 + i, self.flight, self.clock))
        self.cut: set[frozenset[str]] = set()
        self.restarts = 0
        #: key -> the greatest generation of it a replica pruned, while no write
        #: created it again after that prune
        self.pruned: dict[str, int] = {}
        for a in self.replicas.values():
            for b in self.replicas:
                if b != a.name:
                    a.post(a.replication.opened(b))

    def _add(self, r: Replica) -> None:
        self.replicas[r.name] = r
        r.ks.in_touch = lambda: self._in_touch(r.name)

    def _in_touch(self, name: str) -> bool:
        """Whether ``name`` reaches a majority of the replicas, itself included."""
        reached = sum(1 for other in self.replicas if frozenset((name, other)) not in self.cut)
        return 2 * reached > len(self.replicas)

    def replica(self, i: int) -> Replica:
        names = sorted(self.replicas)
        return self.replicas[names[i % len(names)]]

    async def _write(self, r: Replica, op: str, key: str, n: int) -> None:
        db = r.node.database(DB)
        try:
            if op == "set":
                await db.set(key, {"n": n} if n % 2 else [n])
            elif op == "update":
                await db.update(key, {f"f{n % 3}": n})
            elif op == "append":
                await db.append(key, [], n)
            elif op == "incr":
                await db.incr(key, n)
            else:
                await db.delete(key)
        except (pydds.WrongType, pydds.Unavailable):
            pass  # a wrong type for this value, or no peer linked: nothing changed

    @rule(
        i=st.integers(0, 4),
        op=st.sampled_from(["set", "update", "append", "incr", "delete"]),
        key=st.sampled_from(KEYS),
        n=st.integers(0, 9),
    )
    def write(self, i: int, op: str, key: str, n: int) -> None:
        r = self.replica(i)
        if key in r.ks and not r.ks.holds(key):
            # What Database does before writing a value held elsewhere: pull it. Here
            # the answer is in flight, so the write goes ahead on what is here.
            _, sends = r.replication.pull(DB, key)
            r.post(sends)
        if op != "delete" and r.ks.directory.get(key) is None:
            self.pruned.pop(key, None)  # a creation after its prune: live rightly
        asyncio.run(self._write_local(r, op, key, n))

    async def _write_local(self, r: Replica, op: str, key: str, n: int) -> None:
        ks = r.ks
        if key in ks and not ks.holds(key):
            return  # the Database would wait for the pull; the model skips instead
        await self._write(r, op, key, n)

    @rule(i=st.integers(0, 4), key=st.sampled_from(KEYS))
    def read(self, i: int, key: str) -> None:
        r = self.replica(i)
        if key in r.ks and not r.ks.holds(key):
            _, sends = r.replication.pull(DB, key)
            r.post(sends)

    @precondition(lambda self: bool(self.flight))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.flight) - 1))
        self._deliver(self.flight.pop(index))

    @precondition(lambda self: bool(self.flight))
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.flight.pop(data.draw(st.integers(0, len(self.flight) - 1)))

    @precondition(lambda self: bool(self.flight))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        self._deliver(self.flight[data.draw(st.integers(0, len(self.flight) - 1))])

    @rule(i=st.integers(0, 4), j=st.integers(0, 4))
    def partition(self, i: int, j: int) -> None:
        a, b = self.replica(i).name, self.replica(j).name
        if a != b:
            self.cut.add(frozenset((a, b)))

    @rule()
    def heal(self) -> None:
        self.cut.clear()

    @rule()
    def time_passes(self) -> None:
        """A minute passes: tombstones older than the horizon (100 s) may go. Links
        deliver what they carry well within a minute, and anti-entropy runs on each
        (what a partition cuts is lost): no message waits longer."""
        self.clock._now += 60.0
        for a in self.replicas.values():
            for b in self.replicas:
                if b != a.name and frozenset((a.name, b)) not in self.cut:
                    a.post(a.replication.resync(b, coarse=True))
        self._quiesce()

    @rule(i=st.integers(0, 4))
    def prune(self, i: int) -> None:
        """Replica ``i``'s sweep prunes what it may (in touch with a majority only)."""
        ks = self.replica(i).ks
        gone = {key: entry.gen for key, entry in ks.directory.entries().items()}
        ks._prune_at = -math.inf
        if ks.prune():
            for key, gen in gone.items():
                if ks.directory.get(key) is None:
                    self.pruned[key] = max(gen, self.pruned.get(key, 0))

    @rule(i=st.integers(0, 4))
    def restart_from_a_compacted_store(self, i: int) -> None:
        """Replica ``i`` crashes and starts again from its store, compacted: every
        value and the directory folded through a document (what Yrs garbage-collected
        is gone), under a new client id, as a restarted node has. What was in flight
        to or from it is lost; its links open again."""
        old = self.replica(i)
        ks, cid = old.ks, old.node.client_id
        wall = self.clock.wall()
        entries = encode_update(ks.directory.entries().items())
        directory = merge_updates([entries], prune_before=wall - HORIZON)
        states = {
            key: (kd.gen, fold_updates([kd.diff(cid, EMPTY_STATE_VECTOR)]))
            for key, kd in ks._keys.items()
            if kd.held
        }
        self.restarts += 1
        new = Replica(old.name, 5000 + self.restarts, self.flight, self.clock)
        new.ks.restore(directory, states)
        new.ks.touched_at, new.ks.pruned = ks.touched_at, ks.pruned  # as the store keeps
        self._add(new)
        self.flight[:] = [f for f in self.flight if old.name not in (f[0], f[1])]
        for other in self.replicas.values():
            if other.name != old.name:
                other.replication.closed(old.name)
                other.post(other.replication.opened(old.name))
                new.post(new.replication.opened(other.name))

    @rule(i=st.integers(0, 4), j=st.integers(0, 4), coarse=st.booleans())
    def resync(self, i: int, j: int, coarse: bool) -> None:
        """A period of anti-entropy on one link (coarse: one digest a directory, as
        periods send), while writes and faults go on."""
        a, b = self.replica(i), self.replica(j).name
        if a.name != b:
            a.post(a.replication.resync(b, coarse=coarse))

    def _deliver(self, item: tuple[str, str, m.Message]) -> None:
        source, target, message = item
        if frozenset((source, target)) in self.cut:
            return  # lost in the partition
        r = self.replicas[target]
        sends, notices = r.replication.handle(source, message)
        out = list(sends)
        for notice in notices:
            if isinstance(notice, HoldingDue):
                out += r.replication.holding(notice.peer, notice.database)
        r.post(out)

    def _quiesce(self) -> None:
        for _ in range(10_000):
            if not self.flight:
                return
            self._deliver(self.flight.pop(0))
        raise AssertionError("messages kept flowing")

    @invariant()
    def directories_are_well_formed(self) -> None:
        for r in self.replicas.values():
            for key, entry in r.ks.directory.entries().items():
                assert entry.gen >= 1, (r.name, key)

    def teardown(self) -> None:
        if not hasattr(self, "replicas"):
            return
        self.cut.clear()
        for _ in range(3):  # anti-entropy rounds: resync every pair, then pull everything
            self._quiesce()
            for a in self.replicas.values():
                for b in self.replicas:
                    if b != a.name:
                        a.post(a.replication.resync(b))
            self._quiesce()
            for r in self.replicas.values():
                for key in r.ks.keys():  # noqa: SIM118
                    if not r.ks.holds(key):
                        _, sends = r.replication.pull(DB, key)
                        r.post(sends)
            self._quiesce()
        for r in self.replicas.values():  # each node's sweep, now in touch
            r.ks._prune_at = -math.inf
            r.ks.prune()
        replicas = list(self.replicas.values())
        first = replicas[0]
        for r in replicas[1:]:
            assert r.ks.directory.entries() == first.ks.directory.entries(), r.name
            assert r.ks.keys() == first.ks.keys(), r.name
        for key in first.ks.keys():  # noqa: SIM118
            seen = set()
            for r in replicas:
                value = r.ks.read(key)
                assert value is not NOT_HELD, (r.name, key)
                kd = r.ks._keys[key]
                seen.add(
                    (
                        str(exact(value)),
                        kd.gen,
                        tuple(
                            sorted(decode_state_vector(kd.state_vector(r.node.client_id)).items())
                        ),
                    )
                )
            assert len(seen) == 1, (key, seen)
        for key, gen in self.pruned.items():  # deleted, pruned: never back
            live = first.ks._keys.get(key)
            assert live is None or live.gen > gen, (key, gen, live.gen)
        STATS.append((len(first.ks.keys()), sum(len(r.ks.directory.entries()) for r in replicas)))


TestChaos = Chaos.TestCase
TestChaos.settings = settings(
    max_examples=int(os.environ.get("PYDDS_CHAOS_EXAMPLES", "150")),
    stateful_step_count=50,
    deadline=None,
)
