"""isa: which instruction-set levels a CPU runs (from its flags and architecture), what
`cpu_isa` chooses (auto: the best; none on ARM or an x86 without AVX2), a level the CPU
cannot run refused with a line that says what it lacks, and each level's compiler flags."""

from __future__ import annotations

import platform

import pytest

from hearth.config import load_settings
from hearth.errors import InvalidParameterError, UserInputError
from hearth.model.cpu import isa

ZEN4 = frozenset(
    [
        "fpu",
        "sse2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512dq",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx512_bf16",
    ]
)
HASWELL = frozenset(["fpu", "sse2", "avx", "avx2", "fma", "f16c", "bmi2"])
OLD_X86 = frozenset(["fpu", "sse2", "sse4_2", "avx"])
GRAVITON = frozenset(
    ["fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "sve"]
)


@pytest.mark.parametrize(
    ("flags", "machine", "levels", "auto"),
    [
        (ZEN4, "x86_64", ["avx512", "avx2", "generic"], "avx512"),
        (HASWELL, "x86_64", ["avx2", "generic"], "avx2"),
        (OLD_X86, "x86_64", ["generic"], None),
        (GRAVITON, "aarch64", ["generic"], None),
        (ZEN4, "aarch64", ["generic"], None),  # x86 flag names elsewhere mean nothing
    ],
)
def test_levels_and_auto(
    flags: frozenset[str], machine: str, levels: list[str], auto: str | None
) -> None:
    assert isa.levels_here(flags, machine) == levels
    assert isa.choose("auto", flags, machine) == auto
    for level in levels:
        assert isa.choose(level, flags, machine) == level  # any level it runs may be forced


def test_a_level_the_cpu_lacks_is_refused_saying_why() -> None:
    with pytest.raises(InvalidParameterError, match=r"cpu_isa avx512.*lacks avx512f.*avx512_vnni"):
        isa.choose("avx512", HASWELL, "x86_64")
    with pytest.raises(InvalidParameterError, match=r"cpu_isa avx2.*aarch64, not x86-64.*generic"):
        isa.choose("avx2", GRAVITON, "aarch64")
    with pytest.raises(InvalidParameterError, match=r"auto, avx512, avx2, generic.*'sse9'"):
        isa.choose("sse9", ZEN4, "x86_64")


def test_this_cpu() -> None:
    here = isa.levels_here()
    assert here[-1] == "generic" and here == [lvl for lvl in isa.LEVELS if lvl in here]
    if platform.machine() in isa.X86 and "avx2" in isa.cpu_flags():
        assert "avx2" in here and isa.choose() == here[0]


def test_compile_flags() -> None:
    assert isa.compile_flags("avx512") == ["-march=native"]
    assert "-march=x86-64-v3" in isa.compile_flags("avx2", "x86_64")
    assert isa.compile_flags("generic", "x86_64")[0] == "-march=x86-64"
    assert isa.compile_flags("generic", "aarch64") == []


def test_the_setting() -> None:
    assert load_settings({}).cpu_isa == "auto"
    assert load_settings({"HEARTH_CPU_ISA": "avx2"}).cpu_isa == "avx2"
    with pytest.raises(UserInputError, match=r"HEARTH_CPU_ISA.*auto, avx512, avx2, generic") as err:
        load_settings({"HEARTH_CPU_ISA": "neon"})
    assert err.value.exit_code == 2
