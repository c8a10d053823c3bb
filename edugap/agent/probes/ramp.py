"""The figure of a timed phase: the aggregate rate once TCP's ramp-up is over.

The rule and why it was chosen (against LibreSpeed's fixed grace time, Ookla's dropped slices
and NDT7's whole-phase average) are in docs/protocol.md, "The test the agent runs".
"""

from __future__ import annotations

import bisect
from typing import Final

#: The ramp-up ends when the trailing window's rate reaches this share of the stable rate.
RAMP_WINDOW_SECONDS: Final = 0.5
RAMP_SHARE: Final = 0.9


def stable_rate(samples: list[tuple[float, int]]) -> tuple[float, float]:
    """(bytes per second after the ramp-up, seconds of ramp-up left out) from cumulative samples.

    The reference is the aggregate rate over the second half of the phase; the ramp-up ends at
    the first sample whose trailing `RAMP_WINDOW_SECONDS` reached `RAMP_SHARE` of it (at most
    half the phase). The figure is the bytes from there to the end over that time.
    """
    if len(samples) < 2:
        return 0.0, 0.0
    times = [t for t, _ in samples]
    end_t, end_b = samples[-1]

    def at(t: float) -> int:
        return samples[max(0, bisect.bisect_right(times, t) - 1)][1]

    def rate(a: float, b: float) -> float:
        return (at(b) - at(a)) / (b - a) if b > a else 0.0

    half = end_t / 2
    reference = rate(half, end_t)
    ramp = half
    for t in times:
        if t > half:
            break
        if t >= RAMP_WINDOW_SECONDS and rate(t - RAMP_WINDOW_SECONDS, t) >= RAMP_SHARE * reference:
            ramp = t
            break
    if end_t - ramp <= 0:
        return rate(times[0], end_t), 0.0
    return (end_b - at(ramp)) / (end_t - ramp), ramp
