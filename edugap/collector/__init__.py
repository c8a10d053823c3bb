"""edugap collector: ingest, store, shortfall policy, metrics, HTTP API and exports."""

__version__ = "0.1.0"
