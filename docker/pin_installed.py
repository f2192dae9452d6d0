"""Print `name==version` for every distribution installed in this Python, as a pip constraints file.

The teacher image installs distill into a vLLM image with `pip install --constraint` on this list,
so pip adds what is missing but never upgrades or replaces torch, vLLM or anything they rely on.
Distributions whose version is not PEP 440 (Debian's system packages, e.g. `1.1build1`) are left
out: pip rejects such lines, and distill does not depend on them.
"""

from __future__ import annotations

import sys
from importlib.metadata import distributions

from pip._vendor.packaging.version import InvalidVersion, Version


def main() -> None:
    seen: set[str] = set()
    for dist in distributions():
        name = dist.metadata["Name"]
        # The first one on sys.path is the one Python imports; later duplicates are shadowed.
        if not name or name.lower() in seen:
            continue
        try:
            Version(dist.version)
        except InvalidVersion:
            continue
        seen.add(name.lower())
        sys.stdout.write(f"{name}=={dist.version}\n")


if __name__ == "__main__":
    main()
