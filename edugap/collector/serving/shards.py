"""Which /metrics shard a school's series travel in, and the targets Prometheus scrapes.

A shard is one of the 34 provinces, under its official name. Names match the way the API
matches them (edugap.collector.registry.places: case, accents, NFC or NFD, "Tỉnh" and "Thành
phố" prefixes), so "cao bang", "Tỉnh Cao Bằng" and the registry's "Cao Bằng" are one shard.
Schools with no province (unregistered) or one outside the 34 travel in the collector's own
shard, `/metrics?collector=1`, which the shipped Prometheus config always scrapes.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from edugap.collector.registry.places import default_places

OUTSIDE = ""  # the shard of schools outside the 34 provinces: served with ?collector=1


@lru_cache(maxsize=4096)  # a snapshot asks once per school; names repeat
def shard_of(province: str) -> str:
    """The shard that a school of `province` belongs to: an official name, or OUTSIDE."""
    if not province:
        return OUTSIDE
    found = default_places().province(province)
    return found.name if found is not None else OUTSIDE


def resolve(name: str) -> str | None:
    """The shard that `?province=name` asks for, or None when no province has that name."""
    found = default_places().province(name) if name.strip() else None
    return found.name if found is not None else None


def known() -> list[str]:
    """The official names of the 34 provinces, in the official order."""
    return [p.name for p in default_places().provinces]


def unknown_message(name: str) -> str:
    """The 404 text for a `?province=` that matches no province: it names the known ones."""
    return (
        f"unknown province {name!r}: the shards are the official provinces "
        f"({', '.join(known())}); schools outside them are served with ?collector=1"
    )


def sd_targets(address: str, shards: Iterable[str]) -> list[dict[str, Any]]:
    """Prometheus http_sd target groups, one per province shard, all at `address`.

    `__param_province` becomes the scrape's ?province=; `shard` tells the targets apart
    while `instance` stays the collector's address, so alerts can group by collector.
    """
    order = {name: i for i, name in enumerate(known())}
    chosen = sorted({s for s in shards if s in order}, key=order.__getitem__)
    return [
        {"targets": [address], "labels": {"__param_province": name, "shard": name}}
        for name in chosen
    ]
