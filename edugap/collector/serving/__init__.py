"""Stage 4, serving: HTTP routes, Prometheus exposition, the coverage page, speed-test endpoint.

Owns: `http` (routes), `openapi`, `exposition` and `metrics` (/metrics), `shards` (province
shards, http_sd targets), `speedtest` (the self-hosted speed-test endpoint), `page` and
`static/` (the coverage page), `mapdata` (/api/v1/map), `encoding` (response compression).
May import: `edugap.protocol`, `edugap.collector.model`, `edugap.collector.policy`
(snapshots), `edugap.collector.export`, `edugap.collector.registry`; never ingest, a store
backend or the demo. Everything it serves comes from the current snapshot.
"""

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
    "edugap.collector.policy",
    "edugap.collector.export",
    "edugap.collector.registry",
)
