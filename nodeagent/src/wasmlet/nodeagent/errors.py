"""Errors by what the Pod controller does about them.

- `UnsupportedPod`: the Pod can never run here → phase Failed with this reason and message.
- `PodConfigError`: a referenced ConfigMap/Secret/key is missing → `CreateContainerConfigError`,
  retried, because the user may create it later (kubelet behaviour).
- `PullError`: the module cannot be fetched → `ErrImagePull`, then `ImagePullBackOff`.
- `ModuleError`: the module was fetched but cannot start (not wasm, unknown imports)
  → the container terminates with reason `Error` and restarts per restartPolicy.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base: carries a CamelCase `reason` for Pod status and Events."""

    reason = "Error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class UnsupportedPod(AgentError):
    reason = "Unsupported"


class PodConfigError(AgentError):
    reason = "CreateContainerConfigError"


class PullError(AgentError):
    reason = "ErrImagePull"


class ModuleError(AgentError):
    reason = "Error"


class SettingsError(Exception):
    """A setting is invalid; the message names the setting."""
