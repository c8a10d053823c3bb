#!/usr/bin/env python3
"""Create Mosquitto credentials: one user per school (username = school id) and collector users.

    python3 make_credentials.py --registry schools.csv --passwd /etc/mosquitto/edugap/passwd \
        --out school-credentials.csv [--collector edugap-collector]

Reads the `school_id` column of the registry CSV (the same file `edugap schools import`
takes), generates a random password for every school that has no entry in the password file
yet, hashes them all at once with `mosquitto_passwd -U` (one call, so 60,000 schools take
seconds), appends them to the password file and writes the plaintext passwords to --out
(mode 600) for distribution to the schools. Existing users are left alone; to rotate a
school's password, delete its line from the password file and run again.

Standard library only, so it runs on the broker host without edugap installed.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the protocol's rule for a school id / topic level


def read_school_ids(path: Path) -> list[str]:
    """School ids from the registry's `school_id` column; bad ones are reported by line."""
    ids: list[str] = []
    problems: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "school_id" not in reader.fieldnames:
            raise SystemExit(f"{path}: no 'school_id' column (columns: {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            value = (row.get("school_id") or "").strip()
            if not ID.match(value):
                problems.append(f"{path}:{line}: school_id {value!r} is not a valid id")
            else:
                ids.append(value)
    for p in problems:
        print(p, file=sys.stderr)
    return list(dict.fromkeys(ids))  # keep order, drop repeats


def existing_users(passwd: Path) -> set[str]:
    if not passwd.exists():
        return set()
    return {line.split(":", 1)[0] for line in passwd.read_text().splitlines() if ":" in line}


def hash_entries(entries: list[tuple[str, str]], tool: str) -> str:
    """`user:hash` lines for (user, password) pairs, via one `mosquitto_passwd -U` call."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "passwd"
        plain.write_text("".join(f"{u}:{p}\n" for u, p in entries))
        plain.chmod(0o600)
        subprocess.run([tool, "-U", str(plain)], check=True)
        return plain.read_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, help="registry CSV with a school_id column")
    parser.add_argument("--passwd", type=Path, required=True, help="Mosquitto password file")
    parser.add_argument("--out", type=Path, required=True, help="CSV of new plaintext passwords")
    parser.add_argument("--collector", action="append", default=[],
                        help="also create this collector user (repeatable)")  # fmt: skip
    parser.add_argument("--mosquitto-passwd", default=shutil.which("mosquitto_passwd"),
                        help="path of mosquitto_passwd")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.mosquitto_passwd:
        print("mosquitto_passwd not found: install the package 'mosquitto'", file=sys.stderr)
        return 2
    wanted = (read_school_ids(args.registry) if args.registry else []) + args.collector
    have = existing_users(args.passwd)
    new = [(user, secrets.token_urlsafe(18)) for user in wanted if user not in have]
    if not new:
        print(f"nothing to do: all {len(wanted)} users already in {args.passwd}")
        return 0
    hashed = hash_entries(new, args.mosquitto_passwd)
    with args.passwd.open("a") as f:
        f.write(hashed)
    args.passwd.chmod(0o600)
    # the plaintext leaves this host only to reach the schools; keep it private meanwhile
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["username", "password"])
        writer.writerows(new)
    print(f"added {len(new)} users to {args.passwd}; passwords in {args.out}")
    print("reload the broker to apply: systemctl reload mosquitto (or send SIGHUP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
