"""Pulling modules from OCI registries (docs/contract.md, module references).

The rule of this package: only `client` talks to the network. `reference`, `auth`, `manifest`
and `layers` are pure parsers and checks over bytes and files, unit-tested without a registry;
`pull` is the one place that strings them together for the module cache. Nothing here
imports the Pod machinery, so the `wasmlet push` command can reuse the client.
"""
