"""The peers' checks and the rebuild advice the bench gives when llama.cpp's native code
dies: SIGILL (built for instructions this CPU lacks) asks for a native build, other
crashes (the AMX segfault seen on a Xeon) for the AVX-512 build without AMX."""

from __future__ import annotations

import signal

import pytest

from hearth.bench.peers import check_peer, llama_cpp_rebuild_hint
from hearth.errors import UserInputError


def test_illegal_instruction_asks_for_a_native_build() -> None:
    hint = llama_cpp_rebuild_hint(signal.SIGILL)
    assert "-DGGML_NATIVE=ON" in hint and "AMX" not in hint
    assert "pip install --force-reinstall" in hint


def test_other_crashes_ask_for_the_build_without_amx() -> None:
    hint = llama_cpp_rebuild_hint(signal.SIGSEGV)
    assert "-DGGML_AMX_INT8=OFF" in hint and "-DGGML_NATIVE=OFF" in hint
    # AVX-VNNI (VEX) is not AVX-512 VNNI: Zen 4 has only the latter, and dies of SIGILL
    assert "GGML_AVX_VNNI" not in hint


def test_unknown_peer_lists_the_peers() -> None:
    with pytest.raises(UserInputError, match=r"llama\.cpp, transformers"):
        check_peer("vllm")
