"""A discrete-event simulator of a fleet of hearth replicas, fed with per-step costs
measured on a real machine (costs/*.json, written by tools/measure_step_costs.py). It
predicts throughput and time to first token for 1 to thousands of replicas under a trace of
chats that share system prompts, for round-robin, random and prefix-aware routing, so the
fleet plan (docs/scale.md) rests on numbers. Pure Python; knows nothing of the engine,
Ray or HTTP: it models them.

costs.py     StepCosts: seconds per engine step from prefill tokens and decode batch size
trace.py     the workload: chats over shared system prompts
replica.py   one replica: the engine's scheduler (token budget, chunked prefill, cache-aware
             waiting) and its prefix cache (LRU over prompt prefixes)
routing.py   round-robin, random and prefix-aware routers
simulate.py  the event loop and its result (tokens/s, TTFT percentiles, cache hit rate)
__main__.py  `python -m hearth.sim`: a table over replica counts and routings"""
