"""Summarise a py-spy collapsed-stack profile (``py-spy record -f raw``): the functions
with the most samples on the stack (inclusive) and at its top (self), as shares of all.

    python bench/profile_summary.py out/capacity/profile-n400-w1.txt [--top 30] [--match stream/]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def frame_name(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)": lines of one function merge.
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    for marker in ("site-packages/", "wt-23/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group(1)} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only frames whose name contains this")
    args = parser.parse_args()
    stacks = load(args.profile)
    total = sum(c for _, c in stacks)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        names = [frame_name(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
    print(f"{total} samples")
    print("inclusive (on the stack):")
    for name, c in [(n, c) for n, c in inclusive.most_common() if args.match in n][: args.top]:
        print(f"  {100 * c / total:5.1f} %  {name}")
    print("self (top of the stack):")
    for name, c in [(n, c) for n, c in own.most_common() if args.match in n][: args.top]:
        print(f"  {100 * c / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
