"""``make demo`` on a fresh clone, end to end: a new .venv, the install, the whole story.

Slow (it builds an environment); CI runs it. It clones the committed HEAD, so it checks what
lands, not the working tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_demo_on_a_fresh_clone(tmp_path: Path) -> None:
    if shutil.which("make") is None or shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs make, git and a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "AZTP_"))
    }
    env["AZTP_HOME"] = str(
        tmp_path / "home"
    )  # the demo makes its own home; nothing lands in ~/.aztp
    done = subprocess.run(
        ["make", "demo"], cwd=clone, env=env, capture_output=True, text=True, timeout=840
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert (clone / ".venv" / "bin" / "python").exists()
    story = [
        "1. Identities and identity flows",
        "verified in flow ✓ ✓",
        "revoked analytics-service in this flow only: in flow ✗, globally ✓",
        "2. A secured CrewAI crew in flow 'prod'",
        "ALLOWED Researcher → web_search",
        "ALLOWED Researcher → read_file",
        "operator revokes Researcher in flow 'prod'",
        "ALLOWED Writer     → write_report",
        "DENIED  Researcher → web_search   agent_revoked_in_flow",
        "tool bodies run: {'web_search': 1, 'read_file': 1, 'write_report': 1}",
        "3. Audit trail",
        "hash chain verified: ✓",
        "no allow on a revision at or after a revocation: ✓",
    ]
    position = 0
    for line in story:
        found = out.find(line, position)
        assert found >= 0, f"missing, or out of order: {line!r}\n{out[-4000:]}"
        position = found + len(line)
    assert "Traceback" not in out
