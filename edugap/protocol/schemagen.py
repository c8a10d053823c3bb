"""Write the JSON Schema files: `python -m edugap.protocol.schemagen [DIR]` (default
docs/schema)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edugap.protocol.messages import json_schemas


def render() -> dict[str, str]:
    """File name -> file text, exactly as committed."""
    return {
        name: json.dumps(doc, indent=2, sort_keys=True) + "\n"
        for name, doc in json_schemas().items()
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/schema")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
