"""The wasmlet node agent."""
