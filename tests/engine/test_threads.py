"""The per-step thread rule (hearth.engine.threads) and the OpenMP wait policy (hearth.config): the rule's
arithmetic, that the CLI sets PASSIVE before torch loads unless the user chose, and that an
engine switching thread counts between steps produces the same greedy tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from hearth.config import (
    HEARTH_SET_WAIT_POLICY,
    load_settings,
    peer_environment,
    set_omp_wait_policy,
)
from hearth.engine.llm_engine import LLMEngine
from hearth.engine.sampling_params import SamplingParams
from hearth.engine.threads import StepThreads, dedicated_cpu, openmp_workers_sleep


def test_small_steps_get_one_thread_large_steps_all() -> None:
    rule = StepThreads(max_threads=4, min_tokens_per_thread=8)
    assert [rule.for_step(n) for n in (1, 7, 8, 15, 16, 24, 32, 512)] == [1, 1, 1, 1, 2, 3, 4, 4]
    assert StepThreads(max_threads=1, min_tokens_per_thread=8).for_step(4096) == 1
    # 0: the old behaviour, every step on every thread
    assert StepThreads(max_threads=2, min_tokens_per_thread=0).for_step(1) == 2


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("max_threads", {"max_threads": 0}),
        ("min_tokens_per_thread", {"max_threads": 2, "min_tokens_per_thread": -1}),
    ],
)
def test_invalid_rule_names_the_field(field: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=field):
        StepThreads(**kwargs)


def test_passive_wait_only_when_the_user_did_not_choose() -> None:
    env: dict[str, str] = {}
    assert set_omp_wait_policy(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", HEARTH_SET_WAIT_POLICY: "1"}
    for chosen in (
        {"OMP_WAIT_POLICY": "ACTIVE"},
        {"GOMP_SPINCOUNT": "1000"},
        {"HEARTH_DEDICATED_CPU": "1"},
    ):
        env = dict(chosen)
        assert not set_omp_wait_policy(env) and env == chosen


def test_peers_get_their_own_wait_policy_back() -> None:
    # what hearth chose is taken away from a peer's environment; what the user chose stays
    env: dict[str, str] = {"PATH": "/bin"}
    set_omp_wait_policy(env)
    assert peer_environment(env) == {"PATH": "/bin"}
    user = {"PATH": "/bin", "OMP_WAIT_POLICY": "PASSIVE"}
    assert peer_environment(user) == user


def test_dedicated_cpu_runs_every_step_on_all_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from hearth.engine.model_runner import ModelRunner

    monkeypatch.setenv("HEARTH_DEDICATED_CPU", "1")
    assert dedicated_cpu()
    assert ModelRunner(None, [], 16).threads.for_step(1) == torch.get_num_threads()
    monkeypatch.delenv("HEARTH_DEDICATED_CPU")
    assert not dedicated_cpu()
    assert ModelRunner(None, [], 16).threads.for_step(1) == 1


@pytest.mark.parametrize("user", ["", "ACTIVE"])
def test_cli_sets_the_policy_before_torch_is_loaded(user: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "HEARTH_DEDICATED_CPU")}
    if user:
        env["OMP_WAIT_POLICY"] = user
    code = (
        "import sys, os, contextlib\n"
        "import hearth.cli\n"
        "before = os.environ.get('OMP_WAIT_POLICY')\n"
        "with contextlib.suppress(SystemExit):\n"
        "    hearth.cli.main(['--version'])\n"
        "print('torch' in sys.modules, before, os.environ.get('OMP_WAIT_POLICY'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()[-3:]  # after `hearth --version`'s line
    # importing the CLI changes nothing; main() sets the policy first, and the verb
    # modules must not pull torch in before it does
    assert out == ["False", user or "None", user or "PASSIVE"]


def test_switching_threads_between_steps_keeps_greedy_tokens(
    make_engine: Callable[..., LLMEngine],
) -> None:
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 40000, (n,), generator=g).tolist() for n in (40, 9, 23)]
    params = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    results = []
    for rule in (StepThreads(1), StepThreads(2, min_tokens_per_thread=8)):
        engine = make_engine(max_num_batched_tokens=32)
        engine.runner.threads = rule
        seen: set[int] = set()
        for i, p in enumerate(prompts):
            engine.add_request(f"r{i}", p, params)
        final = {}
        while engine.has_unfinished_requests():
            for out in engine.step():
                if out.finished:
                    final[out.request_id] = out.outputs[0].token_ids
            seen.add(torch.get_num_threads())
        results.append([list(final[f"r{i}"]) for i in range(len(prompts))])
        # the 2-thread rule really switched: chunked prefill steps on 2, lone decodes on 1
        assert seen == ({1} if rule.max_threads == 1 else {1, 2})
    assert results[0] == results[1]


def test_openmp_workers_sleep_only_when_told_to(tmp_path: Path) -> None:
    def sleep(env: dict[str, str]) -> bool:
        return openmp_workers_sleep(load_settings({"HEARTH_HOME": str(tmp_path), **env}))

    assert not sleep({})
    assert not sleep({"OMP_WAIT_POLICY": "ACTIVE"})
    assert not sleep({"GOMP_SPINCOUNT": "1000"})
    assert sleep({"OMP_WAIT_POLICY": "passive"})
    assert sleep({"GOMP_SPINCOUNT": "0"})
    env: dict[str, str] = {}
    set_omp_wait_policy(env)  # what hearth's entry point does
    assert sleep(env)
