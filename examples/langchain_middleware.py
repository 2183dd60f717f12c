"""A LangChain v1 agent with AZTP identities and a guard before every tool call, offline.

Runs without network or API key: the chat model is the scripted one from
``aztp_langchain.testing`` and the identity authority is embedded (SQLite in a
temporary directory unless ``AZTP_HOME`` is set).

Run: .venv/bin/python examples/langchain_middleware.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from aztp_langchain import AztpMiddleware, identity_of, secure_tools
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.tools import tool

from aztp_agents import Aztp


@tool
def web_search(query: str) -> str:
    """Search the web."""
    return f"3 results for {query!r}"


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    return f"email sent to {to}"


def show(title: str, result: dict) -> None:
    print(f"\n== {title}")
    for m in result["messages"]:
        if isinstance(m, ToolMessage):
            print(f"  tool {m.name:<10} [{m.status}] {m.content}")
    print(f"  answer: {result['messages'][-1].content}")


async def main() -> None:
    client = Aztp(home=os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-"))
    model = ScriptedChatModel(
        script=[
            [call("web_search", query="AZTP identity flows")],
            [call("send_email", to="boss@example.com", body="AZTP summary")],
            "Summary sent.",
        ]
    )
    guard = AztpMiddleware(flow="prod", agent_name="researcher", client=client)
    agent = create_agent(model, [web_search, send_email], middleware=[guard])

    show("run 1: both calls allowed", await agent.ainvoke({"messages": [("user", "research")]}))
    print(f"\n  agent      {identity_of(guard)}")
    for name, aztp_id in guard.tool_ids.items():
        print(f"  tool       {aztp_id}  ({name})")

    # An operator pulls send_email out of the flow; the agent keeps web_search.
    await client.revoke_flow_identity(
        guard.tool_ids["send_email"], guard.guard.flow_id, "exfil risk"
    )
    show("run 2: send_email revoked in the flow", agent.invoke({"messages": [("user", "again")]}))

    # Any other runner: secured tools (a LangGraph ToolNode, a prebuilt agent, tool.invoke).
    (search,) = secure_tools([web_search], agent="analyst", flow="prod", client=client)
    print("\n== secure_tools, direct call")
    print(f"  {search.invoke({'query': 'SPIFFE'})}   (tool {identity_of(search)})")

    print("\n== audit: tool-call decisions")
    for e in await client.audit(action="decision.tool_call"):
        d = e["data"]
        print(f"  {d['reason']:<22} {d['toolName']:<10} agent={e['subject']}")
    report = await client.verify_audit()
    print(
        f"\n  audit chain: {'intact' if report['ok'] else 'BROKEN'} ({report['entries']} entries)"
    )


if __name__ == "__main__":
    asyncio.run(main())
