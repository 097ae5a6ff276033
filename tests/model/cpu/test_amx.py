"""amx: AMX is used only where the CPU has it AND Linux granted this process the tile data
state (arch_prctl XCOMP permission); asking never crashes, and where either is missing the
backend routes nothing to it. This machine's answer is whatever its CPU and kernel say;
the tests check the decision follows from them."""

from __future__ import annotations

import logging

import pytest

from hearth.model.cpu import amx, isa
from hearth.model.cpu.backend import CpuBackend, CpuLowbit
from hearth.model.layers.quant import DENSE_MIN_ROWS

AMX_CPU = frozenset({"avx512f", "amx_tile", "amx_int8", "amx_bf16"})


def test_absent_flags_never_ask_linux() -> None:
    decision = amx.decide(frozenset({"avx512f", "avx512_vnni"}))
    assert not decision.usable and decision.why.startswith("absent (no amx_tile, amx_bf16")


def test_the_permission_request_answers_without_crashing() -> None:
    granted, why = amx.request_permission()
    assert isinstance(granted, bool) and why
    if "amx_tile" not in isa.cpu_flags():
        assert not granted  # Linux grants no tile state to a CPU without tiles
    assert amx.request_permission()[0] == granted  # asking twice: the same answer


def test_present_flags_follow_linux() -> None:
    granted, _ = amx.request_permission()
    decision = amx.decide(AMX_CPU)  # the flags say AMX: what Linux says decides
    assert decision.usable is granted
    if not granted:
        assert decision.why.startswith("present but not used:")


def test_decided_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    amx.usable.cache_clear()
    with caplog.at_level(logging.INFO, logger=amx.log.name):
        first, second = amx.usable(), amx.usable()
    assert first is second
    assert [r.getMessage() for r in caplog.records] == [f"AMX: {first.why}"]


def test_the_backend_routes_to_amx_only_when_usable() -> None:
    lowbit = CpuLowbit(CpuBackend())
    usable = amx.usable().usable
    assert lowbit.dense_min_rows == (DENSE_MIN_ROWS if usable else 1 << 62)
