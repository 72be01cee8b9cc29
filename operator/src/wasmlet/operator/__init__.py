"""The wasmlet operator: turns WasmWorkloads into Pods bound to wasm nodes, and an HTTP workload's
`spec.http.service` into a Service in front of them (docs/architecture.md, docs/http.md).

Layers, one direction (each imports only those below it):

    main             composition root: settings → credentials → kopf
    handlers         thin kopf handlers: login, startup/cleanup, probe, WasmWorkload events
    memo             kopf's memo: settings, identity, the running services
    services         the running parts: client, caches and watches, queue, peering gate, metrics server
    queue            per-workload exclusion, coalescing, holds, retries, periodic resync
    reconciler       the service: read → plan → place → apply → status → events
    planning, status, events, exposure
                     PURE: decisions over plain Pod/Node/Service/WasmWorkload data, no I/O
    cluster          the only module that talks to the API server (via wasmlet.kube)
    placement, cache, peering
                     PURE: where replicas go; the in-memory caches; kopf's peering rule
    objects          PURE: readers of Pod and Node bodies
    errors, settings, metrics
                     what every layer may use

The operator never imports the node agent: the Pod is the contract (wasmlet.api).
"""
