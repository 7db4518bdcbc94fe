"""Unit tests of the row sequence over blobs: windows, wrapping, the stored position."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from include.painting_simulator.sequence import (
    NoRowsError,
    Position,
    Window,
    locate,
    take_window,
)

Row = dict[str, Any]


def blobs(**sizes: int) -> dict[str, list[Row]]:
    """In-memory blobs ``name.csv -> rows``; each row says where it comes from."""
    return {
        f"{name}.csv": [{"blob": f"{name}.csv", "i": i} for i in range(size)]
        for name, size in sizes.items()
    }


def cycle(store: dict[str, list[Row]]) -> list[tuple[str, int]]:
    """One lap of the sequence: every (blob, row) in name order."""
    return [(name, i) for name in sorted(store) for i in range(len(store[name]))]


def keys(window: Window) -> list[tuple[str, int]]:
    return [(blob, row) for blob, row, _ in window.rows]


def walk(
    store: dict[str, list[Row]], batch: int, n: int, names: Sequence[str] | None = None
) -> list[Window]:
    """``n`` consecutive windows from the start, each starting where the previous one ended."""
    names = list(store) if names is None else names
    windows, position = [], None
    for _ in range(n):
        window = take_window(names, position, batch, store.get)
        windows.append(window)
        position = window.next_position
    return windows


# --- take_window ---------------------------------------------------------------------------


def test_first_window_starts_at_the_first_row_of_the_first_blob() -> None:
    store = blobs(a=4, b=3)
    window = take_window(list(store), None, 3, store.get)
    assert keys(window) == [("a.csv", 0), ("a.csv", 1), ("a.csv", 2)]
    assert window.next_position == Position("a.csv", 3)
    assert window.warnings == []
    assert window.wrapped is False


def test_window_rows_carry_the_loaded_row_data() -> None:
    store = blobs(a=2)
    window = take_window(list(store), None, 2, store.get)
    assert [data for _, _, data in window.rows] == store["a.csv"]


def test_window_spans_a_blob_boundary_and_skips_empty_blobs() -> None:
    store = blobs(a=4, b=0, c=3)
    window = take_window(list(store), Position("a.csv", 3), 3, store.get)
    assert keys(window) == [("a.csv", 3), ("c.csv", 0), ("c.csv", 1)]
    assert window.next_position == Position("c.csv", 2)
    assert window.wrapped is False


def test_window_wraps_from_the_last_blob_to_the_first() -> None:
    store = blobs(a=4, b=0, c=3)
    window = take_window(list(store), Position("c.csv", 2), 3, store.get)
    assert keys(window) == [("c.csv", 2), ("a.csv", 0), ("a.csv", 1)]
    assert window.next_position == Position("a.csv", 2)
    assert window.wrapped is True


def test_twenty_consecutive_windows_are_the_repeated_sequence_without_gap_or_overlap() -> None:
    store = blobs(a=4, b=0, c=3)
    windows = walk(store, batch=3, n=20)
    sent = [key for window in windows for key in keys(window)]
    lap = cycle(store)
    assert len(lap) == 7
    assert sent == (lap * 9)[:60]
    assert all(len(window.rows) == 3 for window in windows)


def test_windows_follow_name_order_whatever_order_the_names_are_listed_in() -> None:
    store = blobs(b=2, a=2, c=2)
    window = take_window(["c.csv", "a.csv", "b.csv"], None, 6, store.get)
    assert keys(window) == cycle(store)
    assert [blob for blob, _, _ in window.rows] == ["a.csv"] * 2 + ["b.csv"] * 2 + ["c.csv"] * 2


def test_a_blob_added_after_the_position_joins_before_the_wrap() -> None:
    store = blobs(a=2, b=2)
    position = Position("a.csv", 1)
    store.update(blobs(ab=2))  # sorts between a.csv and b.csv
    window = take_window(list(store), position, 4, store.get)
    assert keys(window) == [("a.csv", 1), ("ab.csv", 0), ("ab.csv", 1), ("b.csv", 0)]


def test_a_blob_added_before_the_position_joins_after_the_wrap() -> None:
    store = blobs(b=2, c=2)
    position = Position("c.csv", 1)
    store.update(blobs(a=2))  # sorts first: reached only after the wrap
    window = take_window(list(store), position, 3, store.get)
    assert keys(window) == [("c.csv", 1), ("a.csv", 0), ("a.csv", 1)]
    assert window.wrapped is True


def test_the_stored_blob_disappeared_continue_with_the_next_name_and_warn() -> None:
    store = blobs(a=2, c=2)  # b.csv, where we were, is gone
    window = take_window(list(store), Position("b.csv", 1), 2, store.get)
    assert keys(window) == [("c.csv", 0), ("c.csv", 1)]
    assert len(window.warnings) == 1
    assert "'b.csv'" in window.warnings[0]
    assert "'c.csv'" in window.warnings[0]


def test_the_stored_blob_was_the_last_name_and_disappeared_wrap_to_the_first() -> None:
    store = blobs(a=2, b=2)
    window = take_window(list(store), Position("z.csv", 5), 1, store.get)
    assert keys(window) == [("a.csv", 0)]
    assert "'z.csv'" in window.warnings[0]


def test_a_blob_gone_between_listing_and_reading_is_skipped_with_a_warning() -> None:
    store: dict[str, list[Row] | None] = {**blobs(a=1, c=1), "b.csv": None}
    window = take_window(list(store), Position("a.csv", 0), 2, store.get)
    assert keys(window) == [("a.csv", 0), ("c.csv", 0)]
    assert any("'b.csv'" in w and "disappeared" in w for w in window.warnings)


def test_a_position_beyond_the_blobs_length_moves_on_to_the_next_blob() -> None:
    store = blobs(a=3, b=2)  # a.csv was longer when the position was stored
    window = take_window(list(store), Position("a.csv", 10), 2, store.get)
    assert keys(window) == [("b.csv", 0), ("b.csv", 1)]


def test_a_position_at_the_end_of_a_blob_starts_the_next_blob() -> None:
    store = blobs(a=3, b=2)
    window = take_window(list(store), Position("a.csv", 3), 1, store.get)
    assert keys(window) == [("b.csv", 0)]


@pytest.mark.parametrize("start", [None, Position("a.csv", 2), Position("c.csv", 1)])
def test_a_batch_larger_than_the_sequence_sends_it_once_and_starts_there_again(
    start: Position | None,
) -> None:
    store = blobs(a=4, b=0, c=3)
    window = take_window(list(store), start, 100, store.get)
    sent = keys(window)
    assert len(sent) == len(set(sent)) == 7
    assert sorted(sent) == sorted(cycle(store))
    expected_first = (start.blob, start.row) if start else ("a.csv", 0)
    assert sent[0] == expected_first
    again = take_window(list(store), window.next_position, 100, store.get)
    assert keys(again) == sent


def test_a_batch_exactly_the_sequence_length_ends_where_it_began() -> None:
    store = blobs(a=2, b=3)
    first = take_window(list(store), Position("b.csv", 1), 5, store.get)
    second = take_window(list(store), first.next_position, 5, store.get)
    assert keys(first) == keys(second)
    assert len(keys(first)) == 5


@pytest.mark.parametrize(
    "store",
    [{}, blobs(a=0), blobs(a=0, b=0, c=0), {"a.csv": None, "b.csv": []}],
    ids=["no-blob", "one-empty-blob", "all-empty", "gone-and-empty"],
)
def test_no_rows_anywhere_is_no_rows_error(store: dict[str, list[Row] | None]) -> None:
    with pytest.raises(NoRowsError):
        take_window(list(store), None, 3, store.get)


def test_no_rows_error_also_from_a_stored_position() -> None:
    store = blobs(a=0, b=0)
    with pytest.raises(NoRowsError):
        take_window(list(store), Position("a.csv", 5), 3, store.get)


@pytest.mark.parametrize("batch", [0, -1])
def test_a_batch_size_below_one_is_rejected(batch: int) -> None:
    store = blobs(a=3)
    with pytest.raises(ValueError, match="batch_size"):
        take_window(list(store), None, batch, store.get)


def test_random_walks_concatenate_to_the_cyclic_sequence() -> None:
    """Property (hypothesis-style, with a fixed seed): N windows == the sequence, repeated."""
    rng = random.Random(20250723)
    for case in range(300):
        sizes = [rng.choice([0, 0, 1, 2, 3, 5, 8]) for _ in range(rng.randint(1, 5))]
        if not any(sizes):
            sizes[rng.randrange(len(sizes))] = rng.randint(1, 4)
        store = {f"{i:02d}.csv": [{"i": j} for j in range(n)] for i, n in enumerate(sizes)}
        names = list(store)
        rng.shuffle(names)
        lap = cycle(store)
        batch = rng.randint(1, len(lap) + 3)
        # Any stored position: the start, any row of any blob, or the end of a blob.
        position: Position | None = None
        start = 0
        if rng.random() < 0.8:
            blob_index = rng.randrange(len(sizes))
            row = rng.randint(0, sizes[blob_index])
            position = Position(sorted(store)[blob_index], row)
            start = (sum(sizes[:blob_index]) + row) % len(lap)
        context = f"case {case}: sizes={sizes} batch={batch} start={position}"
        sent: list[tuple[str, int]] = []
        for _ in range(rng.randint(1, 12)):
            window = take_window(names, position, batch, store.get)
            got = keys(window)
            assert len(got) == min(batch, len(lap)), context
            assert len(set(got)) == len(got), context
            sent += got
            position = window.next_position
        expected = [lap[(start + i) % len(lap)] for i in range(len(sent))]
        if batch >= len(lap):  # every window is the whole sequence from the same start
            expected = (lap[start:] + lap[:start]) * (len(sent) // len(lap))
        assert sent == expected, context


# --- locate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start_row", "expected"),
    [
        (0, Position("a.csv", 0)),
        (3, Position("a.csv", 3)),
        (4, Position("c.csv", 0)),  # the empty b.csv holds no row
        (6, Position("c.csv", 2)),
        (7, Position("a.csv", 0)),  # wraps
        (7 * 3 + 5, Position("c.csv", 1)),
    ],
)
def test_locate_maps_a_global_row_to_its_blob_and_row(start_row: int, expected: Position) -> None:
    store = blobs(c=3, a=4, b=0)
    assert locate(list(store), start_row, store.get) == expected


def test_locate_then_take_window_starts_at_that_global_row() -> None:
    store = blobs(a=4, b=0, c=3)
    window = take_window(list(store), locate(list(store), 5, store.get), 3, store.get)
    assert keys(window) == cycle(store)[5:] + cycle(store)[:1]


def test_locate_rejects_a_negative_row() -> None:
    store = blobs(a=3)
    with pytest.raises(ValueError, match="start_row"):
        locate(list(store), -1, store.get)


def test_locate_without_rows_is_no_rows_error() -> None:
    store: dict[str, list[Row] | None] = {"a.csv": [], "b.csv": None}
    with pytest.raises(NoRowsError):
        locate(list(store), 0, store.get)


# --- Position ------------------------------------------------------------------------------


def test_position_round_trips_through_json() -> None:
    position = Position("painting-process-equipment/2025-07.csv", 42)
    assert Position.from_json(position.to_json()) == position


def test_position_from_json_accepts_the_extra_keys_the_dag_stores() -> None:
    stored = {
        "blob": "b.csv",
        "row": 3,
        "run_id": "scheduled__2026-01-01T00:01:00+00:00",
        "window_start": {"blob": "a.csv", "row": 7},
    }
    assert Position.from_json(stored) == Position("b.csv", 3)


@pytest.mark.parametrize("empty", [None, {}, ""])
def test_no_stored_position_means_the_start(empty: Any) -> None:
    assert Position.from_json(empty) is None


def test_a_stored_position_without_row_starts_the_blob() -> None:
    assert Position.from_json({"blob": "a.csv"}) == Position("a.csv", 0)


@pytest.mark.parametrize(
    "value",
    [
        {"row": 3},
        {"blob": 7, "row": 3},
        {"blob": "a.csv", "row": -1},
        {"blob": "a.csv", "row": "3"},
        {"blob": "a.csv", "row": 1.5},
        {"blob": "a.csv", "row": None},
        ["a.csv", 3],
        "a.csv",
    ],
)
def test_a_malformed_stored_position_is_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match="stored position"):
        Position.from_json(value)


def test_a_boolean_row_is_rejected() -> None:
    with pytest.raises(ValueError, match="stored position"):
        Position.from_json({"blob": "a.csv", "row": True})


def test_a_blob_without_data_rows_is_skipped_with_one_warning() -> None:
    store = {"a.csv": [], **blobs(b=2)}
    window = take_window(list(store), None, 5, store.get)
    assert keys(window) == [("b.csv", 0), ("b.csv", 1)]
    assert window.warnings == ["blob 'a.csv' has no data rows (empty or a header only); skipped"]


def test_an_unreadable_file_takes_one_place_in_the_sequence() -> None:
    # parse_csv gives one error entry for a file it cannot read: recorded once, then moved past.
    store = {"a.csv": [{"__error__": "not text", "__file__": True}], **blobs(b=1)}
    first, second = walk(store, 1, 2)
    assert keys(first) == [("a.csv", 0)]
    assert first.next_position == Position("a.csv", 1)
    assert keys(second) == [("b.csv", 0)]
