"""The node's ports the Pods on it claimed.

A wasm Pod's IP is its node's IP, so every TCP `containerPort` of a Pod is a port of the node
(as `hostPort` is for a container): two Pods on one node cannot have the same one. The kubelet
refuses a Pod whose host ports conflict at admission; the agent does the same with every port.
"""

from __future__ import annotations


class NodePorts:
    """Which Pod holds each claimed port."""

    def __init__(self) -> None:
        self._holders: dict[int, tuple[str, str]] = {}  # port → (Pod UID, namespace/name)

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
