"""Helpers for the console tests (no tests here).

- :func:`console_client`: an httpx client signed in to a server's console with an API key
  (its cookie jar holds the session), as a browser would be, sending its own ``Origin``;
- :func:`csrf_of`: the CSRF token in a console page;
- :func:`add_user`: another user (and API key) of a key's organization in a running server's
  store (the server accepts the key at once);
- :func:`flow_health_of` / :func:`flow_member_status`: the authority's answers through the
  API, to check what a console action did (or did not do).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from aztp_agents.authority import Authority
from aztp_agents.store import Store

__all__ = ["add_user", "console_client", "csrf_of", "flow_member_status"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_client(url: str, api_key: str) -> httpx.Client:
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    answer = client.post("/console/login", data={"api_key": api_key}, headers={"Origin": url})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def add_user(home: Path, api_key: str, name: str) -> str:
    """A new user of the organization of ``api_key`` in the store under ``home``; returns
    the new user's API key."""
    store = Store.open_sqlite(Path(home) / "aztp.db")
    try:
        authority = Authority(store)
        org_id = authority.authenticate(api_key).org_id
        user = authority.create_user(org_id, name)
        return authority.create_api_key(org_id, user.user_id)[1]
    finally:
        store.close()


def flow_member_status(url: str, api_key: str, flow_id: str, aztp_id: str) -> Any:
    """The member's status in the flow (``active`` / ``revoked``), through the API."""
    answer = httpx.get(f"{url}/v1/flows/{flow_id}", headers={"api_access_key": api_key})
    answer.raise_for_status()
    return next(m["status"] for m in answer.json()["data"]["identities"] if m["aztpId"] == aztp_id)
