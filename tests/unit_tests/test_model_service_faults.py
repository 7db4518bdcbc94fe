"""Unit tests of the model service's fault plan: seeded draws, mix, filters, limit, counts."""

from __future__ import annotations

from collections import Counter

import pytest

from include.model_service.faults import FAULT_KINDS, FaultConfig, FaultPlan, parse_mix


def draws(config: FaultConfig, calls: int, machine: str | None = "PAINT-1") -> list[str | None]:
    plan = FaultPlan(config)
    return [plan.draw(machine) for _ in range(calls)]


def test_off_by_default_injects_nothing():
    assert FaultConfig().enabled is False
    assert draws(FaultConfig(), 100) == [None] * 100


def test_the_rate_and_the_mix_are_honoured():
    faults = [kind for kind in draws(FaultConfig(rate=0.3, seed=1), 7000) if kind]
    assert 0.27 < len(faults) / 7000 < 0.33
    counts = Counter(faults)
    assert set(counts) == set(FAULT_KINDS)
    assert all(200 < n < 400 for n in counts.values()), counts  # about 300 each


def test_a_seed_gives_the_same_faults_in_the_same_order():
    config = FaultConfig(rate=0.5, seed=42)
    assert draws(config, 200) == draws(config, 200)
    assert draws(config, 200) != draws(FaultConfig(rate=0.5, seed=43), 200)


def test_a_kind_named_twice_is_drawn_twice_as_often():
    counts = Counter(draws(FaultConfig(rate=1.0, mix=("500", "500", "drop"), seed=3), 3000))
    assert 1.7 < counts["500"] / counts["drop"] < 2.3


def test_only_the_chosen_machines_get_faults_and_the_limit_stops_them():
    plan = FaultPlan(FaultConfig(rate=1.0, mix=("slow",), limit=2, machine_ids=frozenset({"X"})))
    assert [plan.draw("Y"), plan.draw("X"), plan.draw(None), plan.draw("X"), plan.draw("X")] == [
        None,
        "slow",
        None,
        "slow",
        None,
    ]
    stats = plan.stats()
    assert stats["calls"] == 5
    assert stats["injected"]["slow"] == stats["injected_total"] == 2


def test_parse_mix_names_the_unknown_kind():
    assert parse_mix("500, slow ,drop") == ("500", "slow", "drop")
    with pytest.raises(ValueError, match=r"unknown kind.*timeout"):
        parse_mix("500,timeout")
    with pytest.raises(ValueError, match="rate"):
        FaultConfig(rate=1.5)
