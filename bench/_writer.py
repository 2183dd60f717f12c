"""A second enforcement point for ``bench/scale.py``: another process on the same store.

Reads one line per write from stdin (``attach`` or ``detach``), attaches or detaches an
"Allow *" policy to the given identity through its own :class:`Authority`, and answers
once the write committed by counting it in the shared 8-byte file DONE (``noop SECONDS``:
after that long, without writing). Usage: ``_writer.py DB ORG_ID USER_ID AZTP_ID DONE``.
"""

from __future__ import annotations

import mmap
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aztp_agents.authority import Authority, Principal
from aztp_agents.store import Store


def main() -> None:
    db, org_id, user_id, who, done_path = sys.argv[1:6]
    done_file = open(done_path, "r+b")  # noqa: SIM115 - mapped for the process's life
    done = mmap.mmap(done_file.fileno(), 8)
    authority = Authority(Store.open_sqlite(Path(db)), issuance_rate=None)
    p = Principal(org_id, user_id)
    code = authority.create_policy(
        p, "unrelated-elsewhere", {"Statement": [{"Effect": "Allow", "Action": "*"}]}
    )["code"]
    print("ready", flush=True)
    for count, line in enumerate(sys.stdin, start=1):
        command, *rest = line.split()
        if command == "noop":  # as long as a write takes, without one: the reference
            time.sleep(float(rest[0]))
        elif command == "attach":
            authority.attach_policy(p, who, code)
        else:
            authority.detach_policy(p, who, code)
        struct.pack_into("=Q", done, 0, count)  # done: the other side spins on this


if __name__ == "__main__":
    main()
