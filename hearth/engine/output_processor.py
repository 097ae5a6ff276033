"""Turns sequences' new tokens into RequestOutputs: incremental detokenization, stop
strings (held back, never retracted), deltas for streaming, logprob texts. One
RequestState per request. Knows nothing of the scheduler, blocks or the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hearth.engine.outputs import CompletionOutput, RequestOutput
from hearth.engine.sequence import Logprob, Sequence
from hearth.engine.stop import StopStringBuffer


def _new_detokenizer(tokenizer: Any, seq: Sequence) -> Any:
    from hearth.tokenizer.detokenizer import IncrementalDetokenizer

    return IncrementalDetokenizer(
        tokenizer,
        prompt_ids=seq.prompt_token_ids,
        skip_special_tokens=seq.params.skip_special_tokens,
    )


@dataclass
class _SeqText:
    seq: Sequence
    detok: Any
    stops: StopStringBuffer
    text: str = ""
    num_tokens_seen: int = 0  # output tokens already turned into text
    num_tokens_reported: int = 0  # output tokens already in a delta
    text_reported: int = 0  # chars of text already in a delta
    final_reported: bool = False


@dataclass
class RequestState:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    seqs: list[Sequence]
    tokenizer: Any
    _texts: list[_SeqText] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._texts = [
            _SeqText(s, _new_detokenizer(self.tokenizer, s), StopStringBuffer(s.params.stop))
            for s in self.seqs
        ]

    @property
    def finished(self) -> bool:
        return all(s.is_finished for s in self.seqs)

    def absorb(self, st: _SeqText, eos_like: frozenset[int]) -> str | None:
        """Detokenize seq's new tokens; returns the stop string matched, if any."""
        seq = st.seq
        out_ids = seq.output_token_ids
        while st.num_tokens_seen < len(out_ids):
            tok = out_ids[st.num_tokens_seen]
            st.num_tokens_seen += 1
            if tok in eos_like:
                continue  # stop / EOS tokens end the text, they are not part of it
            emit, matched = st.stops.feed(st.detok.add(tok))
            st.text += emit
            if matched is not None:
                return matched
        return None

    def flush(self, st: _SeqText) -> None:
        """The sequence ended without a stop string: release held-back text (an unfinished
        character, then text that could have begun a stop string)."""
        emit, matched = st.stops.feed(st.detok.finish())
        st.text += emit
        if matched is None:
            st.text += st.stops.flush()

    def text_state(self, seq: Sequence) -> _SeqText:
        return next(t for t in self._texts if t.seq is seq)

    def make_output(self, decode_one: Any) -> RequestOutput | None:
        """The output since the last call, or None if nothing new."""
        outputs: list[CompletionOutput] = []
        changed = False
        for st in self._texts:
            seq = st.seq
            ids = seq.output_token_ids
            delta_ids = ids[st.num_tokens_reported :]
            delta_text = st.text[st.text_reported :]
            final_now = seq.is_finished and not st.final_reported
            if delta_ids or delta_text or final_now:
                changed = True
            st.num_tokens_reported = len(ids)
            st.text_reported = len(st.text)
            st.final_reported = seq.is_finished
            logprobs = None
            if seq.params.logprobs is not None:
                logprobs = seq.logprobs
                _decode_logprobs(logprobs[len(logprobs) - len(delta_ids) :], decode_one)
            outputs.append(
                CompletionOutput(
                    index=seq.index,
                    text=st.text,
                    token_ids=list(ids),
                    finish_reason=seq.finish_reason,
                    stop_reason=seq.stop_reason,
                    logprobs=logprobs,
                    cumulative_logprob=seq.cumulative_logprob
                    if seq.params.logprobs is not None
                    else None,
                    delta_text=delta_text,
                    delta_token_ids=delta_ids,
                    structure_incomplete=seq.is_finished
                    and seq.matcher is not None
                    and not seq.matcher.is_accepting(),
                    draft_n=seq.num_draft_tokens,
                    draft_n_accepted=seq.num_accepted_draft_tokens,
                )
            )
        if not changed:
            return None
        first = self.seqs[0]
        prompt_logprobs = None
        if first.params.prompt_logprobs is not None and self.finished:
            prompt_logprobs = first.prompt_logprobs
            _decode_logprobs([e for e in prompt_logprobs if e is not None], decode_one)
        return RequestOutput(
            request_id=self.request_id,
            prompt=self.prompt,
            prompt_token_ids=self.prompt_token_ids,
            outputs=outputs,
            finished=self.finished,
            prompt_logprobs=prompt_logprobs,
            num_cached_tokens=first.num_cached_tokens,
            error=self.error,
        )


def _decode_logprobs(entries: list[dict[int, Logprob]], decode_one: Any) -> None:
    for entry in entries:
        for tok, lp in entry.items():
            if lp.decoded is None:
                lp.decoded = decode_one(tok)
