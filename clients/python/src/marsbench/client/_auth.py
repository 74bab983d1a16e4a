"""The API key a client sends: its constructor argument, else the deployment's MARSBENCH_API_KEY."""

from __future__ import annotations

import os

API_KEY_ENV = "MARSBENCH_API_KEY"


def auth_headers(api_key: str | None = None) -> dict[str, str]:
    """`Authorization: Bearer <key>`, or no header when neither the argument nor the env holds a key
    (an empty value counts as none, as the services read it)."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    key = (key or "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}
