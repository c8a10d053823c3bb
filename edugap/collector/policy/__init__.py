"""Stage 3, policy: the thresholds file, the evaluation of every school, the snapshot.

Owns: `rules` (the policy TOML and its defaults), `evaluate` (store facts -> SchoolStatus),
`facts` (rows folded per school, inventories judged against the OS table), `areas` (province
and commune totals), `snapshots` (the current Snapshot and its refresher).
May import: `edugap.protocol`, `edugap.collector.model`; reads through the `Store`
protocol; never imports ingest, serving, exports, the registry importer or the demo.
"""

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
)
