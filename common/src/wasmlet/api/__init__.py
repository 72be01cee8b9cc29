"""The contract between the operator and the node agent (docs/contract.md).

Label, annotation and taint keys, the WasmWorkload model, and the pure function that turns a
WasmWorkload into a Pod. Both components import this package; it imports nothing of ours and
does no I/O.
"""
