"""An embedded agent in a process of its own, for tests that break its store under it.

``python -m tests.support.looping_agent HOME`` opens the embedded authority at ``HOME``,
enrolls agent ``looper`` with tool ``lookup`` in flow ``prod``, prints one JSON line
``{"agent": ..., "tool": ...}`` and then keeps a background thread making guarded calls (as a
busy agent would: its decisions keep the audit writer committing). It answers commands on
stdin, one JSON line each on stdout:

* ``call``  -> ``{"allowed": bool, "reason": str, "detail": str, "bodies": int}`` for one more
  guarded call; ``bodies`` counts tool bodies run so far (the body runs only when allowed);
* ``stats`` -> ``{"bodies": int, "calls": int}``;
* ``quit``  -> flushes the audit queue, prints ``{"bye": true}`` and exits.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time


def main(home: str) -> None:
    from aztp_agents import Aztp
    from aztp_agents.guard import Guard

    client = Aztp(home=home, trust_domain="astha.ai")
    guard = Guard("prod", client)
    enrolled = guard.enroll("looper", ["lookup"])
    agent, tool = enrolled.agent_id, enrolled.tools["lookup"]
    counts = {"bodies": 0, "calls": 0}
    lock = threading.Lock()

    def guarded_call() -> object:
        decision = guard.check(agent, tool, "lookup")
        with lock:
            counts["calls"] += 1
            if decision.allowed:
                counts["bodies"] += 1  # the tool body
        return decision

    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            guarded_call()
            time.sleep(0.001)

    print(json.dumps({"agent": agent, "tool": tool}), flush=True)
    threading.Thread(target=loop, daemon=True).start()
    for line in sys.stdin:
        command = line.strip()
        if command == "call":
            d = guarded_call()
            out = {
                "allowed": d.allowed,  # type: ignore[attr-defined]
                "reason": d.reason.value,  # type: ignore[attr-defined]
                "detail": d.detail or "",  # type: ignore[attr-defined]
                "bodies": counts["bodies"],
            }
        elif command == "stats":
            with lock:
                out = dict(counts)
        elif command == "quit":
            stop.set()
            with contextlib.suppress(Exception):  # a broken store: nothing more to flush
                client.backend.authority.store.flush_audit(5)  # type: ignore[attr-defined]
            out = {"bye": True}
        else:
            out = {"error": f"unknown command {command!r}"}
        print(json.dumps(out), flush=True)
        if command == "quit":
            return


if __name__ == "__main__":
    main(sys.argv[1])
