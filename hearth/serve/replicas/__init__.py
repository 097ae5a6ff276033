"""Engine replicas on Ray Serve (`hearth serve MODEL --replicas N`): hearth's own FastAPI app
stays the ingress (keys, limits, usage, metrics) and streams from N replicas of the engine,
each a Ray Serve replica that owns one LLM. A request goes to the replica that already holds
its prompt's first KV blocks (router.py) unless that one is much busier than the least
loaded. Ray Serve starts, health-checks, restarts and autoscales the replicas.

options.py   ReplicaOptions (how many, where the Ray cluster is, routing)
prefix.py    block hashes of a prompt and the table of which replica holds which
router.py    the Ray Serve RequestRouter that uses that table
deployment.py the replica: one LLM behind AsyncEngine
cluster.py   connecting to (or starting) Ray and running the application
engine.py    ReplicaEngine: what the routes stream from, in place of AsyncEngine
pool.py      ReplicaPool: the ModelPool whose generation models live on replicas
header.py    the `x-hearth-replica` response header
metrics.py   per-replica engine gauges on /metrics

Ray is an optional extra (`pip install 'hearth[ray]'`); nothing here imports it at module
import time except router.py and deployment.py, which only Ray loads."""
