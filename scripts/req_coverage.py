"""List the requirement IDs of the catalog that no test names with @pytest.mark.req("ID")
(on a test, or as a module's ``pytestmark``).

Usage: python scripts/req_coverage.py [path/to/requirements.md]
The catalog is ../shared/requirements.md beside the repository by default. Exit code 0 always;
the output lists covered IDs with their tests and the uncovered IDs.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ID_RE = re.compile(r"^- ([A-Z]{2,3}-[0-9A-Za-z.]+)\s", re.M)
# ``@pytest.mark.req("ID")`` on a test or class, and ``pytestmark = pytest.mark.req("ID")`` (or a
# list of marks) for a whole module.
MARK_RE = re.compile(r"""pytest\.mark\.req\(\s*((?:["'][^"']+["']\s*,?\s*)+)\)""")


def catalog(path: Path) -> list[str]:
    return ID_RE.findall(path.read_text())


def marked() -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for f in sorted((ROOT / "tests").rglob("test_*.py")):
        text = f.read_text()
        for m in MARK_RE.finditer(text):
            for rid in re.findall(r"""["']([^"']+)["']""", m.group(1)):
                line = text[: m.start()].count("\n") + 1
                found[rid].append(f"{f.relative_to(ROOT)}:{line}")
    return found


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "requirements.md"
    ids = catalog(path)
    found = marked()
    for rid in ids:
        where = found.get(rid)
        print(f"{'covered  ' if where else 'UNCOVERED'} {rid:10} {', '.join(where or [])}")
    unknown = sorted(set(found) - set(ids))
    if unknown:
        print("marked but not in the catalog:", ", ".join(unknown))
    print(f"{sum(1 for r in ids if r in found)}/{len(ids)} requirements covered")


if __name__ == "__main__":
    main()
