#!/usr/bin/env python3
"""Container health probe: exit 0 when a marsbench service answers 2xx, else 1.

    marsbench-healthcheck                       # http://127.0.0.1:$MARSBENCH_PORT/healthz
    marsbench-healthcheck /readyz               # another path on the same port
    marsbench-healthcheck http://host:8001/readyz

Standard library only (the images carry no curl); installed as /usr/local/bin/marsbench-healthcheck
by gpu.Dockerfile and used by its HEALTHCHECK and by docker-compose.yml.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def probe_url(arg: str | None) -> str:
    if arg and arg.startswith(("http://", "https://")):
        return arg
    port = os.environ.get("MARSBENCH_PORT", "8001")
    return f"http://127.0.0.1:{port}{arg or '/healthz'}"


def main(argv: list[str]) -> int:
    url = probe_url(argv[1] if len(argv) > 1 else None)
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (a 503 while loading) included
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
