"""The node's ports the Pods on it claimed, and the ports no Pod may take.

A wasm Pod's IP is its node's IP, so every TCP `containerPort` of a Pod is a port of the node
(as `hostPort` is for a container): two Pods on one node cannot have the same one. The kubelet
refuses a Pod whose host ports conflict at admission; the agent does the same with every port.
It also refuses, with reason `PortNotAllowed`, a port below the node's floor (`min_host_port`:
by default the privileged ports, which a node's own daemons use) and the agent's own ports (its
kubelet API, which serves logs and metrics), which a Pod could otherwise serve in their place.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MIN_PORT = 1024  # below: privileged ports (ssh, dns, http on the host)


@dataclass(frozen=True)
class PortRefusal:
    """Why a Pod cannot have a port: `reason` is the Pod's, `message` names the port and the holder."""

    port: int
    reason: str
    message: str


class NodePorts:
    """Which Pod holds each claimed port; which ports the node keeps for itself."""

    def __init__(self, min_port: int = DEFAULT_MIN_PORT) -> None:
        self.min_port = min_port
        self._holders: dict[int, tuple[str, str]] = {}  # port → (Pod UID, namespace/name)
        self._reserved: dict[int, str] = {}  # port → what of the agent's serves there

    def reserve(self, port: int, what: str) -> None:
        """Keep `port` from every Pod: the agent itself serves `what` there."""
        self._reserved[port] = what

    def refusal(self, ports: list[int], node: str) -> PortRefusal | None:
        """A port of `ports` no Pod may have on this node, whoever holds the others."""
        for port in ports:
            if port in self._reserved:
                return PortRefusal(port, "PortNotAllowed", f"port {port}/TCP is the node agent's own "
                                   f"({self._reserved[port]}) on node {node}; a wasm Pod's ports are its node's")
            if port < self.min_port:
                return PortRefusal(port, "PortNotAllowed", f"port {port}/TCP is below the lowest port node {node} "
                                   f"gives Pods ({self.min_port}, setting min_host_port); a wasm Pod's ports are "
                                   "its node's")
        return None

    def claim(self, uid: str, key: str, ports: list[int]) -> tuple[int, str] | None:
        """Claim all of `ports` for the Pod, or none: return (port, holder) of the first conflict."""
        for port in ports:
            holder = self._holders.get(port)
            if holder is not None and holder[0] != uid:
                return port, holder[1]
        for port in ports:
            self._holders[port] = (uid, key)
        return None

    def release(self, uid: str) -> None:
        for port in [p for p, (holder, _) in self._holders.items() if holder == uid]:
            del self._holders[port]

    def __len__(self) -> int:
        return len(self._holders)
