"""The demo and the fleet simulator: not part of the data path.

Owns: `runner` (`edugap demo`), `procs` (child processes), `summary`, `fleet` and `simulate`
(simulated schools and reports), `bulk_publish`, `amqtt_broker` (fallback broker).
May import: anything in `edugap`. Nothing outside `edugap.collector.commands` imports it.
"""
