"""The wasmlet operator."""
