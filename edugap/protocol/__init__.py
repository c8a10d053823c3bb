"""The wire protocol v1: message classes, topics, MQTT connection settings, JSON Schema.

Owns: `messages` (typed reports, topics, decode/encode), `mqtt` (broker URL, paho client
factory, connect properties), `schemagen` (docs/schema from the classes), `lifecycle` (the OS
end-of-support table the agent names versions by and the collector decides from).
May import: the standard library, msgspec and paho-mqtt only; never `edugap.agent` or
`edugap.collector`, so both programs can depend on it and it on neither.
"""

# what this package may import from edugap (tests/test_architecture.py checks it)
MAY_IMPORT: tuple[str, ...] = ()
