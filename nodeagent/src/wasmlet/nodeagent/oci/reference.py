"""OCI image references, parsed and normalised as the kubelet does (pure: no I/O).

`registry[:port]/repository[:tag][@sha256:<hex>]`. A name whose first part is not a host
(no `.` or `:`, not `localhost`) is a Docker Hub name: `busybox` is
`docker.io/library/busybox:latest`, exactly as `docker pull` and the kubelet read it. The
grammar is distribution's (`github.com/distribution/reference`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

DOCKER_HUB = "docker.io"
# Docker Hub's name is docker.io, but its registry API answers at another host.
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
DEFAULT_TAG = "latest"
# distribution's limit on the full name (registry + repository).
MAX_NAME_LENGTH = 255

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                   r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


class InvalidReference(ValueError):
    """Not an image reference the kubelet would accept (`InvalidImageName`)."""


@dataclass(frozen=True)
class Reference:
    """A parsed reference. `tag` is None only when a digest pins the reference and no tag was given."""

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`: the image's name without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """Where the registry API answers (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def selector(self) -> str:
        """What goes after `/manifests/`: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def pinned(self) -> bool:
        """Pinned by digest: the content cannot change under the reference."""
        return self.digest is not None

    def at(self, digest: str) -> Reference:
        """The same repository pinned to `digest` (the form reported as a container's imageID)."""
        return replace(self, tag=None, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> Reference:
    """Parse and normalise `text`, or raise InvalidReference saying what is wrong."""
    if not text or any(ch.isspace() for ch in text):
        raise InvalidReference(f"invalid reference format: {text!r}")
    if re.fullmatch(r"[a-f0-9]{64}", text):
        raise InvalidReference("invalid repository name: cannot specify 64-byte hexadecimal strings")
    remainder, digest = _split_digest(text)
    name, tag = _split_tag(remainder)
    registry, repository = _split_registry(name)
    if not _HOST.fullmatch(registry):
        raise InvalidReference(f"invalid reference format: registry host {registry!r}")
    if repository != repository.lower():
        raise InvalidReference(f"invalid reference format: repository name {repository!r} must be lowercase")
    if not all(_COMPONENT.fullmatch(part) for part in repository.split("/")):
        raise InvalidReference(f"invalid reference format: repository name {repository!r}")
    if len(f"{registry}/{repository}") > MAX_NAME_LENGTH:
        raise InvalidReference(f"repository name must not be more than {MAX_NAME_LENGTH} characters")
    if tag is not None and not _TAG.fullmatch(tag):
        raise InvalidReference(f"invalid reference format: tag {tag!r}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def default_pull_policy(text: str) -> str:
    """The kubelet's default imagePullPolicy: Always for the tag `latest` (explicit or implied)."""
    try:
        return "Always" if parse_reference(text).tag == DEFAULT_TAG else "IfNotPresent"
    except InvalidReference:
        return "IfNotPresent"


def _split_digest(text: str) -> tuple[str, str | None]:
    name, at, digest = text.partition("@")
    if not at:
        return text, None
    if not _ANY_DIGEST.fullmatch(digest):
        raise InvalidReference(f"invalid reference format: digest {digest!r}")
    if not _DIGEST.fullmatch(digest):
        raise InvalidReference(f"unsupported digest {digest!r}: only sha256 digests (64 lowercase hex) are supported")
    return name, digest


def _split_tag(text: str) -> tuple[str, str | None]:
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        return text[:colon], text[colon + 1:]
    return text, None


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if not name:
        raise InvalidReference("invalid reference format: empty name")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry.lower() in _DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    return registry, repository
