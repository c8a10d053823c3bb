"""Run one collector's ingest in its own process, for tests that kill it: `python -m ...`.

Usage: python -m tests.collector.run_ingest STORE_URL BROKER_URL CLIENT_ID
Prints "ready" once subscribed, then runs until SIGTERM (clean stop) or SIGKILL.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from edugap.collector.ingest.consumer import Ingest
from edugap.collector.store import open_store
from edugap.protocol.mqtt import parse_broker_url


def main(argv: list[str]) -> int:
    store_url, broker_url, client_id = argv
    store = open_store(store_url)
    ingest = Ingest(store, parse_broker_url(broker_url), client_id=client_id, batch_seconds=0.05)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    ingest.start()
    while not ingest.ready():
        time.sleep(0.02)
    print("ready", flush=True)
    done.wait()
    ingest.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
