"""Writes tests/scope_seconds.txt from the output of a pytest run with `--durations=0` (setup, call and
teardown seconds of every test), summed by pytest-xdist loadscope scope (module, or class), longest
first. tests/conftest.py orders the scopes by it so the long ones start first.

    .venv/bin/python -m pytest -q -p no:cacheprovider -n 3 --durations=0 tests > /tmp/durations.txt
    .venv/bin/python scripts/scope_seconds.py /tmp/durations.txt > tests/scope_seconds.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter

LINE = re.compile(r"^\s*([\d.]+)s (?:setup|call|teardown)\s+(\S.*?)\s*$")


def main(path: str) -> None:
    seconds: Counter[str] = Counter()
    tests: dict[str, set[str]] = {}
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m is None:
                continue
            scope = m[2].rsplit("::", 1)[0]
            seconds[scope] += float(m[1])
            tests.setdefault(scope, set()).add(m[2])
    if not seconds:
        sys.exit(f"no `--durations=0` lines in {path}")
    print("# seconds tests scope: setup+call+teardown by pytest-xdist loadscope scope (scripts/scope_seconds.py)")
    for scope, s in seconds.most_common():
        print(f"{s:.1f} {len(tests[scope])} {scope}")


if __name__ == "__main__":
    main(sys.argv[1])
