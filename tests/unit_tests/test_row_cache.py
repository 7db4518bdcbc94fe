"""The local row cache: versions by ETag, rebuilds of missing or damaged files, lazy reads."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from include.painting_simulator import csv_format, row_cache
from include.painting_simulator.row_cache import CachedRows, RowCache

BLOB = "devstoreaccount1/simulator-data/painting-process-equipment/line.csv"


def source(count: int, tag: str = "v1") -> bytes:
    """A CSV blob of ``count`` rows: non-ASCII text, a quoted value, and every 7th row an error."""
    lines = ["machineId,timeStamp,Thick,PT_jo_V_1,PT_jo_A_Main_1,PT_jo_TP,tag,note"]
    for i in range(count):
        extra = ",unquoted" if i % 7 == 0 else ""
        lines.append(f'{i % 4 + 1},t{i},19.9,260,70,34,{tag},"도장, 라인 {i}"{extra}')
    return ("\n".join(lines) + "\n").encode()


def indexed(count: int, tag: str = "v1") -> csv_format.Indexed:
    return csv_format.index_csv(source(count, tag))


def rows(count: int, tag: str = "v1") -> list[dict]:
    """What the cache must give back: the entries of the blob as parse_csv reads them."""
    return csv_format.parse_csv(source(count, tag))


def test_stored_rows_come_back_exactly_and_in_order(tmp_path):
    cache = RowCache(str(tmp_path))
    expected = rows(1000)
    stored = cache.store(BLOB, '"0x1"', indexed(1000))
    reopened = cache.open(BLOB, '"0x1"')
    assert reopened is not None
    for cached in (stored, reopened):
        assert len(cached) == 1000
        assert list(cached) == expected
        assert cached[0] == expected[0]
        assert cached[999] == expected[999]
        assert cached[-1] == expected[-1]


def test_slices_and_indexes_behave_like_a_list(tmp_path):
    expected = rows(600)
    cached = RowCache(str(tmp_path)).store(BLOB, "e", indexed(len(expected)))
    for piece in (
        slice(0, 10),
        slice(250, 260),
        slice(590, 700),
        slice(10, 5),
        slice(None, None, 50),
    ):
        assert cached[piece] == expected[piece]
    assert cached[-600] == expected[0]
    with pytest.raises(IndexError):
        cached[600]
    with pytest.raises(IndexError):
        cached[-601]
    # Jumping back and forth across read-ahead blocks.
    for index in (599, 0, 257, 256, 255, 511, 512):
        assert cached[index] == expected[index]


def test_a_window_reads_only_its_lines(tmp_path):
    """Damage a line far from the window: the window still reads, that line does not."""
    cache = RowCache(str(tmp_path))
    cached = cache.store(BLOB, "e", indexed(2000))
    path = Path(cached.path)
    data = bytearray(path.read_bytes())
    start = data.index(b",t1900,")
    data[start : start + 3] = b"\xff\xfe\xfd"
    path.write_bytes(bytes(data))
    damaged = cache.open(BLOB, "e")  # the trailer and offsets are intact
    assert damaged is not None
    assert damaged[10:20] == rows(2000)[10:20]
    with pytest.raises(UnicodeDecodeError):
        damaged[1900]


def test_an_empty_blob_is_cached_as_no_rows(tmp_path):
    cache = RowCache(str(tmp_path))
    assert len(cache.store(BLOB, "e", csv_format.EMPTY)) == 0
    assert list(cache.open(BLOB, "e")) == []


def test_a_new_etag_is_a_miss_and_its_build_replaces_the_old_version(tmp_path):
    cache = RowCache(str(tmp_path))
    cache.store(BLOB, '"0x1"', indexed(5, "v1"))
    assert cache.open(BLOB, '"0x2"') is None
    cache.store(BLOB, '"0x2"', indexed(8, "v2"))
    assert [r.get("tag") for r in cache.open(BLOB, '"0x2"')][1:3] == ["v2", "v2"]
    assert cache.open(BLOB, '"0x1"') is None
    assert len(list(tmp_path.iterdir())) == 1


def test_blobs_do_not_share_entries(tmp_path):
    cache = RowCache(str(tmp_path))
    cache.store(BLOB, "e", indexed(3, "a"))
    cache.store(BLOB + "2", "e", indexed(4, "b"))
    assert len(cache.open(BLOB, "e")) == 3
    assert len(cache.open(BLOB + "2", "e")) == 4


def test_a_wiped_directory_is_a_miss_and_is_recreated(tmp_path):
    directory = tmp_path / "cache"
    cache = RowCache(str(directory))
    cache.store(BLOB, "e", indexed(3))
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    assert cache.open(BLOB, "e") is None
    assert len(cache.store(BLOB, "e", indexed(3))) == 3


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-1], id="last-byte-missing"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"not a cache file at all\n" * 3, id="garbage"),
        pytest.param(lambda data: data[:-32] + b"PAINTRW9" + data[-24:], id="wrong-magic"),
        pytest.param(lambda data: data[:-40] + b"{notjson" + data[-32:], id="bad-header"),
    ],
)
def test_a_partial_or_corrupt_file_is_a_miss_and_is_removed(tmp_path, damage):
    cache = RowCache(str(tmp_path))
    path = Path(cache.store(BLOB, "e", indexed(50)).path)
    path.write_bytes(damage(path.read_bytes()))
    assert cache.open(BLOB, "e") is None
    assert not path.exists()
    assert list(cache.store(BLOB, "e", indexed(50))) == rows(50)


def test_a_reader_keeps_its_version_while_a_builder_replaces_it(tmp_path):
    cache = RowCache(str(tmp_path))
    old = cache.store(BLOB, "e", indexed(300, "old"))
    cache.store(BLOB, "e", indexed(10, "new"))  # same version key rebuilt (e.g. after a wipe)
    assert len(old) == 300
    assert old[299]["tag"] == "old"
    assert cache.open(BLOB, "e")[1]["tag"] == "new"


def _build(directory: str, tag: str) -> None:
    RowCache(directory).store(BLOB, "e", indexed(3000, tag))


def test_concurrent_builders_leave_one_complete_file(tmp_path):
    context = multiprocessing.get_context("fork")
    builders = [context.Process(target=_build, args=(str(tmp_path), f"b{i}")) for i in range(4)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join(60)
        assert builder.exitcode == 0
    cached = RowCache(str(tmp_path)).open(BLOB, "e")
    assert cached is not None
    assert len(cached) == 3000
    assert len({row.get("tag") for row in cached if "tag" in row}) == 1  # one builder's file
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_build_leaves_no_file(tmp_path):
    good = indexed(5)
    broken = csv_format.Indexed(good.header, good.text[:-1], good.starts, good.undecodable)
    cache = RowCache(str(tmp_path))
    with pytest.raises(ValueError, match="does not match"):
        cache.store(BLOB, "e", broken)
    assert list(tmp_path.iterdir()) == []


def test_the_cache_key_changes_with_the_code_that_parsed_the_rows(tmp_path, monkeypatch):
    cache = RowCache(str(tmp_path))
    before = cache.path(BLOB, "e")
    monkeypatch.setattr(row_cache, "format_fingerprint", lambda: "another-parser")
    assert cache.path(BLOB, "e") != before


def test_the_cache_key_is_the_csv_format_modules_code_only():
    """Editing the dashboard or the replay must not throw away every worker's row cache: the key
    hashes csv_format.py (which alone decides what a cached entry is) and nothing else."""
    import hashlib
    from pathlib import Path

    source = Path(csv_format.__file__).read_bytes()
    assert csv_format.format_fingerprint() == hashlib.sha256(source).hexdigest()[:16]


def test_an_unwritable_cache_keeps_the_rows_in_memory(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    kept = RowCache(str(blocker / "cache")).keep(BLOB, "e", indexed(3), size=10)
    assert list(kept) == rows(3)
    assert not isinstance(kept, CachedRows)


def test_the_cache_dir_is_configurable_and_defaults_under_airflow_home():
    assert row_cache.default_cache_dir({"AIRFLOW_HOME": "/opt/af"}) == "/opt/af/painting_cache"
    environ = {"AIRFLOW_HOME": "/opt/af", "PAINTING_CACHE_DIR": "/var/cache/painting"}
    assert row_cache.default_cache_dir(environ) == "/var/cache/painting"


def test_cached_rows_is_a_sequence_for_the_window_arithmetic(tmp_path):
    from include.painting_simulator import sequence

    expected = rows(30)
    cached = RowCache(str(tmp_path)).store(BLOB, "e", indexed(len(expected)))
    blobs = {"a.csv": cached, "b.csv": expected}
    window = sequence.take_window(list(blobs), sequence.Position("a.csv", 25), 10, blobs.get)
    assert [(blob, row) for blob, row, _ in window.rows][:6] == [
        ("a.csv", i) for i in range(25, 30)
    ] + [("b.csv", 0)]
    assert [data for _, _, data in window.rows][:5] == expected[25:30]
    assert sequence.locate(list(blobs), 45, blobs.get) == sequence.Position("b.csv", 15)
    assert isinstance(cached, CachedRows)
    assert os.path.exists(cached.path)
