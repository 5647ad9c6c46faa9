"""Compare the distributions installed beside this interpreter with a constraints file.

Usage: python compare_constraints.py CONSTRAINTS [--ignore NAME ...]

Prints each distribution that is installed but not pinned, or installed at another version than its
pin, and exits 1 if there is any (2 for an unreadable file); pins of distributions that are not installed are fine (another
platform's or another extra's). Only the standard library, so it runs in any environment.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib.metadata import distributions


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> dict[str, str]:
    pins = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep or not version.strip():
                raise ValueError(f"{path}:{number}: expected NAME==VERSION, got {line!r}")
            pins[canonical(name.strip())] = version.strip()
    return pins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("constraints")
    parser.add_argument("--ignore", nargs="*", default=[], help="distributions to leave out (the project itself)")
    args = parser.parse_args(argv)
    try:
        pins = read_pins(args.constraints)
    except (OSError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    ignored = {canonical(n) for n in args.ignore}
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
    problems = []
    for name, version in sorted(installed.items()):
        if name in ignored:
            continue
        if name not in pins:
            problems.append(f"{name}=={version} is installed but not pinned in {args.constraints}")
        elif pins[name] != version:
            problems.append(f"{name}=={version} is installed but {args.constraints} pins {pins[name]}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
