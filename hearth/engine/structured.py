"""Structured output, exact by construction: the public face of hearth's grammar support.
A request's constraint becomes a `StructuredSpec` (grammar_spec.py: request surfaces,
checking, lowering); the engine compiles it against the model's tokenizer into one
`GrammarMatcher` per sequence (grammar_matcher.py: cache, masks, counters). Knows nothing
of HTTP or the scheduler.

Backend: llguidance, chosen over xgrammar after trying both here (2 shared CPU cores,
SmolLM2 vocabulary of 49,152 tokens; a 6-property schema with a nested object, an enum
array with min/maxItems, a format, a pattern and an anyOf; masks timed while force-feeding
a valid 63-token document; feature coverage probed by compiling 47 keyword cases and
feeding each a valid and an invalid document):

                          llguidance 1.9.1              xgrammar 0.2.8
    wheel / installed     3.1 MB / 7.6 MB, no deps      1.3 MB, but requires torch,
                                                        transformers, triton (~1 GB),
                                                        apache-tvm-ffi (13 MB)
    import                28 ms                         ~2 s (imports transformers)
    tokenizer setup       ~175 ms (once per tokenizer)  ~25 ms
    schema compile        ~2 ms (lazy)                  ~280 ms (eager mask cache)
    mask per step         median ~15 µs, max ~1 ms      median ~2 µs, max ~80 µs
    unsupported keywords  refused by name (uniqueItems, silently ignored: allOf,
                          contains, not, if/then/else,  uniqueItems, not, if/then/else,
                          propertyNames, dependent*,    dependentRequired, remote $ref;
                          unevaluatedProperties,        mis-compiled: contains,
                          unknown formats, remote $ref, maxProperties, patternProperties
                          min/maxProperties with
                          optional properties)
    enforced extras       allOf, patternProperties,     propertyNames,
                          min/maxProperties             unevaluatedProperties
    regex / grammars      Rust regex; Lark (+ %json     regex; EBNF (GBNF-like)
                          inline schemas), GBNF

Both masks cost far less than a CPU decode step (~10-30 ms), so mask speed does not decide.
llguidance wins on what the issue asks: it never silently ignores a schema keyword (it
names what it cannot enforce, which we turn into GrammarError / HTTP 400), compiles in
milliseconds (no queueing behind a compile), and is light enough (one 3 MB wheel, no Python
dependencies, abi3 wheels for Linux/macOS/Windows) to be a core dependency, so structured
output works in every install, which `hearth run --format` and the server both need.

Applying a mask to a CPU logits row is done in numpy (~40 µs per 49k row, including the
llguidance mask): torch's intra-op-parallel kernels wait for their second thread, which on
a busy 2-core machine cost ~12 ms per row.
"""

from __future__ import annotations

from hearth.engine.grammar_matcher import (
    GrammarCompiler,
    GrammarMatcher,
    GrammarStats,
    TokenizerLike,
    apply_masks,
    compile_matcher,
    compile_matcher_async,
    compiler_for,
)
from hearth.engine.grammar_spec import JSON_OPTIONS, KINDS, StructuredSpec

__all__ = [
    "JSON_OPTIONS",
    "KINDS",
    "GrammarCompiler",
    "GrammarMatcher",
    "GrammarStats",
    "StructuredSpec",
    "TokenizerLike",
    "apply_masks",
    "compile_matcher",
    "compile_matcher_async",
    "compiler_for",
]
