"""llama.cpp's speculative road as a user of llama-cpp-python takes it: prompt lookup
(`llama_cpp.llama_speculative.LlamaPromptLookupDecoding`) passed as `Llama(draft_model=...)`.
`Llama.generate` then evaluates the last sampled token and the draft in one batch (logits
for every position), samples each position, keeps the drafts up to the first that differs
and removes the rest from the KV cache: greedy output identical to no speculation.

Imported only in the llama.cpp bench worker (it needs llama_cpp); knows nothing of hearth."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding


class CountingPromptLookup(LlamaPromptLookupDecoding):
    """Prompt lookup that counts the tokens it drafted and how many of them the target
    model accepted (llama-cpp-python reports neither), as hearth's runs report
    draft_n / draft_n_accepted. Between two calls within one generation the context
    grew by the accepted drafts plus the one token the target sampled, so
    accepted = growth - 1. The last draft of a generation is never counted: the consumer
    stopped before its verification was known."""

    def __init__(self, max_ngram_size: int, num_pred_tokens: int) -> None:
        super().__init__(max_ngram_size=max_ngram_size, num_pred_tokens=num_pred_tokens)
        self.draft_n = 0
        self.draft_n_accepted = 0
        self._last_len: int | None = None  # context length at the previous call
        self._proposed = 0  # tokens proposed at the previous call

    def start(self) -> None:
        """A new generation begins: the previous one's last draft goes uncounted."""
        self._last_len, self._proposed = None, 0

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        n = int(input_ids.shape[0])
        if self._last_len is not None and n > self._last_len:
            self.draft_n += self._proposed
            self.draft_n_accepted += min(self._proposed, n - self._last_len - 1)
        draft = super().__call__(input_ids, **kwargs)
        self._last_len, self._proposed = n, int(draft.shape[0])
        return draft
