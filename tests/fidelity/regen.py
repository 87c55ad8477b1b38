"""Rewrite tests/fidelity/golden/ from today's encoders: `python -m tests.fidelity.regen`
(from the repository root, with siemgate importable). Review the diff before committing it:
each changed line is a change of what a SIEM receives."""

from __future__ import annotations

import sys

from tests.fidelity.corpus import GOLDEN, outputs


def main() -> int:
    GOLDEN.mkdir(exist_ok=True)
    for name, content in outputs().items():
        path = GOLDEN / name
        before = path.read_bytes() if path.exists() else None
        if before != content:
            path.write_bytes(content)
            print(f"{path}: rewritten")
        else:
            print(f"{path}: unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
