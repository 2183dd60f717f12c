"""A second enforcement point for ``bench/scale.py``: another process on the same store.

Reads one line per write from stdin (``attach`` or ``detach``), attaches or detaches an
"Allow *" policy to the given identity through its own :class:`Authority`, and answers
``ok`` once the write committed (``noop SECONDS``: answers after that long, without
writing: what waiting as long as a write costs the other side alone). Usage: ``_writer.py DB ORG_ID USER_ID AZTP_ID``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aztp_agents.authority import Authority, Principal
from aztp_agents.store import Store


def main() -> None:
    db, org_id, user_id, who = sys.argv[1:5]
    authority = Authority(Store.open_sqlite(Path(db)), issuance_rate=None)
    p = Principal(org_id, user_id)
    code = authority.create_policy(
        p, "unrelated-elsewhere", {"Statement": [{"Effect": "Allow", "Action": "*"}]}
    )["code"]
    print("ready", flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "noop":  # as long as a write takes, without one: the reference
            time.sleep(float(rest[0]))
        elif command == "attach":
            authority.attach_policy(p, who, code)
        else:
            authority.detach_policy(p, who, code)
        print("ok", flush=True)


if __name__ == "__main__":
    main()
