"""A process making guarded tool calls against a server, for the console's browser test.

``python -m tests.support.console_agent URL`` (the API key in ``$AZTP_API_KEY``) enrolls
agent ``analyst`` with tools ``lookup`` and ``search`` in flow ``ops`` through a remote guard
(decisions are taken here, from the replica the change feed keeps current, and audited at
the server), prints ``{"agent", "tools", "flow"}`` as one JSON line, then answers commands
on stdin, one JSON line each:

* ``call TOOL`` -> ``{"allowed", "reason", "bodies"}``: one guarded call; the tool's body
  runs only when allowed, and ``bodies`` counts the bodies run so far;
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


def main(url: str) -> None:
    from aztp_agents import Aztp
    from aztp_agents.guard import Guard
    from aztp_agents.remote import RemoteBackend

    backend = RemoteBackend(url, api_key=os.environ["AZTP_API_KEY"], audit_interval=0.05)
    guard = Guard("ops", client=Aztp(backend=backend))
    enrolled = guard.enroll("analyst", ["lookup", "search"])
    backend.start(wait=5.0)
    bodies = 0

    def lookup() -> str:  # the tool body: it must never run for a denied call
        nonlocal bodies
        bodies += 1
        return "42"

    out: dict[str, object] = {
        "agent": enrolled.agent_id,
        "tools": dict(enrolled.tools),
        "flow": guard.flow_id,
    }
    print(json.dumps(out), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "call":
            tool = enrolled.tools.get(arg, f"aztp://acme.test/workload/production/node/{arg}")
            decision = guard.check(enrolled.agent_id, tool, arg)
            if decision.allowed:
                lookup()
            out = {"allowed": decision.allowed, "reason": decision.reason.value, "bodies": bodies}
        elif command == "mark":
            out = {"revision": backend.feed_revision}
        elif command == "await":
            deadline = time.monotonic() + 5.0
            while backend.feed_revision <= int(arg) and time.monotonic() < deadline:
                time.sleep(0.005)
            out = {"revision": backend.feed_revision}
        elif command == "quit":
            guard.client.close()
            out = {"bye": True}
        else:
            out = {"error": f"unknown command {command!r}"}
        print(json.dumps(out), flush=True)
        if command == "quit":
            return


if __name__ == "__main__":
    main(sys.argv[1])
