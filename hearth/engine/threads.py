"""How many CPU threads one engine step runs on, and the OpenMP setting that makes a
thread count above one safe on a shared machine.

Why per step: a decode step of a small model is ~1,500 small aten ops, each its own
OpenMP parallel region when torch runs more than one thread. When another process holds
one of the cores, every region waits for a descheduled worker (measured on 2 busy cores,
SmolLM2-135M Q4_1: 9 tokens/s on 2 threads vs 56 on 1). A step with few tokens gains
nothing from a second thread anyway, so it runs on one; only steps with many tokens
(prefill chunks, wide batched decode) use them all, and those are a few large matmuls per
layer that tolerate a late worker.

Why PASSIVE: libgomp's workers spin after a region by default; a spinning worker on a
shared core steals time from the thread that has work. `OMP_WAIT_POLICY=PASSIVE` makes
them sleep at once. libgomp reads it when it is loaded (at `import torch`), so it is set
in hearth's entry points before torch is imported, and only when the user set neither it
nor `GOMP_SPINCOUNT` (`hearth.config.set_omp_wait_policy`, called by the CLI).

Knows nothing of the model, the scheduler or the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from hearth.config import Settings, load_settings

# a step gets a second thread from 2 x this many tokens (docs/threads.md has the numbers)
DEFAULT_MIN_TOKENS_PER_THREAD = 8


def dedicated_cpu(settings: Settings | None = None) -> bool:
    """Whether the user said the cores are hearth's alone (HEARTH_DEDICATED_CPU=1): every
    step on all threads, OpenMP workers spin (docs/threads.md)."""
    return (settings or load_settings()).dedicated_cpu


def openmp_workers_sleep(settings: Settings | None = None) -> bool:
    """Whether libgomp's idle workers sleep at once (OMP_WAIT_POLICY=PASSIVE, as hearth's
    entry points set it, or GOMP_SPINCOUNT=0) rather than spin (its default, e.g. in a
    Python process that imported torch itself)."""
    return (settings or load_settings()).openmp_workers_sleep


@dataclass(frozen=True)
class StepThreads:
    """max_threads: the most threads a step may use (the process's budget: Settings.threads
    or the caller's `num_threads`). min_tokens_per_thread: a step gets one more thread per
    this many tokens it runs, up to max_threads; 0 = every step uses max_threads (the old
    behaviour, for a machine known to be idle)."""

    max_threads: int
    min_tokens_per_thread: int = DEFAULT_MIN_TOKENS_PER_THREAD

    def __post_init__(self) -> None:
        if self.max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {self.max_threads}")
        if self.min_tokens_per_thread < 0:
            raise ValueError(
                f"min_tokens_per_thread must be >= 0, got {self.min_tokens_per_thread}"
            )

    def for_step(self, num_tokens: int) -> int:
        """Threads for a step that runs `num_tokens` tokens through the model."""
        if self.min_tokens_per_thread == 0:
            return self.max_threads
        return max(1, min(self.max_threads, num_tokens // self.min_tokens_per_thread))
