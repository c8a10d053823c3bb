#!/usr/bin/env python3
"""Create the Mosquitto configuration of regional brokers bridged to one central broker.

    python3 make_bridges.py --regions regions.toml --registry schools.csv --out brokers/ \
        [--collector edugap-collector]

Schools connect to their region's broker (TLS, one user per school, the shipped ACL); each
regional broker forwards the report topics, QoS 1, over one TLS bridge connection to the
central broker, where the collectors subscribe. regions.toml names the central broker and, per
region, its provinces (matched to the registry's `province` column, accents, case and "Tỉnh" /
"Thành phố" aside) or its schools:

    [central]
    address = "mqtt-central.edu.example.vn:8883"   # what the regional brokers dial

    [regions.bac]
    provinces = ["Hà Nội", "Hải Phòng"]
    [regions.nam]
    provinces = ["Hồ Chí Minh"]
    schools = ["79-THPT-0123"]                     # explicit ids, besides or instead

Writes, under --out:
  <region>/mosquitto.conf  the shipped mosquitto.conf plus the bridge to the central broker
                           (holds the bridge's password: mode 600)
  <region>/schools.csv     the region's schools: give it to make_credentials.py --registry to
                           create that broker's password file
  central/mosquitto.conf   the shipped mosquitto.conf: TLS listener for the bridges, private
                           plain listener for the collectors, persistence
  central/acl              bridge users may only publish reports; collectors read them
  central/passwd           hashed passwords of the bridge users (and of new --collector users)
  central/collector-credentials.csv  plaintext passwords of new --collector users

Every school of the registry must fall in exactly one region, else nothing is written. Run it
again after adding schools or regions: bridge passwords already in <region>/mosquitto.conf and
users already in central/passwd are kept. Secrets are written as make_credentials.py writes
them (new mode-600 file, renamed into place). See docs/operations.md, "Regional brokers".
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def _credentials_module() -> ModuleType:
    """make_credentials.py beside this file (registry reader, private files, hashing)."""
    spec = importlib.util.spec_from_file_location("make_credentials", HERE / "make_credentials.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


creds = _credentials_module()
from edugap.collector.registry import places  # noqa: E402 (after the path fix above)
from edugap.collector.registry.table import TableError, read_table  # noqa: E402

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # a region's name: a client id and file name part
# The report topics, edugap/v1/<school>/<device>/<kind>, retained status included; not the
# agents' echo topics one level deeper, which only the regional broker needs to answer.
REPORTS = "edugap/v1/+/+/+"


def place_key(name: str) -> str:
    """Provinces compared as `edugap schools import` does ("TP HCM" is Hồ Chí Minh); without
    the official list (an agent-only install), by name with accents, case and prefix aside."""
    try:
        return places.province_key(name)
    except ImportError:
        return places.key(name)


@dataclass
class Region:
    name: str
    provinces: list[str] = field(default_factory=list)
    schools: list[str] = field(default_factory=list)


@dataclass
class Plan:
    central: str
    regions: list[Region]


def load_regions(path: Path) -> Plan:
    """regions.toml, checked: a central address and at least one well-named region."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SystemExit(f"cannot read {path}: {e}") from None
    central = data.get("central", {}).get("address")
    if not isinstance(central, str) or not re.match(r"^[^\s:]+:\d+$", central):
        raise SystemExit(f"{path}: [central] address must be 'host:port', not {central!r}")
    regions = []
    for name, spec in (data.get("regions") or {}).items():
        if not NAME.match(name):
            raise SystemExit(f"{path}: region name {name!r}: use a-z, 0-9 and '-' (max 32)")
        provinces, schools = spec.get("provinces", []), spec.get("schools", [])
        for key, value in (("provinces", provinces), ("schools", schools)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SystemExit(f"{path}: regions.{name}.{key} must be a list of strings")
        if not provinces and not schools:
            raise SystemExit(f"{path}: region {name!r} has neither provinces nor schools")
        regions.append(Region(name, provinces, schools))
    if not regions:
        raise SystemExit(f"{path}: no [regions.<name>] table")
    return Plan(central, regions)


def assign(plan: Plan, registry: Path | None) -> dict[str, list[str]]:
    """region -> its school ids; every registry school in exactly one region, or SystemExit."""
    by_province: dict[str, str] = {}
    by_school: dict[str, str] = {}
    problems: list[str] = []
    for region in plan.regions:
        for province in region.provinces:
            other = by_province.setdefault(place_key(province), region.name)
            if other != region.name:
                problems.append(f"province {province!r} is in regions {other} and {region.name}")
        for school in region.schools:
            other = by_school.setdefault(school, region.name)
            if other != region.name:
                problems.append(f"school {school!r} is in regions {other} and {region.name}")
    result: dict[str, list[str]] = {r.name: [] for r in plan.regions}
    for school, region_name in by_school.items():
        if not creds.ID.match(school):
            problems.append(f"school id {school!r} is not a valid id")
        result[region_name].append(school)
    unplaced: list[str] = []
    if registry is not None:
        for school, province in read_registry(registry):
            if school in by_school:
                continue  # named explicitly: that region wins over its province
            region_name = by_province.get(place_key(province)) if province else None
            if region_name is None:
                unplaced.append(f"{school} ({province or 'no province'})")
            else:
                result[region_name].append(school)
    elif any(r.provinces for r in plan.regions):
        problems.append("regions are given by province: --registry is needed")
    if unplaced:
        shown = ", ".join(unplaced[:10]) + (" ..." if len(unplaced) > 10 else "")
        problems.append(f"{len(unplaced)} schools are in no region: {shown}")
    if problems:
        raise SystemExit("\n".join(problems))
    return {name: list(dict.fromkeys(ids)) for name, ids in result.items()}


def read_registry(path: Path) -> list[tuple[str, str]]:
    """(school_id, province) per registry row, read as `edugap schools import` reads it."""
    try:
        table = read_table(path.read_bytes(), path.name, wanted=("school_id", "province"))
    except OSError as e:
        raise SystemExit(f"cannot read {path}: {e.strerror or e}") from None
    except TableError as e:
        raise SystemExit(f"{path}: {e}") from None
    if "school_id" not in table.header:
        raise SystemExit(f"{path}: no 'school_id' column (read as {table.found})")
    rows = []
    for line, row in table.records():
        school = creds.unneutralise(row["school_id"].strip())
        if not school:
            continue
        if not creds.ID.match(school):
            raise SystemExit(f"{path}: {table.unit} {line}: school_id {school!r} is not valid")
        rows.append((school, row.get("province", "").strip()))
    return rows


def bridge_section(region: str, central: str, password: str, ca_file: str) -> str:
    """The bridge from a regional broker to the central one (Mosquitto 2 keys)."""
    return f"""
# --- Bridge to the central broker (generated by make_bridges.py for region {region}) ---
# The bridge is a local subscriber to every report topic here, so this broker queues each report
# for it (persisted with the rest) and answers an agent's publish as delivered: responsibility
# for the report passes from the agent's outbox to this broker's bridge queue, which is bounded
# by max_queued_messages above (when full, new reports are dropped: see docs/scale.md).
connection edugap-{region}
address {central}
# MQTT 3.1.1 with Mosquitto's bridge marker (try_private): the central broker then keeps the
# retain flag of the agents' status messages and never sends reports back. Mosquitto's bridge
# ignores MQTT 5 PUBACK reason codes anyway, so MQTT 5 would add nothing here.
bridge_protocol_version mqttv311
try_private true
remote_clientid edugap-bridge-{region}
local_clientid edugap-bridge-{region}.local
remote_username bridge-{region}
remote_password {password}
bridge_cafile {ca_file}
bridge_tls_version tlsv1.2
bridge_insecure false
# If the central listener sets require_certificate true, give this bridge its own certificate:
# bridge_certfile /etc/mosquitto/certs/bridge-{region}.crt
# bridge_keyfile /etc/mosquitto/certs/bridge-{region}.key
# Keep both sessions: reports queued for the bridge survive a link cut and a restart of either
# broker, and in-flight ones are sent again (the collector stores a report id once).
cleansession false
local_cleansession false
bridge_attempt_unsubscribe false
bridge_max_packet_size 70000
keepalive_interval 60
# After a cut or a central restart, wait 10 s before dialling again: collectors reconnect within
# 1-2 s, so a group on a $share subscription (which Mosquitto 2.0 does not restore at a
# restart) has subscribed again before a bridge forwards a report to which nobody would listen.
restart_timeout 10
notifications true
notifications_local_only true
topic {REPORTS} out 1
"""


def central_acl(regions: list[str], collectors: list[str]) -> str:
    lines = [
        "# edugap ACL of the central broker (generated by make_bridges.py).",
        "# Regional bridges may publish reports only (edugap/v1/<school>/<device>/<kind>); each",
        "# regional broker already lets a school publish under its own id alone, and only that",
        "# region's schools have a password there. Listing every school per bridge user here",
        "# would make Mosquitto match each publish against a region's whole list (linear).",
        "",
    ]
    for name in collectors:
        lines += [f"user {name}", "topic read edugap/v1/#", ""]
    for name in regions:
        lines += [f"user bridge-{name}", f"topic write {REPORTS}", ""]
    return "\n".join(lines)


def existing_password(conf: Path) -> str | None:
    found = re.search(r"^remote_password (\S+)$", creds.read_private(conf), re.MULTILINE)
    return found.group(1) if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=Path, required=True, help="regions.toml")
    parser.add_argument("--registry", type=Path, help="registry with school_id and province")
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--collector", action="append", default=[],
                        help="create this collector user on the central broker (repeatable)")
    parser.add_argument("--ca-file", default="/etc/mosquitto/certs/central-ca.crt",
                        help="CA of the central broker's certificate, on the regional hosts")
    parser.add_argument("--max-queued-messages", type=int, default=None,
                        help="regional bridge queue limit (default: the shipped config's)")
    parser.add_argument("--max-queued-bytes", type=int, default=None,
                        help="the same limit in bytes of payload (default: the shipped "
                             "config's, 0: none)")
    parser.add_argument("--mosquitto-passwd", default=shutil.which("mosquitto_passwd"),
                        help="path of mosquitto_passwd")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.mosquitto_passwd:
        print("mosquitto_passwd not found: install the package 'mosquitto'", file=sys.stderr)
        return 2
    plan = load_regions(args.regions)
    schools = assign(plan, args.registry)
    base = (HERE / "mosquitto.conf").read_text(encoding="utf-8")
    regional = base
    for key, value in (("max_queued_messages", args.max_queued_messages),
                       ("max_queued_bytes", args.max_queued_bytes)):
        if value is not None:
            regional, n = re.subn(rf"^{key} \d+$", f"{key} {value}", regional, flags=re.M)
            assert n == 1, f"the shipped mosquitto.conf lost its {key} line"

    central_dir = args.out / "central"
    central_dir.mkdir(parents=True, exist_ok=True)
    passwd = central_dir / "passwd"
    current = creds.read_private(passwd)
    have = creds.existing_users(current)
    new_users: list[tuple[str, str]] = []
    for region in plan.regions:
        conf = args.out / region.name / "mosquitto.conf"
        (args.out / region.name).mkdir(exist_ok=True)
        password = existing_password(conf) if conf.exists() else None
        user = f"bridge-{region.name}"
        if password is None or user not in have:
            password = creds.new_password()
            current = "".join(
                line + "\n" for line in current.splitlines() if line.split(":", 1)[0] != user
            )
            new_users.append((user, password))
        creds.write_private(conf, regional + bridge_section(region.name, plan.central, password,
                                                        args.ca_file))  # fmt: skip
        (args.out / region.name / "schools.csv").write_text(
            "school_id\n" + "".join(f"{s}\n" for s in schools[region.name]), encoding="utf-8"
        )
        print(f"{region.name}: {len(schools[region.name])} schools")
    new_collectors = [(u, creds.new_password()) for u in args.collector if u not in have]
    new_users += new_collectors
    if new_users:
        if current and not current.endswith("\n"):
            current += "\n"
        current += creds.hash_entries(new_users, args.mosquitto_passwd)
        creds.write_private(passwd, current, keep_owner=True)
    if new_collectors:
        creds.write_private(central_dir / "collector-credentials.csv",
                            creds.credentials_csv(new_collectors))  # fmt: skip
    collectors = sorted({*args.collector, *(u for u in have if not u.startswith("bridge-"))})
    (central_dir / "acl").write_text(
        central_acl([r.name for r in plan.regions], collectors), encoding="utf-8"
    )
    (central_dir / "mosquitto.conf").write_text(base, encoding="utf-8")
    print(f"wrote {args.out}: central/ and {len(plan.regions)} regions; next, for each region: "
          "make_credentials.py --registry <region>/schools.csv --passwd ...")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
