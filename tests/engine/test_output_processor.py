"""RequestState (hearth.engine.output_processor) with SmolLM2's real tokenizer: output
tokens become text incrementally, stop strings end it and are held back (never
retracted), EOS-like tokens add no text, deltas report only what is new, and a sequence
that ends without a stop string releases what was held back."""

from __future__ import annotations

from typing import Any

from hearth.engine.output_processor import RequestState
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.sequence import Sequence, SequenceStatus

EOS = frozenset({2})


def _state(tokenizer: Any, **params: Any) -> tuple[RequestState, Sequence]:
    prompt = tokenizer.encode("Say hi:", add_special_tokens=False)
    seq = Sequence("r1", prompt, SamplingParams(**params), block_size=16)
    return RequestState("r1", "Say hi:", prompt, [seq], tokenizer), seq


def _feed(state: RequestState, seq: Sequence, ids: list[int]) -> str | None:
    for tok in ids:
        seq.append_token(tok)
    return state.absorb(state.text_state(seq), EOS)


def test_deltas_report_only_what_is_new(smollm2_tokenizer: Any) -> None:
    state, seq = _state(smollm2_tokenizer)
    decode = smollm2_tokenizer.decode
    assert state.make_output(decode) is None  # nothing generated yet
    first = smollm2_tokenizer.encode(" Hello", add_special_tokens=False)
    assert _feed(state, seq, first) is None
    out = state.make_output(decode)
    assert out is not None and not out.finished
    (c,) = out.outputs
    assert (c.text, c.delta_text, c.delta_token_ids) == (" Hello", " Hello", first)
    assert state.make_output(decode) is None
    more = smollm2_tokenizer.encode(" world", add_special_tokens=False)
    _feed(state, seq, [*more, 2])  # EOS adds no text
    seq.status, seq.finish_reason = SequenceStatus.FINISHED, "stop"
    state.flush(state.text_state(seq))
    out = state.make_output(decode)
    assert out is not None and out.finished
    (c,) = out.outputs
    assert c.text == " Hello world" and c.delta_text == " world"
    assert c.delta_token_ids == [*more, 2] and c.finish_reason == "stop"


def test_a_stop_string_ends_the_text_and_is_never_sent(smollm2_tokenizer: Any) -> None:
    state, seq = _state(smollm2_tokenizer, stop=["END"])
    ids = smollm2_tokenizer.encode(" one two EN", add_special_tokens=False)
    assert _feed(state, seq, ids) is None
    out = state.make_output(smollm2_tokenizer.decode)
    assert out is not None and "EN" not in out.outputs[0].text  # could begin "END": held
    assert out.outputs[0].text.startswith(" one two")
    rest = smollm2_tokenizer.encode("D three", add_special_tokens=False)
    assert _feed(state, seq, rest) == "END"
    assert state.text_state(seq).text == " one two "


def test_held_back_text_is_released_when_no_stop_came(smollm2_tokenizer: Any) -> None:
    state, seq = _state(smollm2_tokenizer, stop=["END"])
    _feed(state, seq, smollm2_tokenizer.encode(" so EN", add_special_tokens=False))
    st = state.text_state(seq)
    assert not st.text.endswith("EN")
    state.flush(st)
    assert st.text == " so EN"
