"""The weight modes (`--quant`), defined once for the CLI, the server, eval and bench.
No torch here: the CLI and the server's options read these without loading the network."""

from __future__ import annotations

from typing import Literal, get_args

QuantMode = Literal["auto", "none", "int8", "int4"]
QUANT_MODES: tuple[str, ...] = get_args(QuantMode)

# run / serve / LLM: the file as it is (Ollama's behaviour), the fast road on a GGUF
DEFAULT_QUANT: QuantMode = "auto"
# eval: the de-quantized network is the reference the harness is checked against
REFERENCE_QUANT: QuantMode = "none"

QUANT_HELP = (
    "auto (the file's own quantization: GGUF low-bit stays low-bit, fastest), "
    "none (de-quantized fp32, exact), int8, int4"
)
