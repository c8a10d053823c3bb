"""edugap school agent: probes, on-disk outbox and MQTT publisher."""

__version__ = "0.1.0"
