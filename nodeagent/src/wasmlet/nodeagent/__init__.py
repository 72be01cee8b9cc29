"""The wasmlet node agent: a kubelet for WebAssembly (docs/agent.md, docs/contract.md).

Layers, one direction: `main` (composition root) → controllers (`node`, `pods`, `lifecycle`)
and sources (`sources`) → `modules`, `logs`, `reporting` → `runtime` backends → `podspec`,
`status`, `config`, `errors` (pure models). Nothing here imports the operator; the two share
only `wasmlet.api`. Runtime backends are imported lazily, when a Pod first asks for one, to keep
the idle agent small.
"""

import importlib.metadata

VERSION = importlib.metadata.version("wasmlet")
