"""edugap school agent: probes, on-disk outbox and MQTT publisher.

May import: `edugap.protocol`; never `edugap.collector` (school computers install the
agent alone).
"""

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
)

__version__ = "0.1.0"
