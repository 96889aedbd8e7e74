"""`python -m nfse_local.iam_map`: print the IAM map (the table of docs/security.md), or the
gaps between what the code calls and what template.yaml grants (exit status 1)."""

from __future__ import annotations

import sys

from nfse_local.iam_map.project import gaps, render_map


def main() -> int:
    """Print the map and return 0, or print every gap to stderr and return 1."""
    problems = gaps()
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} IAM gap(s) in template.yaml", file=sys.stderr)
        return 1
    print(render_map())
    return 0


if __name__ == "__main__":
    sys.exit(main())
