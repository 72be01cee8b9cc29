"""Reading a Pod into the agent's plan: the Pod contract of docs/contract.md."""

from __future__ import annotations

import pytest

from wasmlet.nodeagent.errors import UnsupportedPod
from wasmlet.nodeagent.podspec import parse_module_ref, parse_pod, parse_quantity


def pod(**spec: object) -> dict:
    base: dict = {"containers": [{"name": "app", "image": "configmap://mods/app.wasm"}]}
    base.update(spec)
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "annotations": {"wasmlet.dev/sha256.web": "a" * 64}}, "spec": base}


@pytest.mark.parametrize(("image", "kind", "ref"), [
    ("configmap://mods/app.wasm", "configmap", "mods/app.wasm"),
    ("https://example.com/app.wasm", "http", "https://example.com/app.wasm"),
    ("ghcr.io/acme/app:1.0", "oci", "ghcr.io/acme/app:1.0"),
    ("registry.local:5000/app@sha256:" + "b" * 64, "oci", "registry.local:5000/app@sha256:" + "b" * 64),
])
def test_module_references_are_classified_by_scheme(image: str, kind: str, ref: str) -> None:
    module = parse_module_ref(image)
    assert (module.kind, module.ref) == (kind, ref)


@pytest.mark.parametrize("image", ["configmap://only-name", "", "has space", "file:x.wasm"])
def test_malformed_or_forbidden_references_are_refused(image: str) -> None:
    with pytest.raises(UnsupportedPod):
        parse_module_ref(image)


def test_a_container_without_an_image_is_refused_as_the_api_server_words_it() -> None:
    with pytest.raises(UnsupportedPod, match=r"spec\.containers\[0\]\.image: Required value: container 'app'") as caught:
        parse_pod(pod(containers=[{"name": "app"}]))
    assert caught.value.reason == "InvalidImageName"


@pytest.mark.parametrize("image", ["../modules/hello.wasm", "./m.wasm", "/srv/m.wasm"])
def test_a_path_in_a_static_pod_is_told_to_write_file(image: str) -> None:
    with pytest.raises(UnsupportedPod, match=f"is a file path, not an image reference: a static Pod names a module "
                                             f"file as file:{image}") as caught:
        parse_module_ref(image, allow_file=True)
    assert caught.value.reason == "InvalidImageName"


def test_command_and_args_become_argv_and_the_http_digest_comes_from_the_annotation() -> None:
    plan = parse_pod(pod(containers=[{"name": "web", "image": "https://x/w.wasm", "command": ["serve"],
                                      "args": ["--port", 8080]}]))
    container = plan.containers[0]
    assert container.argv == ["serve", "--port", "8080"]
    assert container.module.sha256 == "a" * 64


def test_without_a_command_argv0_is_the_container_name() -> None:
    assert parse_pod(pod()).containers[0].argv == ["app"]


def test_memory_limits_are_read_as_bytes() -> None:
    plan = parse_pod(pod(containers=[{"name": "a", "image": "x/y:1", "resources": {"limits": {"memory": "64Mi"}}}]))
    assert plan.containers[0].memory_limit_bytes == 64 * 2**20


@pytest.mark.parametrize(("text", "value"), [("1Gi", 2**30), ("500M", 5e8), ("250m", 0.25), ("7", 7)])
def test_quantities_follow_kubernetes_suffixes(text: str, value: float) -> None:
    assert parse_quantity(text, "x") == value


def test_unsupported_volume_types_are_named_in_the_error() -> None:
    with pytest.raises(UnsupportedPod, match=r"spec.volumes\[0\].*'nfs'"):
        parse_pod(pod(volumes=[{"name": "v", "nfs": {}}]))


def test_a_mount_of_an_undeclared_volume_is_refused() -> None:
    with pytest.raises(UnsupportedPod, match="no volume named 'ghost'"):
        parse_pod(pod(containers=[{"name": "a", "image": "x/y:1",
                                   "volumeMounts": [{"name": "ghost", "mountPath": "/data"}]}]))


def test_image_pull_policy_defaults_follow_the_kubelet() -> None:
    latest = parse_pod(pod(containers=[{"name": "a", "image": "reg/app"}])).containers[0]
    pinned = parse_pod(pod(containers=[{"name": "a", "image": "reg/app:1.2"}])).containers[0]
    assert (latest.image_pull_policy, pinned.image_pull_policy) == ("Always", "IfNotPresent")


def http_pod(annotation: str | None, ports: list[dict] | None = None, container: str = "web") -> dict:
    body = pod(containers=[{"name": "web", "image": "configmap://mods/web.wasm",
                            "ports": [{"name": "http", "containerPort": 8080, "hostPort": 8080}]
                            if ports is None else ports},
                           {"name": "side", "image": "configmap://mods/side.wasm",
                            "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 9000}]}])
    if annotation is not None:
        body["metadata"]["annotations"][f"wasmlet.dev/http.{container}"] = annotation
    return body


def test_an_annotated_container_is_an_http_handler_and_every_tcp_port_is_the_pods() -> None:
    plan = parse_pod(http_pod('{"port": 8080, "path": "/api", "maxConcurrency": 4}'))
    web, side = plan.containers
    assert web.http is not None and (web.http.port, web.http.path, web.http.max_concurrency) == (8080, "/api", 4)
    assert web.http.request_timeout_seconds == 10 and web.http.max_body_bytes == 1048576  # the defaults
    assert side.http is None
    assert plan.tcp_ports == [8080, 9000]


@pytest.mark.parametrize(("annotation", "ports", "container", "complaint"), [
    ("{not json", None, "web", r"wasmlet.dev/http.web'\]: is not JSON"),
    ('{"port": 8080, "maxConcurrency": "many"}', None, "web", r"\.maxConcurrency: must be an integer"),
    ('{"port": 8080, "path": "api"}', None, "web", r"\.path: must be a string starting with /"),
    ('{"port": 8080, "colour": "blue"}', None, "web", r"\.colour: unknown field"),
    ('{"port": 8080, "colour": "blue", "size": 3}', None, "web", r"\.colour: unknown field, and size"),
    ('{"port": 8081}', None, "web", r"\.port: 8081 is not a TCP containerPort of container 'web' \(its ports: 8080/TCP\)"),
    ('{"port": 8080}', None, "wbe", r"the Pod has no container named 'wbe'"),
    ('{"port": 8080}', [{"containerPort": 0}], "web", r"ports\[0\]\.containerPort: must be a port number"),
    ('{"port": 8080}', [{"containerPort": 8080, "protocol": "HTTP"}], "web", r"ports\[0\]\.protocol: must be one of"),
    ('{"port": 8080}', [{"containerPort": 8080}], "web",
     r"\.port: 8080 is served on the node's address, so container 'web' must declare it as hostPort: 8080"),
    ('{"port": 8080}', [{"containerPort": 8080, "hostPort": 80}], "web",
     r"ports\[0\]\.hostPort: must match containerPort \(8080\), not 80: a wasm Pod shares its node's network"),
])
def test_a_bad_http_handler_fails_the_pod_naming_the_field(annotation: str, ports: list | None, container: str,
                                                           complaint: str) -> None:
    with pytest.raises(UnsupportedPod, match=complaint) as failure:
        parse_pod(http_pod(annotation, ports, container))
    assert failure.value.reason in ("InvalidHttpHandler", "InvalidPod", "HostPortRequired")
