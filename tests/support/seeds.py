"""Shared helpers for the seed scenario tests (tests/seeds/).

:class:`LangflowIdentityService` is seed 000's Langflow service (kept close to verbatim); seed
001's component test uses it too, so it lives here rather than in one test file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from aztp_agents import Aztp
from aztp_agents.ids import sanitize_name

logger = logging.getLogger("tests.seeds")

OBJECT_ID = re.compile(r"[0-9a-f]{24}")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def aztp(name: str, td: str = "astha.ai", env: str = "production") -> str:
    return f"aztp://{td}/workload/{env}/node/{name}"


def links_of(client: Aztp, aztp_id: str | None = None) -> list[dict[str, Any]]:
    authority = client.backend.authority  # type: ignore[attr-defined]
    return authority.list_links(client.backend.principal, aztp_id)  # type: ignore[attr-defined]


class LangflowIdentityService:
    """From langflow.services.identity.service.py (seed 000: flows; seed 001: components).

    changed: ``_get_client`` returns the embedded client; ``_sanitize_agent_name`` is
    :func:`aztp_agents.ids.sanitize_name` (the library's sanitizer based on the seed's).
    """

    def __init__(self, client: Aztp) -> None:
        self._client = client
        self._lock = asyncio.Lock()

    async def _get_client(self, organization_api_key: str | None = None) -> Aztp:
        return self._client

    def _sanitize_agent_name(self, component_name: str) -> str:
        return sanitize_name(component_name)

    async def create_flow_identity(
        self,
        flow_name: str,
        description: str | None = None,
        flow_id: str | None = None,
        folder_id: str | None = None,
        organization_api_key: str | None = None,
    ) -> dict[str, Any] | None:
        """Create AZTP flow identity for a Langflow workflow."""

        async with self._lock:
            try:
                client = await self._get_client(organization_api_key=organization_api_key)
                if not client:
                    logger.error("❌ Organization API key required for flow creation")
                    return None

                # Prepare enhanced metadata linking Langflow and AZTP
                metadata = {
                    "project": flow_name,
                    "environment": "production",
                    "astha-flow": {
                        "id": flow_id or "unknown-flow-id",
                        "folderId": folder_id or "unknown-folder-id",
                    },
                }

                # Create AZTP flow with enhanced metadata
                aztp_flow_data = await client.create_flow(
                    flow_name,
                    description=description or f"Langflow workflow: {flow_name}",
                    discoverable="public",
                    tags=[description or flow_name],
                    metadata=metadata,
                )

                # Save flow ID for component registration
                flow_file = f"aztp_flow_id_{organization_api_key[:8]}.json"
                with open(flow_file, "w") as f:
                    json.dump(aztp_flow_data["_id"], f)

                logger.info("✅ AZTP flow created:")
                logger.info(f"  AZTP Flow ID: {aztp_flow_data.get('_id')}")
                logger.info(f"  Langflow Flow ID: {flow_id}")
                logger.info(f"  Langflow Folder ID: {folder_id}")

                return aztp_flow_data

            except Exception as e:
                logger.error(f"Failed to create AZTP flow for '{flow_name}': {e}")
                return None

    async def add_component_to_flow(
        self, aztp_flow_id: str, component_aztp_id: str, organization_api_key: str | None = None
    ) -> bool:
        """Add component identity to AZTP flow."""

        async with self._lock:
            try:
                client = await self._get_client(organization_api_key=organization_api_key)
                if not client:
                    logger.error("❌ Organization API key required for adding component to flow")
                    return False

                # Add component identity to flow
                await client.add_identity_to_flow(aztp_flow_id, component_aztp_id)
                logger.info(f"✅ Added component {component_aztp_id} to AZTP flow {aztp_flow_id}")

                return True

            except Exception as e:
                logger.error(
                    f"Failed to add component {component_aztp_id} to AZTP flow {aztp_flow_id}: {e}"
                )
                return False

    async def secure_connect_component(
        self, component_id: str, component_name: str, organization_api_key: str | None = None
    ) -> Any | None:
        """Create secure connection for a Langflow component."""

        # Get organization-specific AZTP client
        client = await self._get_client(organization_api_key=organization_api_key)
        if not client:
            logger.error("❌ Organization API key required for component identity")
            return None

        # Sanitize component name for AZTP requirements
        sanitized_name = self._sanitize_agent_name(component_name)

        # Create component-specific identity
        agent = await client.secure_connect({}, sanitized_name, config={"isGlobalIdentity": False})

        # Store identity information
        if agent.identity.valid:
            identity_data = await client.get_identity(agent)
            parsed_data = json.loads(identity_data)

            agent.aztp_identity_id = parsed_data["data"]["aztpId"]
            agent.aztp_identity_status = parsed_data["data"]["status"]

            logger.info(f"✅ Component secured: {component_id} -> {agent.aztp_identity_id}")

        return agent
