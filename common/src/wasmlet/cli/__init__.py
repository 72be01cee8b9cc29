"""The `wasmlet` command line: user-facing tools on top of the agent and the API client."""
