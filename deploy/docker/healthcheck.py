"""Container health check: exit 0 when ``URL`` answers 2xx (and, for a JSON body with a
``status``, one of the accepted ones), 1 otherwise.  Standard library only, 3 s timeout.

Usage: ``python healthcheck.py URL [ACCEPTED_STATUS,...]`` (the images' ``HEALTHCHECK`` and the
compose file's ``healthcheck`` run it).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def healthy(url: str, accepted: set[str]) -> bool:
    if not url.startswith(("http://", "https://")):
        return False
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:  # nosec B310 # http(s) only, checked above
            if not 200 <= resp.status < 300:
                return False
            body = resp.read()
    except (OSError, urllib.error.URLError, ValueError):
        return False
    if not accepted:
        return True
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return False
    return status in accepted


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: healthcheck.py URL [ACCEPTED_STATUS,...]", file=sys.stderr)
        return 2
    url = argv[0]
    accepted = {s for s in argv[1].split(",") if s} if len(argv) == 2 else set()
    return 0 if healthy(url, accepted) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
