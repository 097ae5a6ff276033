"""One engine's share of a bench, in a process of its own (`python -m hearth.bench.worker`,
a JSON spec on stdin, a JSON result on stdout): each engine's peak RSS is then its own,
and no engine's threads or caches disturb another's timings."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

from hearth.bench.workloads import Workload


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    threads = int(spec["threads"])
    path = Path(spec["path"])
    workloads = [Workload.from_json(w) for w in spec["workloads"]]
    engine = spec["engine"]
    build: dict[str, Any] = {}
    if engine != "llama.cpp":
        # llama.cpp's worker never loads torch: its OpenMP runtime (a second libgomp
        # beside llama.cpp's own) and its threads stay out of the peer's process
        import torch

        torch.set_num_threads(threads)
    baseline = _rss_mb()  # the interpreter (and torch), before any model is loaded
    if engine != "hearth":  # peers run the spec scenario's requests once, as they come
        workloads = [w for w in workloads if w.speculative == "off"]
    if engine == "hearth":
        from hearth.bench.hearth_runner import run_hearth

        runs, kv_mb = run_hearth(path, workloads, spec.get("quant", "auto"), draft=spec.get("draft"))
        for run in runs:
            run["kv_cache_mb"] = round(kv_mb, 1)
    elif engine == "llama.cpp":
        if spec.get("peer_path"):  # another build of llama-cpp-python (--peer-path)
            sys.path.insert(0, str(spec["peer_path"]))
        from hearth.bench.peers import llama_cpp_build, run_llama_cpp

        runs = run_llama_cpp(path, workloads, threads)
        build = llama_cpp_build()
    elif engine == "transformers":
        from hearth.bench.peers import run_transformers

        runs = run_transformers(path, workloads, threads)
    else:
        raise ValueError(f"unknown engine {engine!r}")
    # ru_maxrss is in KiB on Linux
    peak = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    for run in runs:
        run["peak_rss_mb"] = peak
        run["baseline_rss_mb"] = baseline
    return {"runs": runs, "peak_rss_mb": peak, "build": build}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    result = run_spec(spec)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
