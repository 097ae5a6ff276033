"""Whether a Ray cluster answers at an address, checked with a timeout before `ray.init`
joins it (ray.init would otherwise retry for minutes): shared by `hearth serve --replicas`
(serve/replicas/cluster.py) and `hearth tune --ray-address` (tune/ray_train.py). Imports no
Ray."""

from __future__ import annotations

import re
import socket

from hearth.errors import UserInputError

__all__ = ["check_reachable"]


# an HTTP/2 client's opening (the connection preface and an empty SETTINGS frame): a gRPC
# server, which Ray's GCS and Ray Client server are, answers with its own SETTINGS frame
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def check_reachable(address: str, timeout_s: float, local_hint: str = "") -> None:
    """UserInputError (exit 2) unless a gRPC server (Ray's GCS or Ray Client) answers at the
    address within `timeout_s`. A bare TCP check is not enough: `ray.init` retries for
    minutes against a port where something else listens. `local_hint` ends the message
    (how to run without that cluster)."""
    if address == "auto":
        return
    match = re.fullmatch(r"(?:ray://)?\[?([^\]\s]+?)\]?:(\d{1,5})", address)
    if match is None:
        raise UserInputError(
            f"--ray-address {address!r}: give HOST:PORT of the Ray head (the GCS port, 6379 by "
            "default), ray://HOST:PORT (Ray Client, 10001) or 'auto'"
        )
    host, port = match.group(1), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(_H2_PREFACE)
            frame = sock.recv(9)
        why = "" if len(frame) == 9 and frame[3] == _H2_SETTINGS else "it does not speak gRPC"
    except OSError as exc:
        why = str(exc.strerror or exc)
    if why:
        raise UserInputError(
            f"no Ray cluster answers at {address} ({why}; waited at most {timeout_s:g} s): "
            f"start one there with `ray start --head --port {port}`{local_hint}"
        )
