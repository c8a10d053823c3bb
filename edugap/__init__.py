"""edugap: agents measure schools' links and computers; a collector finds the gaps.

Three packages, one import rule each (tests/test_architecture.py enforces them):

- `edugap.protocol`: the wire protocol both programs speak; imports neither program.
- `edugap.agent`: the school agent (`edugap-agent`); never imports the collector.
- `edugap.collector`: the collector (`edugap`), grouped by the stage a report passes through.

See docs/architecture.md.
"""

__version__ = "0.1.0"
