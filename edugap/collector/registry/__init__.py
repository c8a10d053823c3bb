"""The school registry: reading the sector's school list, and the official places.

Owns: `table` (CSV, TSV and XLSX files as offices write them; standard library only),
`schools` (registry import, row checks), `places` (provinces and communes, name matching,
Vietnamese collation, the provinces of before 2025 and their successors), `outlines` (the
shapes of the country and of the operator's provinces and communes, for maps),
`country_outline` (Vietnam's outline built from Natural Earth at install).
May import: `edugap.protocol`, `edugap.collector.model`, `edugap.collector.safetext`; never
ingest, a store backend, the policy, serving, exports or the demo.
"""

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
    "edugap.collector.safetext",
)
