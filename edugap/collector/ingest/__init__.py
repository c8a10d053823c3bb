"""Stage 1, ingest: MQTT subscription in, validated batches to the store, acks once durable.

Owns: `consumer` (the subscriber and its writer thread), `mqtt_fast` (the fast paho reader).
May import: `edugap.protocol`, `edugap.collector.model`, `edugap.collector.collectors`
(the collector's identity); it writes through the `Store`
protocol it is given and never imports a store backend, the policy, serving, exports or
the demo.
"""

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = (
    "edugap.protocol",
    "edugap.collector.model",
    "edugap.collector.collectors",
)
