"""The peers hearth is measured against, on the same model file and thread count:

- llama.cpp through llama-cpp-python (`pip install 'hearth[bench]'`): it has no
  cross-request batching, so a workload's requests run one after another (what a user of
  it gets); a request's TTFT includes its wait in that queue.
- transformers `generate` on the de-quantized fp32 model (single stream; the HF baseline).

Knows nothing of hearth's engine or of printing."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.bench.workloads import RequestTiming, Workload, summarize
from hearth.errors import OptionalDependencyError, UserInputError

if TYPE_CHECKING:
    from hearth.bench.llama_cpp_lookup import CountingPromptLookup

PEERS = ("llama.cpp", "transformers")
LLAMA_CPP_HINT = "pip install 'hearth[bench]'"
# llama.cpp's speculative road through llama-cpp-python: prompt lookup as the draft model
# (llama_cpp_lookup.py). Its README: num_pred_tokens "10 is the default and generally good
# for gpu, 2 performs better for cpu-only machines"; the bench runs both and the middle,
# with its default n-gram size, and the ratios name the best
PROMPT_LOOKUP_SWEEP: tuple[dict[str, int], ...] = tuple(
    {"max_ngram_size": 2, "num_pred_tokens": k} for k in (2, 5, 10)
)
# the spec workloads llama.cpp also runs with prompt lookup: the single streams (the
# concurrent one's prompts are random ids, and llama.cpp runs its requests one by one)
LOOKUP_SCENARIOS = ("spec-quote", "spec-chat")
# an AVX2-only llama-cpp-python for --peer-path (docs/cpu-isa.md), beside the native one
LLAMA_CPP_AVX2 = (
    "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF'"
)
# llama-cpp-python 0.3.36 built natively (-march=native, which turns on AMX where the CPU
# has it) crashed in its first decode on a Xeon with AMX here (SIGSEGV); the same AVX-512
# build without AMX runs. The reverse also happened: a build with -DGGML_AVX_VNNI=ON (the
# VEX-coded AVX-VNNI, which Zen 4 lacks beside its AVX-512 VNNI) dies of SIGILL on an AMD
# EPYC; a native build is right there
LLAMA_CPP_NO_AMX = (
    "CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON "
    "-DGGML_AVX512_BF16=ON -DGGML_AVX512_VBMI=ON -DGGML_AMX_INT8=OFF'"
)
LLAMA_CPP_NATIVE = "CMAKE_ARGS='-DGGML_NATIVE=ON'"
LLAMA_CPP_REINSTALL = "pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python"


def llama_cpp_rebuild_hint(signal_number: int) -> str:
    """What to do when the llama.cpp worker died of this signal inside native code."""
    if signal_number == signal.SIGILL:  # built for instructions this CPU does not have
        return (
            "llama.cpp was built for instructions this CPU lacks; rebuild it for this CPU: "
            f"{LLAMA_CPP_NATIVE} {LLAMA_CPP_REINSTALL}"
        )
    return (
        "if it crashed in llama.cpp itself, rebuild it without AMX: "
        f"{LLAMA_CPP_NO_AMX} {LLAMA_CPP_REINSTALL}"
    )


def check_peer(peer: str, llama_cpp_path: str = "") -> None:
    """Raise OptionalDependencyError (saying what to install) when `peer` cannot run.
    llama_cpp_path: a directory holding the llama_cpp package the llama.cpp worker imports
    instead of this environment's (not imported here: it may be built for another CPU)."""
    if peer not in PEERS:
        raise UserInputError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    if peer == "llama.cpp" and llama_cpp_path:
        if not (Path(llama_cpp_path) / "llama_cpp" / "__init__.py").is_file():
            raise UserInputError(
                f"--peer-path (bench_llama_cpp_path) {llama_cpp_path} holds no llama_cpp "
                "package; install one there: "
                f"{LLAMA_CPP_AVX2} pip install --no-deps --no-binary llama-cpp-python "
                f"--target {llama_cpp_path} llama-cpp-python"
            )
    elif peer == "llama.cpp":
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise OptionalDependencyError(
                f"--peer llama.cpp needs llama-cpp-python: {LLAMA_CPP_HINT} (it compiles "
                "llama.cpp, several minutes)"
            ) from exc
    else:
        try:
            import transformers  # noqa: F401
        except ImportError as exc:
            raise OptionalDependencyError(
                "--peer transformers needs transformers: pip install transformers gguf accelerate"
            ) from exc


def llama_cpp_settings(workload: Workload, threads: int) -> dict[str, Any]:
    """The Llama(...) arguments the bench gives llama.cpp for `workload`: what a plain
    llama-cpp-python run has (its defaults: n_ctx and n_batch 512, no flash attention,
    mmap, no mlock) but the threads, for prefill too, and a context that holds the
    workload's longest request where 512 does not (so the decode scenario runs exactly the
    plain run's settings, and a larger context for the prefix scenario does not change it)."""
    longest = max(len(p) + n for p, n in zip(workload.prompts, workload.max_tokens, strict=True))
    context = max(512, len(workload.warmup or ()) + 16, longest + 16)
    return {
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_ctx": 512 if context <= 512 else -(-context // 256) * 256,
        "n_batch": 512,
    }


