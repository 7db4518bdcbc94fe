"""A replay shard's summary made from a tally, as ``replay.shard.run_shard`` returns it."""

from __future__ import annotations

from typing import Any

from include.painting_simulator.replay import figures


def shard_summary_of(
    tally: figures.Tally, shard: int = 0, start_row: int = 0, throughput: float | None = None
) -> dict[str, Any]:
    """The summary of a shard that recorded ``tally`` (throughput: rows per second of tally
    time unless given)."""
    return {
        **tally.to_json(),
        "shard": shard,
        "start_row": start_row,
        "throughput_rows_per_second": (
            throughput if throughput is not None else tally.rows / (tally.seconds or 1.0)
        ),
        "latency_ms": figures.latency_ms(tally.latency),
    }
