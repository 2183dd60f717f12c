"""A secured CrewAI crew in a process of its own, for the console's browser test.

``python -m tests.support.console_crew URL`` (the API key in ``$AZTP_API_KEY``) secures a
one-agent crew (role ``analyst``, tools ``lookup`` and ``search``) in flow ``ops`` with
:func:`aztp_crewai.secure_crew` over a remote client (decisions are taken here, on the
replica the change feed keeps current, and audited at the server). The agent's LLM is the
scripted, offline one. It prints ``{"agent", "tools", "flow"}`` as one JSON line, then
answers commands on stdin, one JSON line each:

* ``call TOOL`` -> ``{"allowed", "reason", "bodies"}``: one kickoff in which the agent calls
  TOOL once (CrewAI's tool-call hook asks the guard); ``bodies`` counts the tool bodies run
  so far (a body runs only when its call was allowed);
* ``mark`` -> ``{"revision"}``: the latest revision the change feed announced;
* ``await REV`` -> ``{"revision"}``: waits (at most 5 s) until the feed announced a revision
  after REV (what a revocation made elsewhere needs to reach this process);
* ``quit`` -> sends the queued audit records and exits.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

# before CrewAI is imported (in main): offline, no telemetry time-outs
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")

BODIES = {"count": 0}


def main(url: str) -> None:
    from aztp_crewai import guard_of, identity_of, secure_crew
    from aztp_crewai.testing import ScriptedCrewLLM, tool_call
    from crewai import Agent, Crew, Task
    from crewai.tools import tool

    from aztp_agents import Aztp
    from aztp_agents.decisions import Decision
    from aztp_agents.remote import RemoteBackend

    @tool("lookup")
    def lookup(query: str) -> str:
        """Look a fact up."""
        BODIES["count"] += 1  # the tool body: it must never run for a denied call
        return "42"

    @tool("search")
    def search(query: str) -> str:
        """Search the documents."""
        BODIES["count"] += 1
        return "3 documents"

    backend = RemoteBackend(url, api_key=os.environ["AZTP_API_KEY"], audit_interval=0.05)
    client = Aztp(backend=backend)
    decisions: list[Decision] = []

    def crew_calling(tool_name: str) -> Crew:
        analyst = Agent(
            role="analyst",
            goal="Answer questions",
            backstory="Careful.",
            tools=[lookup, search],
            llm=ScriptedCrewLLM([tool_call(tool_name, query="aztp"), "done"]),
        )
        task = Task(description="Answer", expected_output="an answer", agent=analyst)
        crew = secure_crew(Crew(agents=[analyst], tasks=[task]), flow="ops", client=client)
        guard = guard_of(crew)
        if decisions.append not in guard.listeners:
            guard.listeners.append(decisions.append)
        return crew

    crew = crew_calling("lookup")
    agent = crew.agents[0]
    tools = {t.name: identity_of(t) for t in agent.tools}
    out: dict[str, Any] = {
        "agent": identity_of(agent),
        "tools": tools,
        "flow": guard_of(crew).flow_id,
    }
    backend.start(wait=5.0)
    print(json.dumps(out), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "call":
            decisions.clear()
            crew_calling(arg).kickoff()
            mine = [d for d in decisions if d.tool_name == arg]
            last = mine[-1] if mine else None
            out = {
                "allowed": last.allowed if last else None,
                "reason": last.reason.value if last else "no decision",
                "bodies": BODIES["count"],
            }
        elif command == "mark":
            out = {"revision": backend.feed_revision}
        elif command == "await":
            deadline = time.monotonic() + 5.0
            while backend.feed_revision <= int(arg) and time.monotonic() < deadline:
                time.sleep(0.005)
            out = {"revision": backend.feed_revision}
        elif command == "quit":
            client.close()
            out = {"bye": True}
        else:
            out = {"error": f"unknown command {command!r}"}
        print(json.dumps(out), flush=True)
        if command == "quit":
            return


if __name__ == "__main__":
    main(sys.argv[1])
