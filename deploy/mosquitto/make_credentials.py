#!/usr/bin/env python3
"""Create Mosquitto credentials: one user per school (username = school id) and collector users.

    python3 make_credentials.py --registry schools.csv --passwd /etc/mosquitto/edugap/passwd \
        --out school-credentials.csv [--collector edugap-collector]

Reads the `school_id` column of the registry (the same file `edugap schools import` takes:
CSV with `,` `;` or tab, UTF-8 or UTF-16, or XLSX, read by the same code), generates a random
password for every school that has no entry in the password file yet, hashes them all at once
with `mosquitto_passwd -U` (one call, so 60,000 schools take seconds), adds them to the
password file and writes the plaintext passwords to --out for distribution to the schools
(one `username,password` line each, LF line ends). Existing users are left alone; to rotate a
school's password, delete its line from the password file and run again.

Both files hold secrets, so neither is ever written in place: each is a new file created
exclusively (O_EXCL, O_NOFOLLOW) with mode 600 next to the target, then renamed over it. An
existing file with a looser mode, or a symbolic link planted at --out, is replaced, never
written through (a link at --passwd is refused: its users would be lost). The password file
keeps its owner and group (mosquitto must still read it).

Needs Python 3.11 and edugap's registry reader, which is standard library only: on the broker
host, either any install of edugap (the agent's `pip install edugap` is enough; XLSX also
needs openpyxl), or run the script from an edugap source tree, where it finds the package.
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import edugap  # noqa: F401
except ImportError:  # not installed: the source tree this script lives in (deploy/mosquitto/..)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# the registry reader of `edugap schools import`, and the project's rule for CSV cells
from edugap.collector.registry.table import TableError, read_table
from edugap.collector.safetext import FORMULA_PREFIXES, neutralise, unneutralise

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the protocol's rule for a school id / topic level


def new_password() -> str:
    """A random password that no spreadsheet takes for a formula (so the CSV shows it as is)."""
    while True:
        password = secrets.token_urlsafe(18)
        if not password.startswith(FORMULA_PREFIXES):
            return password


def read_school_ids(path: Path) -> list[str]:
    """School ids from the registry's `school_id` column; bad ones are reported by line."""
    try:
        table = read_table(path.read_bytes(), path.name, wanted=("school_id",))
    except OSError as e:
        raise SystemExit(f"cannot read {path}: {e.strerror or e}") from None
    except TableError as e:
        raise SystemExit(f"{path}: {e}") from None
    if "school_id" not in table.header:
        columns = ", ".join(c for c in table.header if c)
        raise SystemExit(
            f"{path}: no 'school_id' column (read as {table.found}; the header has: {columns})"
        )
    ids: list[str] = []
    for line, message in table.errors:
        print(f"{path}: {table.unit} {line}: {message}", file=sys.stderr)
    for line, row in table.records():
        value = unneutralise(row["school_id"].strip())
        if not value and not any(v.strip() for v in row.values()):
            continue  # an empty line
        if not ID.match(value):
            print(f"{path}: {table.unit} {line}: school_id {value!r} is not a valid id",
                  file=sys.stderr)  # fmt: skip
        else:
            ids.append(value)
    return list(dict.fromkeys(ids))  # keep order, drop repeats


def read_private(path: Path) -> str:
    """The file's text ('' if it does not exist), never through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return ""
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SystemExit(f"{path} is a symbolic link: give the file itself") from None
        raise
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


def write_private(path: Path, text: str, keep_owner: bool = False) -> None:
    """Replace `path` with a new mode-600 file holding `text`, atomically.

    The new file is created exclusively and without following links, so nothing that already
    exists (a 644 file, a link to somewhere else) is written through or keeps its mode; the
    rename then puts it in place of whatever was there. keep_owner gives it the owner and group
    of the file it replaces (when run as root).
    """
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        old = None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask
            if keep_owner and old is not None and stat.S_ISREG(old.st_mode) and os.geteuid() == 0:
                os.fchown(f.fileno(), old.st_uid, old.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename survives a power cut
    finally:
        os.close(directory)


def existing_users(passwd_text: str) -> set[str]:
    return {line.split(":", 1)[0] for line in passwd_text.splitlines() if ":" in line}


def hash_entries(entries: list[tuple[str, str]], tool: str) -> str:
    """`user:hash` lines for (user, password) pairs, via one `mosquitto_passwd -U` call."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "passwd"
        write_private(plain, "".join(f"{u}:{p}\n" for u, p in entries))
        subprocess.run([tool, "-U", str(plain)], check=True)
        return plain.read_text()


def credentials_csv(entries: list[tuple[str, str]]) -> str:
    """username,password lines with LF line ends (`cut -d, -f2` then gives the bare password)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["username", "password"])
    writer.writerows([neutralise(user), neutralise(password)] for user, password in entries)
    return out.getvalue()


def passwd_tool_option(parser: argparse.ArgumentParser) -> None:
    """--mosquitto-passwd, found on PATH by default (this script and make_bridges.py)."""
    parser.add_argument("--mosquitto-passwd", default=shutil.which("mosquitto_passwd"),
                        help="path of mosquitto_passwd")  # fmt: skip


def no_passwd_tool() -> int:
    print("mosquitto_passwd not found: install the package 'mosquitto'", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, help="registry CSV with a school_id column")
    parser.add_argument("--passwd", type=Path, required=True, help="Mosquitto password file")
    parser.add_argument("--out", type=Path, required=True, help="CSV of new plaintext passwords")
    parser.add_argument("--collector", action="append", default=[],
                        help="also create this collector user (repeatable)")  # fmt: skip
    passwd_tool_option(parser)
    args = parser.parse_args(argv)
    if not args.mosquitto_passwd:
        return no_passwd_tool()
    wanted = (read_school_ids(args.registry) if args.registry else []) + args.collector
    current = read_private(args.passwd)
    have = existing_users(current)
    new = [(user, new_password()) for user in wanted if user not in have]
    if not new:
        print(f"nothing to do: all {len(wanted)} users already in {args.passwd}")
        return 0
    hashed = hash_entries(new, args.mosquitto_passwd)
    if current and not current.endswith("\n"):
        current += "\n"
    # the plaintext leaves this host only to reach the schools; keep it private meanwhile
    write_private(args.out, credentials_csv(new))
    write_private(args.passwd, current + hashed, keep_owner=True)
    print(f"added {len(new)} users to {args.passwd}; passwords in {args.out}")
    print("reload the broker to apply: systemctl reload mosquitto (or send SIGHUP)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
