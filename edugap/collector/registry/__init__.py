"""The school registry: reading the sector's school list, and the official places.

Owns: `schools` (registry CSV import, row checks), `places` (provinces and communes, name
matching).
May import: `edugap.protocol`, `edugap.collector.model`, `edugap.collector.safetext`; never
ingest, a store backend, the policy, serving, exports or the demo.
"""

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
    "edugap.collector.safetext",
)
