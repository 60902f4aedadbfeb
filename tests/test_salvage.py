"""Salvage of a damaged store, on real damage to the file a node wrote: bytes
overwritten or flipped, the file cut short, a page zeroed, a damaged WAL or -shm, a
file that is not SQLite. The next start does not fail, what is intact comes back
(and nothing half), the counts of what was lost are true, the damaged file is kept
aside as it was, and a second start still has what was salvaged."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import pydds
from pydds import storage
from pydds.modules.persist import Persistence
from pydds.storage import FILE_NAME, Recovery

SMALL = 200  # values of one row each, many to a page
BIG = 6  # values spread over overflow pages
TOTAL = SMALL + BIG
EXPECTED = {
    **{f"k{i:03}": f"v{i}-" + "x" * 200 for i in range(SMALL)},
    **{f"big{i}": f"b{i}-" + "y" * 9000 for i in range(BIG)},
}
#: the most keys one damaged page can take: a leaf of ``state`` holds about 15 of
#: the small values, the root of ``state`` (an index: its cells are rows) about 10
PAGE = 20


async def write(path: Path, compact_at: int) -> None:
    async with pydds.Node(modules=[Persistence(path=str(path), compact_at=compact_at)]) as node:
        db = node.database("db")
        for key, value in EXPECTED.items():
            await db.set(key, value, ack="durable")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node's data directory, closed cleanly: both tables hold rows (compactions ran
    and the log has more since), some values are on overflow pages."""
    path = tmp_path_factory.mktemp("template")
    asyncio.run(write(path, compact_at=150))
    raw = sqlite3.connect(path / FILE_NAME)
    try:
        assert raw.execute("SELECT count(*) FROM log").fetchone()[0] > 50
        assert raw.execute("SELECT count(*) FROM state").fetchone()[0] > 50
        pages = dict(raw.execute("SELECT pagetype, count(*) FROM dbstat GROUP BY pagetype"))
        assert pages["overflow"] > BIG
    finally:
        raw.close()
    assert not Path(f"{path / FILE_NAME}-wal").exists()  # all in the file itself
    return path


@dataclass
class Started:
    recovery: Recovery
    held: dict[str, Any]  # the values this node holds
    keys: int  # the keys its directory lists
    warnings: list[str]


async def start(path: Path, caplog: pytest.LogCaptureFixture) -> Started:
    """Start a node on ``path``; what it restored (every value checked), then one write."""
    caplog.clear()
    store = Persistence(path=str(path))
    async with pydds.Node(modules=[store]) as node:
        assert store._store is not None
        db = node.database("db")
        held = {key: await db.get(key) for key in db if db.holds(key)}
        keys = len(db) - ("after" in db)
        await db.set("after", 1, ack="durable")  # the (new) file takes writes
        recovery = store._store.recovery
    held.pop("after", None)
    for key, value in held.items():
        assert value == EXPECTED[key], key  # intact, never half-loaded
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("pydds.")
    ]
    return Started(recovery, held, keys, warnings)


def page_size(data: bytes) -> int:
    return int.from_bytes(data[16:18], "big")


def root(path: Path, table: str) -> int:
    raw = sqlite3.connect(path / FILE_NAME)
    try:
        (page,) = raw.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)
        ).fetchone()
    finally:
        raw.close()
    return int(page)


def zero_page(data: bytes, number: int) -> bytes:
    size = page_size(data)
    return data[: (number - 1) * size] + bytes(size) + data[number * size :]


def overwrite_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + random.Random(1).randbytes(64) + data[middle + 64 :]


def wal_frames(data: bytes) -> list[tuple[int, int]]:
    """(where its page starts, page number) of each frame of a WAL file."""
    size = int.from_bytes(data[8:12], "big")
    frame = 24 + size
    return [
        (at + 24, int.from_bytes(data[at : at + 4], "big"))
        for at in range(32, len(data) - frame + 1, frame)
    ]