def llama_cpp_build() -> dict[str, Any]:
    """llama-cpp-python's version and how its llama.cpp was built (the instruction sets
    and backends it reports: llama_print_system_info), for the bench JSON."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "system_info": (info.decode() if isinstance(info, bytes) else str(info)).strip(),
        "path": str(Path(llama_cpp.__file__).parent),  # which build: --peer-path or the venv's
    }


def run_llama_cpp(path: Path, workloads: list[Workload], threads: int) -> list[dict[str, Any]]:
    """Each workload without speculation; the LOOKUP_SCENARIOS ones then also with each
    prompt-lookup setting of PROMPT_LOOKUP_SWEEP, on the same requests."""
    import llama_cpp

    models: dict[str, Any] = {}  # one Llama per distinct setting (the file is mmapped once)

    def model_for(settings: dict[str, Any], speculative: bool) -> Any:
        key = json.dumps([settings, speculative], sort_keys=True)
        if key not in models:
            # a Llama built with a draft model keeps logits for every position (it must,
            # to verify drafts), so the runs without speculation get one of their own.
            # logits_all=True said again: 0.3.36 sizes its logits array by that argument
            # alone (n_batch rows), and a prompt longer than n_batch overflows it
            extra: dict[str, Any] = {}
            if speculative:  # the sweep's runs set their own draft model
                from hearth.bench.llama_cpp_lookup import CountingPromptLookup

                extra = {"draft_model": CountingPromptLookup(2, 2), "logits_all": True}
            models[key] = llama_cpp.Llama(model_path=str(path), verbose=False, **settings, **extra)
            _generate(models[key], [workloads[0].prompts[0][:16]], [4], time.perf_counter())
        return models[key]

    runs = []
    for w in workloads:
        settings = llama_cpp_settings(w, threads)
        llm = model_for(settings, False)  # loaded and warmed up before the clock starts
        if w.warmup is not None:
            _generate(llm, [w.warmup], [1], time.perf_counter())
        if w.scenario == "prefix" and not w.prefix_caching:
            continue  # llama.cpp reuses the previous prompt's KV only; one prefix run is its number
        start = time.perf_counter()
        timings, outputs = _generate(llm, w.prompts, w.max_tokens, start)
        run = summarize("llama.cpp", w, timings, time.perf_counter() - start)
        run["settings"] = settings
        runs.append(run)
        if w.scenario in LOOKUP_SCENARIOS:
            runs.extend(_prompt_lookup_runs(model_for(settings, True), w, settings, outputs))
    return runs


def _prompt_lookup_runs(
    llm: Any, w: Workload, settings: dict[str, Any], reference: list[list[int]]
) -> list[dict[str, Any]]:
    """`w` once per PROMPT_LOOKUP_SWEEP setting on `llm` (built with a draft model), each
    checked token for token against `reference`, the outputs without speculation."""
    from hearth.bench.llama_cpp_lookup import CountingPromptLookup

    runs = []
    for lookup in PROMPT_LOOKUP_SWEEP:
        draft = CountingPromptLookup(**lookup)
        llm.draft_model = draft  # generate() reads it at every step
        llm.reset()  # no KV kept from the last setting's run: the prompt is prefilled again
        start = time.perf_counter()
        timings, outputs = _generate(llm, w.prompts, w.max_tokens, start, draft)
        run = summarize("llama.cpp", w, timings, time.perf_counter() - start)
        run.update(
            settings=settings,
            speculative="prompt-lookup",
            prompt_lookup=lookup,
            draft_n=draft.draft_n,
            draft_n_accepted=draft.draft_n_accepted,
            greedy_identical=outputs == reference,
        )
        runs.append(run)
    return runs


def _generate(
    llm: Any,
    prompts: list[list[int]],
    max_tokens: list[int],
    start: float,
    draft: CountingPromptLookup | None = None,
) -> tuple[list[RequestTiming], list[list[int]]]:
    """Requests one after another, all sent at `start` (they queue, as they would): their
    timings and output ids."""
    timings = [RequestTiming(time.perf_counter() - start) for _ in prompts]
    outputs: list[list[int]] = [[] for _ in prompts]
    for prompt, n, t, out in zip(prompts, max_tokens, timings, outputs, strict=True):
        if draft is not None:
            draft.start()
        # generate() never stops at EOS by itself: exactly n greedy tokens; with reset=True
        # llama-cpp-python still keeps the KV of the longest prefix shared with the last prompt
        for token in llm.generate(
            prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True
        ):
            t.token_times.append(time.perf_counter() - start)
            out.append(int(token))
            if len(t.token_times) >= n:
                break
    return timings, outputs


def run_transformers(path: Path, workloads: list[Workload], threads: int) -> list[dict[str, Any]]:
    """transformers generate, single stream, on the `decode` workload only (the slowest
    engine; the concurrent and prefix scenarios are about batching it does not offer)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.generation.streamers import BaseStreamer

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()

    class Clock(BaseStreamer):
        def __init__(self, timing: RequestTiming, start: float) -> None:
            self.timing, self.start, self.seen_prompt = timing, start, False

        def put(self, value: Any) -> None:
            if not self.seen_prompt:  # generate() first hands the streamer the prompt
                self.seen_prompt = True
                return
            self.timing.token_times.append(time.perf_counter() - self.start)

        def end(self) -> None:
            pass

    def once(prompt: list[int], n: int, start: float) -> RequestTiming:
        timing = RequestTiming(time.perf_counter() - start)
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                streamer=Clock(timing, start),
                pad_token_id=0,
            )
        return timing

    runs = []
    once(workloads[0].prompts[0][:16], 2, time.perf_counter())  # warm up
    for w in workloads:
        if w.scenario != "decode":
            continue
        start = time.perf_counter()
        timings = [once(p, n, start) for p, n in zip(w.prompts, w.max_tokens, strict=True)]
        runs.append(summarize("transformers", w, timings, time.perf_counter() - start))
    return runs
