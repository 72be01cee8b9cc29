"""The wasmlet operator: turns WasmWorkloads into Pods bound to wasm nodes (DESIGN.md §1).

Layers, one direction (each imports only those below it):

    main             composition root: settings → credentials → kopf
    handlers         thin kopf handlers: map events to the reconcile queue; no decisions
    queue            per-workload exclusion, coalescing, retries, periodic resync
    reconciler       the service: read → plan → place → apply → status
    planning, placement, status, objects
                     PURE: decisions over plain Pod/Node/WasmWorkload data, no I/O
    cluster          the only module that talks to the API server (via wasmlet.kube)
    errors, settings, memo
                     what every layer may use

The operator never imports the node agent: the Pod is the contract (wasmlet.api).
"""