def overwrite_a_frame(data: bytes, *, rewritten_later: bool) -> bytes:
    """64 bytes overwritten in the middle of the page of the frame nearest the WAL's
    middle that is (or is not) followed by a newer copy of its page."""
    frames = wal_frames(data)
    last = {number: i for i, (_, number) in enumerate(frames)}
    order = sorted(range(len(frames)), key=lambda i: abs(i - len(frames) // 2))
    chosen = next(i for i in order if (last[frames[i][1]] > i) == rewritten_later)
    at = frames[chosen][0] + int.from_bytes(data[8:12], "big") // 2
    return data[:at] + random.Random(1).randbytes(64) + data[at + 64 :]


NOTHING = "nothing could be read from it: every key it held is lost"

#: name -> (damage, given the file's bytes and the template; fewest keys that come back)
DAMAGE: dict[str, tuple[Callable[[bytes, Path], bytes], int]] = {
    "64 bytes overwritten in the middle": (lambda d, _: overwrite_middle(d), TOTAL - PAGE),
    "cut to nothing": (lambda d, _: b"", 0),
    "cut to the header": (lambda d, _: d[:100], 0),
    "cut to one page": (lambda d, _: d[: page_size(d)], 0),
    "cut at half": (lambda d, _: d[: len(d) // 2], TOTAL // 2),
    "cut at three quarters": (lambda d, _: d[: len(d) * 3 // 4], TOTAL * 3 // 4),
    "last page cut off": (lambda d, _: d[: -page_size(d)], TOTAL - PAGE),
    "header page zeroed": (lambda d, _: zero_page(d, 1), TOTAL),
    "root page of the log zeroed": (lambda d, t: zero_page(d, root(t, "log")), TOTAL),
    "root page of the states zeroed": (lambda d, t: zero_page(d, root(t, "state")), TOTAL - PAGE),
    "a page in the middle zeroed": (
        lambda d, _: zero_page(d, len(d) // page_size(d) // 2),
        TOTAL - PAGE,
    ),
    "not SQLite": (lambda d, _: b"this is not a database" * 100, 0),
}


def copy(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "data"
    shutil.copytree(template, path)
    return path


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_a_damaged_file_is_salvaged(
    template: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = copy(template, tmp_path)
    spoil, fewest = DAMAGE[damage]
    damaged = spoil((path / FILE_NAME).read_bytes(), template)
    (path / FILE_NAME).write_bytes(damaged)

    first = await start(path, caplog)  # does not fail
    recovery = first.recovery
    back = len(first.held)
    assert recovery.damaged
    assert back >= fewest
    if fewest == 0:
        assert back == 0
        assert recovery.recovered == 0
        assert not recovery.complete
        assert any(NOTHING in w for w in first.warnings)  # not "0 keys lost"
    # The counts are true: every key known lost was lost, and with the directory
    # whole, every key that did not come back is counted (this node held them all).
    assert recovery.lost_keys + recovery.missing_keys <= TOTAL - back
    if first.keys == TOTAL:
        assert recovery.lost_keys + recovery.missing_keys == TOTAL - back
    # Said at WARNING, with where the damaged file is kept, as it was.
    assert recovery.moved_to is not None
    kept = Path(recovery.moved_to)
    assert kept.parent == path
    assert kept.name.startswith(f"{FILE_NAME}.damaged-")
    assert await asyncio.to_thread(kept.read_bytes) == damaged
    assert any(recovery.moved_to in w and f"{back} values restored" in w for w in first.warnings)
    assert sorted(p.name for p in path.iterdir() if ".salva" in p.name) == []

    second = await start(path, caplog)  # the salvaged file is the store now
    assert not second.recovery.damaged
    assert second.held == first.held
    assert second.warnings == []


def test_salvage_recovers_every_row_of_a_sound_file(template: Path) -> None:
    """Read without SQLite, an intact file gives what SQLite gives: the page reader
    misses nothing and counts no page unread."""
    path = template / FILE_NAME
    direct, through_sqlite = storage._Found(), storage._Found()
    storage._read_pages(path, direct)
    storage._read_sql(path, through_sqlite)
    assert direct.complete
    assert direct.unread_pages == 0
    assert direct.lost_rows == 0
    assert direct.log == through_sqlite.log
    assert direct.state == through_sqlite.state
    assert direct.keys() == TOTAL


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_flipped_bits_cost_the_rows_they_hit(
    template: Path, tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Five bits flipped at places drawn from a seeded generator among the bytes of
    the values' text (runs of x and y), so that they land in rows whatever the
    file's layout: the rows fail their checksums; SQLite's check finds the file
    sound, so it is not salvaged."""
    path = copy(template, tmp_path)
    data = bytearray((path / FILE_NAME).read_bytes())
    in_rows = [i for run in re.finditer(rb"x{16,}|y{16,}", data) for i in range(*run.span())]
    rng = random.Random(seed)
    for _ in range(5):
        data[rng.choice(in_rows)] ^= 1 << rng.randrange(8)
    (path / FILE_NAME).write_bytes(bytes(data))

    first = await start(path, caplog)
    recovery = first.recovery
    back = len(first.held)
    assert not recovery.damaged
    assert 1 <= recovery.lost_rows <= 5
    assert back >= TOTAL - 5
    assert first.keys == TOTAL
    assert recovery.lost_keys >= 1
    assert recovery.lost_keys + recovery.missing_keys == TOTAL - back
    assert any(f"{recovery.lost_keys} keys lost" in w for w in first.warnings)


def sqlite_finds_it_sound(path: Path) -> bool:
    """What SQLite's own check says of a file, read apart from pydds (read-only)."""
    try:
        raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [row[0] for row in raw.execute("PRAGMA quick_check")] == ["ok"]
        finally:
            raw.close()
    except sqlite3.DatabaseError:
        return False


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
async def test_bytes_overwritten_at_random_places(
    template: Path, tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty bytes set to random values at seeded random places: some land in rows,
    some may land in the b-tree (then SQLite's check fails and the file is
    salvaged), one may land in the row of the directory. Where exactly depends on
    the template's layout, which differs from run to run (CRDT client ids are
    random), so what is expected is read from the damaged file itself. Whatever is
    lost is counted."""
    path = copy(template, tmp_path)
    data = bytearray((path / FILE_NAME).read_bytes())
    rng = random.Random(seed)
    for _ in range(20):
        data[rng.randrange(len(data))] = rng.randrange(256)
    (path / FILE_NAME).write_bytes(bytes(data))
    sound = sqlite_finds_it_sound(path / FILE_NAME)

    first = await start(path, caplog)
    recovery = first.recovery
    back = len(first.held)
    assert recovery.damaged == (not sound)
    assert recovery.lost_keys >= 1
    # Every key not back is accounted for (a key that lost a log row may still come
    # back from its compacted state, so counts of lost keys may include it).
    assert back + recovery.missing_keys <= TOTAL
    assert TOTAL - back <= recovery.lost_keys + recovery.missing_keys + recovery.lost_rows
    if ("db", "") not in recovery.damaged_keys:
        assert back >= TOTAL - 20
    assert any(f"{recovery.lost_keys} keys lost" in w for w in first.warnings)

    second = await start(path, caplog)
    assert second.held == first.held


async def test_a_damaged_directory_row_costs_the_keys_it_listed(
    template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes in the middle of the directory's compacted row overwritten: the
    directory, folded into that one row by the compaction, loses every key it
    listed then, and their stored values go with it (they would come back from
    peers); each is counted lost."""
    path = copy(template, tmp_path)
    raw = sqlite3.connect(path / FILE_NAME)
    try:
        (row,) = raw.execute("SELECT data FROM state WHERE db = 'db' AND key = ''").fetchall()
    finally:
        raw.close()
    data = bytearray((path / FILE_NAME).read_bytes())
    head = bytes(row[0])[:64]
    assert data.count(head) == 1  # the row's first bytes, on its first page
    at = data.index(head) + 32
    data[at : at + 8] = bytes(b ^ 0x5A for b in data[at : at + 8])
    (path / FILE_NAME).write_bytes(bytes(data))

    first = await start(path, caplog)
    recovery = first.recovery
    back = len(first.held)
    assert not recovery.damaged  # SQLite's check does not read inside rows
    assert ("db", "") in recovery.damaged_keys
    assert back < TOTAL // 2
    assert recovery.lost_keys > TOTAL // 2
    assert TOTAL - back <= recovery.lost_keys + recovery.missing_keys
    assert any(f"{recovery.lost_keys} keys lost" in w for w in first.warnings)

    second = await start(path, caplog)
    assert second.held == first.held


async def test_a_key_that_is_no_utf8_costs_its_row(
    template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A byte of a key's text changed into one that is no UTF-8: SQLite's check finds
    nothing (text is not checked), and reading the row must not fail the start."""
    path = copy(template, tmp_path)
    data = (path / FILE_NAME).read_bytes()
    assert data.count(b"dbk050") == 1  # the row's database and key, side by side
    (path / FILE_NAME).write_bytes(data.replace(b"dbk050", b"db\xff050"))

    first = await start(path, caplog)
    assert not first.recovery.damaged
    assert first.recovery.lost_rows == 1
    assert sorted(EXPECTED.keys() - first.held.keys()) == ["k050"]
    assert first.recovery.lost_keys + first.recovery.missing_keys == 1


# -- the WAL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files of a node that died with its commits in the WAL (not yet copied into
    the file): copied while it runs."""
    live, image = tmp_path_factory.mktemp("live"), tmp_path_factory.mktemp("crashed")

    async def run() -> None:
        async with pydds.Node(modules=[Persistence(path=str(live), compact_at=10**6)]) as node:
            db = node.database("db")
            for i in range(SMALL):
                await db.set(f"k{i:03}", EXPECTED[f"k{i:03}"], ack="durable")
            for suffix in ("", "-wal", "-shm"):
                shutil.copyfile(live / f"{FILE_NAME}{suffix}", image / f"{FILE_NAME}{suffix}")

    asyncio.run(run())
    assert Path(f"{image / FILE_NAME}-wal").stat().st_size > 100 * 4096
    return image


def spoil_file(path: Path, spoil: Callable[[bytes], bytes]) -> None:
    path.write_bytes(spoil(path.read_bytes()))


async def test_a_crash_image_restores_whole(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = copy(crashed, tmp_path)
    first = await start(path, caplog)
    assert not first.recovery.damaged
    assert len(first.held) == SMALL


async def test_a_damaged_wal_is_salvaged(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite would drop every commit after the damaged frame, silently; the store
    sees commits past a frame that fails its checksum, and salvages."""
    path = copy(crashed, tmp_path)
    wal = Path(f"{path / FILE_NAME}-wal")
    spoil_file(wal, overwrite_middle)
    damaged = await asyncio.to_thread(wal.read_bytes)

    first = await start(path, caplog)
    assert first.recovery.damaged
    # Each commit wrote the pages it changed again: the damaged frame's page has a
    # later copy, and rows have checksums, so what came after is not lost.
    assert len(first.held) >= SMALL - PAGE
    assert first.recovery.moved_to is not None
    kept = Path(f"{first.recovery.moved_to}-wal")
    assert await asyncio.to_thread(kept.read_bytes) == damaged
    second = await start(path, caplog)
    assert not second.recovery.damaged
    assert second.held == first.held


async def test_a_file_that_is_not_sqlite_beside_a_damaged_wal(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file's header is garbage and its WAL damaged: SQLite cannot open either.
    The pages the WAL holds are read directly (its page size is in its own header):
    what its frames hold comes back, both files are kept aside as they were."""
    path = copy(crashed, tmp_path)
    main, wal = path / FILE_NAME, Path(f"{path / FILE_NAME}-wal")
    spoil_file(main, lambda d: random.Random(4).randbytes(100) + d[100:])
    spoil_file(wal, lambda d: overwrite_a_frame(d, rewritten_later=True))
    damaged = await asyncio.to_thread(main.read_bytes), await asyncio.to_thread(wal.read_bytes)

    first = await start(path, caplog)
    assert first.recovery.damaged
    assert not first.recovery.complete  # the header gave no page count
    assert len(first.held) == SMALL  # later frames hold newer copies of the damaged one
    assert first.recovery.moved_to is not None
    kept = Path(first.recovery.moved_to)
    assert await asyncio.to_thread(kept.read_bytes) == damaged[0]
    assert await asyncio.to_thread(Path(f"{kept}-wal").read_bytes) == damaged[1]
    second = await start(path, caplog)
    assert not second.recovery.damaged
    assert second.held == first.held


async def test_a_damaged_frame_that_holds_the_last_copy_of_its_page(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What that frame alone held is gone (the log's leaves are written once full,
    never again) and counted: every key is either back or counted lost, and a
    damaged row whose id does not read is not counted lost when the rows its
    neighbours' ids leave room for were found (in older copies of the page)."""
    path = copy(crashed, tmp_path)
    main, wal = path / FILE_NAME, Path(f"{path / FILE_NAME}-wal")
    spoil_file(main, lambda d: random.Random(4).randbytes(100) + d[100:])
    spoil_file(wal, lambda d: overwrite_a_frame(d, rewritten_later=False))

    first = await start(path, caplog)
    assert first.recovery.damaged
    assert len(first.held) >= SMALL - PAGE
    assert len(first.held) + first.recovery.lost_keys == SMALL
    assert any(f"{first.recovery.lost_keys} keys lost" in w for w in first.warnings)
    assert any(f"{first.recovery.lost_rows} rows lost" in w for w in first.warnings)
    # Two rows a key. Beyond that, at most the cells the 64 bytes hit: a damaged cell
    # at the edge of its page whose id does not read has no neighbours to bound it,
    # so it is counted lost (an upper bound: the log's newest rows could be there),
    # even when every row turns out to have been found elsewhere (then no key is).
    assert first.recovery.lost_rows <= first.recovery.lost_keys * 2 + 2


async def test_a_wal_cut_short_loses_its_last_commits_only(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A WAL that ends early is what a crash leaves (no damage, nothing salvaged):
    the commits it still holds whole come back, in order, the rest are gone."""
    path = copy(crashed, tmp_path)
    spoil_file(Path(f"{path / FILE_NAME}-wal"), lambda d: d[: len(d) // 2 + 1000])
    first = await start(path, caplog)
    assert not first.recovery.damaged
    back = len(first.held)
    assert SMALL // 4 < back < SMALL
    assert sorted(first.held) == [f"k{i:03}" for i in range(back)]


async def test_a_garbage_shm_is_rebuilt(
    crashed: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = copy(crashed, tmp_path)
    garbage = random.Random(3).randbytes(32768)
    await asyncio.to_thread(Path(f"{path / FILE_NAME}-shm").write_bytes, garbage)
    first = await start(path, caplog)
    assert not first.recovery.damaged
    assert len(first.held) == SMALL


# -- a salvage that fails or is cut short ---------------------------------------------------


async def test_a_failed_salvage_leaves_the_damaged_file_in_place(
    template: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's second failure: the damaged file was moved aside, then the copy
    failed, and the next start found no file. Now the file stays until its
    replacement is complete."""
    path = copy(template, tmp_path)
    damaged = zero_page((path / FILE_NAME).read_bytes(), root(template, "log"))
    (path / FILE_NAME).write_bytes(damaged)

    def full(self: storage._Found, target: Path) -> None:
        target.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(storage._Found, "write", full)
        with pytest.raises(pydds.ModuleError, match=r"cannot salvage .* No space left"):
            await start(path, caplog)
    assert (path / FILE_NAME).read_bytes() == damaged
    assert [p.name for p in path.glob(f"{FILE_NAME}.*") if not p.name.endswith(".lock")] == []

    first = await start(path, caplog)  # the lock was released; the salvage is done again
    assert first.recovery.damaged
    assert len(first.held) == TOTAL


async def test_a_salvage_cut_short_by_a_crash_is_finished(
    template: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash after the salvaged file is complete, before it replaced the damaged one:
    the next start puts it in place (and does not salvage again)."""
    path = copy(template, tmp_path)
    damaged = zero_page((path / FILE_NAME).read_bytes(), root(template, "log"))
    (path / FILE_NAME).write_bytes(damaged)

    def crash(self: storage.SqliteStore, tag: str) -> Path:
        raise OSError("the power went off")

    with monkeypatch.context() as patched:
        patched.setattr(storage.SqliteStore, "_finish_salvage", crash)
        with pytest.raises(pydds.ModuleError, match="the power went off"):
            await start(path, caplog)
    assert (path / FILE_NAME).read_bytes() == damaged
    assert [p.name for p in path.glob(f"{FILE_NAME}.salvaged-*")] != []

    first = await start(path, caplog)
    assert first.recovery.damaged
    assert first.recovery.moved_to is not None
    assert await asyncio.to_thread(Path(first.recovery.moved_to).read_bytes) == damaged
    assert len(first.held) == TOTAL
    assert any("a crash interrupted" in w for w in caplog.messages)
    assert [p.name for p in path.glob(f"{FILE_NAME}.salva*")] == []


# -- any damage ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"crc INTEGER", b"crx INTEGER"),  # a column renamed: SQLite's check finds nothing
        (b"TABLE log", b"TABLE l\xe0g"),  # SQLite's error quotes bytes that are no UTF-8
    ],
)
async def test_a_damaged_schema_is_salvaged(
    template: Path, tmp_path: Path, old: bytes, new: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """The text of the tables' schema damaged: the store reads no row through SQLite,
    and the pages, read directly, still hold them all."""
    path = copy(template, tmp_path)
    spoil_file(path / FILE_NAME, lambda d: d.replace(old, new, 1))
    first = await start(path, caplog)
    assert first.recovery.damaged
    assert len(first.held) == TOTAL
    second = await start(path, caplog)
    assert not second.recovery.damaged
    assert second.held == first.held


def spoil_at_random(rng: random.Random, data: bytes) -> bytes:
    """One of five kinds of damage, at places and of sizes drawn from ``rng``."""
    spoilt, size = bytearray(data), 4096
    kind = rng.randrange(5)
    if kind == 0:  # a page zeroed
        at = rng.randrange(max(1, len(data) // size)) * size
        spoilt[at : at + size] = bytes(len(spoilt[at : at + size]))
    elif kind == 1:  # bits flipped
        for _ in range(rng.randrange(1, 50)):
            spoilt[rng.randrange(len(spoilt))] ^= 1 << rng.randrange(8)
    elif kind == 2:  # cut short
        del spoilt[rng.randrange(len(spoilt) + 1) :]
    elif kind == 3:  # a run of garbage
        at, n = rng.randrange(len(spoilt)), rng.randrange(1, 9000)
        spoilt[at : at + n] = rng.randbytes(n)
    else:  # bytes set at random all over
        for _ in range(rng.randrange(1, 2000)):
            spoilt[rng.randrange(len(spoilt))] = rng.randrange(256)
    return bytes(spoilt)


@pytest.mark.parametrize("seed", range(4))
def test_any_damage_opens(template: Path, crashed: Path, tmp_path: Path, seed: int) -> None:
    """Fifty damages a seed, to a cleanly closed file or to a crashed node's file or
    WAL: opening never fails nor hangs (reading what SQLite misreads past damage), and
    a second opening finds a sound file with the same content."""
    rng = random.Random(seed)
    for i in range(50):
        source = crashed if rng.random() < 0.3 else template
        path = tmp_path / str(i)
        shutil.copytree(source, path)
        wal = source is crashed and rng.random() < 0.6
        spoil_file(path / f"{FILE_NAME}{'-wal' if wal else ''}", lambda d: spoil_at_random(rng, d))
        store = storage.SqliteStore(path)
        try:
            loaded = store.load()
        finally:
            store.close()
        again = storage.SqliteStore(path)
        try:
            assert not again.recovery.damaged, i
            assert again.load().values == loaded.values, i
        finally:
            again.close()
