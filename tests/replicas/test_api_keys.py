"""API keys across replicas: a key revoked on the database (by any replica's operator, or
another process) is refused by the very next request to every replica, however warm its
key cache was."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aztp_agents import Aztp
from aztp_agents.authority import Authority
from aztp_agents.errors import AuthenticationError
from aztp_agents.store import Store
from tests.authority.helpers import run
from tests.replicas.conftest import Cluster


def test_a_revoked_key_is_refused_by_the_next_request_to_every_replica(
    replicas: Callable[[int], Cluster],
) -> None:
    cluster = replicas(2)
    store = Store.open_url(cluster.database_url)
    authority = Authority(store)
    try:
        admin = authority.authenticate(cluster.key)
        key_id, key = authority.create_api_key(admin.org_id, admin.user_id)
        clients = [Aztp(api_key=key, base_url=url) for url in cluster.urls]
        agent = run(clients[0].secure_connect({}, "keyed")).identity.aztp_id
        for client in clients:  # warm both replicas' key caches (the verify fast path too)
            for _ in range(3):
                assert run(client.verify_identity_by_aztp_id(agent)) is True
                run(client.list_flows())

        authority.revoke_api_key(admin.org_id, key_id)

        for client in clients:
            with pytest.raises(AuthenticationError, match="revoked"):
                run(client.verify_identity_by_aztp_id(agent))
            with pytest.raises(AuthenticationError, match="revoked"):
                run(client.list_flows())
        for client in clients:
            client.close()
    finally:
        store.close()
