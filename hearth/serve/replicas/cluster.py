"""Ray for the replicas: `connect` joins the cluster at an address (after checking, with a
timeout, that something answers there: `ray.init` would otherwise wait a long time) or
starts a local one on 127.0.0.1; `start_application` runs a model's replicas as a Ray Serve
application with hearth's router, health checks and autoscaling, and hands back its
DeploymentHandle. Ray Serve's own HTTP proxy stays off: hearth's FastAPI app is the
ingress."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from hearth.config import Settings, quiet_ray_usage_stats
from hearth.errors import OptionalDependencyError, UserInputError
from hearth.ray_address import check_reachable
from hearth.serve.replicas.deployment import ReplicaModel
from hearth.serve.replicas.options import ReplicaOptions

# Ray's object store is only a transit for the streamed outputs here; its default (30% of
# RAM) would claim memory the engines need
_OBJECT_STORE_BYTES = 200 * 1024**2
NAMESPACE = "hearth"
# how to run without the cluster, the end of check_reachable's message
LOCAL_HINT = ", or leave --ray-address out to run the replicas on a local Ray"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise OptionalDependencyError(
            "--replicas runs on Ray Serve, which is not installed: pip install 'hearth[ray]'"
        ) from exc
    return ray


@dataclass
class RayConnection:
    """The Ray this server uses; `started`: this process started it (and stops it)."""

    address: str | None
    started: bool

    def close(self) -> None:
        ray = _import_ray()
        from ray import serve

        if self.started:
            serve.shutdown()
            ray.shutdown()


def connect(options: ReplicaOptions) -> RayConnection:
    """Join the cluster at options.ray_address, or start a local Ray on 127.0.0.1 sized for
    max_replicas replicas (Ray's CPUs are logical: they count replicas, not cores)."""
    ray = _import_ray()
    if ray.is_initialized():  # a test (or the caller) already holds one
        return RayConnection(options.ray_address, started=False)
    quiet_ray_usage_stats()
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if options.ray_address is not None:
        check_reachable(options.ray_address, options.connect_timeout_s, LOCAL_HINT)
        try:
            ray.init(address=options.ray_address, namespace=NAMESPACE, **quiet)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise UserInputError(
                f"cannot join the Ray cluster at {options.ray_address}: {exc}"
            ) from exc
        return RayConnection(options.ray_address, started=False)
    ray.init(
        num_cpus=options.highest * options.threads_per_replica,
        include_dashboard=False,
        object_store_memory=_OBJECT_STORE_BYTES,
        _node_ip_address="127.0.0.1",
        namespace=NAMESPACE,
        **quiet,
    )
    return RayConnection(None, started=True)


def app_name(model_name: str) -> str:
    """The Ray Serve application of a model: one per model the server holds."""
    return "hearth-" + re.sub(r"[^A-Za-z0-9_.-]", "-", model_name)


def start_application(
    model: ReplicaModel, settings: Settings, options: ReplicaOptions
) -> Any:
    """Run the model's replicas (blocks until they are up); their DeploymentHandle."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from hearth.serve.replicas.deployment import EngineReplica

    serve.start(proxy_location="Disabled")
    scaling: dict[str, Any]
    if options.autoscales:
        scaling = {
            "autoscaling_config": {
                "min_replicas": options.lowest,
                "max_replicas": options.highest,
                "initial_replicas": options.num_replicas,
                "target_ongoing_requests": options.target_ongoing_requests,
                "upscale_delay_s": 2.0,
                "downscale_delay_s": 60.0,
            }
        }
    else:
        scaling = {"num_replicas": options.num_replicas}
    deployment = serve.deployment(
        name="engine",
        ray_actor_options={"num_cpus": options.threads_per_replica},
        max_ongoing_requests=options.max_ongoing_requests,
        health_check_period_s=2.0,
        health_check_timeout_s=30.0,
        graceful_shutdown_timeout_s=2.0,
        request_router_config=RequestRouterConfig(
            # a dotted path: Ray imports it where the handle routes (its stub mistypes the field)
            request_router_class="hearth.serve.replicas.router.PrefixAffinityRouter",  # type: ignore[arg-type]
            request_router_kwargs={
                "routing": options.routing,
                "imbalance_threshold": options.imbalance_threshold,
            },
        ),
        **scaling,
    )(EngineReplica)
    app = deployment.bind(model, settings, options.threads_per_replica)
    return serve.run(app, name=app_name(model.name), route_prefix=None)


def stop_application(model_name: str) -> None:
    from ray import serve

    serve.delete(app_name(model_name))
