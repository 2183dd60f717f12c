"""Docs cannot rot: every ```python block of README.md and docs/*.md runs, and every
``examples/*.py`` runs.

Docs
    The ```python blocks of one file run in order, in one namespace (``__name__ ==
    "__main__"``), in a fresh Python process with a temporary ``AZTP_HOME`` and working
    directory. A ```output block right after a python block is that block's expected stdout:
    compared after masking what changes from run to run (ids, timestamps, tokens, keys, the
    host name, temporary paths) with doctest's ``...`` wildcard and whitespace normalization.
    A ```console block is a shell session run at its place in the same order and home: each
    ``$ command`` must exit 0 and the lines under the commands are their expected output.
    A block whose first line is ``# doc: no-run - why`` is skipped (only for code that needs a
    real LLM, the network, or a service the test cannot start); it must still compile.
    A file that reads ``os.environ["AZTP_URL"]`` gets a real ``aztp-agents`` server process
    with two organizations: ``AZTP_URL``, ``AZTP_API_KEY`` / ``ACME_API_KEY`` (organization
    ``acme``, trust domain ``acme.example``) and ``GLOBEX_API_KEY`` (``globex``,
    ``globex.example``). A file that reads ``os.environ["AZTP_DATABASE_URL"]`` gets an empty
    PostgreSQL database ``aztp`` on a throwaway cluster (tests/support/postgres.py) in
    ``AZTP_DATABASE_URL``, and ``AZTP_MASTER_KEY``. Relative links must resolve.

Examples
    Every ``examples/*.py`` runs as a subprocess (120 s each, temporary ``AZTP_HOME``) and must
    exit 0 and print its key lines (:data:`EXAMPLE_LINES`).

Maintenance: ``python tests/docs/test_docs.py FILE.md`` prints what each block prints;
``python tests/docs/test_docs.py --update FILE.md`` rewrites the file's ```output blocks and console
sessions with the real output of a fresh run (then put back any ``...`` you want kept).
"""

from __future__ import annotations

import contextlib
import doctest
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
NO_RUN = "# doc: no-run"
MARK = "@@aztp-doc-block {}@@"
CMD_MARK = MARK.format("cmd") + "\n"
DOC_TIMEOUT = 600
EXAMPLE_TIMEOUT = 120

QUIET_ENV = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "PYTHONUNBUFFERED": "1",
    "PYTHONWARNINGS": "ignore",
    "COLUMNS": "200",
}

#: Lines each example must print (substrings, in this order). Examples not listed must exit 0.
EXAMPLE_LINES: dict[str, list[str]] = {
    "multi_tenant_host.py": [
        "red revokes its planner",
        "red   planner    whoami: DENIED, lookup: DENIED",
        "green planner    whoami: itself, lookup: ok",
        "red   audit: 12 decisions, all of red: True, chain intact: True",
        "red trusts green only:    False",
        "both trust each other:    True",
        "green withdraws its trust: False",
        "blue's old key: refused",
        "done",
    ],
    "issue_identity.py": [
        "AZTP ID: aztp://",
        "SPIFFE ID: spiffe://",
        "X.509-SVID verifies against the trust bundle: True",
    ],
    "identity_lifecycle.py": [
        "Agent verification: PASSED",
        "ID verification: PASSED",
        "Flow context verification: PASSED",
        "after revoke: valid=False",
        "after reissue: valid=True",
        "Discovered",
        "Cross-domain communication authorized",
        "Cross-domain communication denied",
    ],
    "identity_flows.py": [
        "Created 3 flows",
        "Service 1 in flow: VERIFIED",
        "Verification after removal: NOT IN FLOW",
        "Flow context verification: REVOKED",
        "Global verification: STILL VALID GLOBALLY",
        "Identity already revoked for this flow",
        "after reinstate: VERIFIED",
    ],
    "flow_patterns.py": [
        "ai-platform-production",
        "cicd-build-stage",
        "pipeline_stage",
        "microservices-data-services",
        "Cross-tier link: web-ui -> user-service",
        "web-ui -> user-db: denied (no link)",
    ],
    "flow_health.py": ["healthy", "warning", "critical", "Overall Status: critical"],
    "policies.py": [
        "tool:search allowed: True",
        "tool:delete allowed: False",
        "official client would say: True",
        "policy_denied",
    ],
    "jwt_svid.py": [
        "valid JWT-SVID for spiffe://",
        "rejected: wrong_audience",
        "rejected: bad_signature",
        "rejected: expired",
    ],
    "secured_decorator.py": ["allowed", "agent_revoked_in_flow", "Audit chain intact: True"],
    "tool_call_decisions.py": [
        "ALLOWED allowed",
        "agent_unknown",
        "agent_not_in_flow",
        "tool_unknown",
        "tool_not_in_flow",
        "no_link",
        "policy_denied",
        "tool_revoked_in_flow",
        "tool_revoked",
        "agent_revoked_in_flow",
        "agent_revoked",
        "authority_unavailable",
        "chain intact: True",
    ],
    "multi_tenant.py": [
        "tenant-a Security Summary",
        "Compliance Score: 100.0%",
        "tenant-c Security Summary",
        "Compliance Score: 66.7%",
        "tenant-b cannot see tenant-a's flow",
        "tenant-b verifies tenant-a's ai-engine: False",
        "agent_unknown",
    ],
    "remote_server.py": [
        "serving on http://127.0.0.1:",
        "private key sent to the server: no",
        "official aztp-client",
        "audit chain: intact",
    ],
    "crewai_secured_crew.py": ["allowed", "agent_revoked_in_flow", "Audit chain intact: True"],
    "langchain_middleware.py": ["audit chain: intact"],
}


# ============================================================================ parsing


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the first code line
    lang: str
    code: str
    expected: str | None = None  # the ```output block that follows, if any
    expected_span: tuple[int, int] | None = None  # its (first, last) content lines, 0-based
    commands: list[str] | None = None  # console blocks: the "$ " command lines

    @property
    def no_run(self) -> bool:
        first = self.code.lstrip().splitlines()[0] if self.code.strip() else ""
        return first.startswith(NO_RUN)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")


def _console_parts(body: str) -> tuple[list[str], list[str]]:
    """A console session: ``$ command`` lines (a trailing backslash continues one) and the
    output lines the commands print."""
    commands: list[str] = []
    output: list[str] = []
    continued = False
    for line in body.splitlines():
        if continued:
            commands[-1] += "\n" + line
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            commands.append(line[2:])
            continued = line.endswith("\\")
        else:
            output.append(line)
    return commands, output


def extract_blocks(path: Path, text: str | None = None) -> list[Block]:
    """The runnable blocks of a Markdown file: ```python blocks (with the ```output block that
    follows one, only blank lines between, as its expected output) and ```console sessions."""
    lines = (path.read_text() if text is None else text).splitlines()
    raw: list[tuple[str, int, int, int]] = []  # (lang, fence line, first, last) 0-based
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m["fence"]
        lang = (m["info"].strip().split() or [""])[0].lower()
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if (
                close
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not close["info"].strip()
            ):
                break
            j += 1
        raw.append((lang, i, i + 1, j - 1))
        i = j + 1
    blocks: list[Block] = []
    prev: tuple[str, int] | None = None  # (lang, last content line) of the previous block
    for lang, fence_line, first, last in raw:
        body = textwrap.dedent("\n".join(lines[first : last + 1]))
        if lang in ("python", "py", "python3"):
            blocks.append(Block(path, first + 1, "python", body))
            lang = "python"
        elif lang == "console":
            commands, output = _console_parts(body)
            blocks.append(
                Block(
                    path, first + 1, "console", body, expected="\n".join(output), commands=commands
                )
            )
        elif (
            lang == "output"
            and prev is not None
            and prev[0] == "python"
            and blocks[-1].expected is None
            and all(not lines[k].strip() for k in range(prev[1] + 2, fence_line))
        ):
            blocks[-1].expected = body
            blocks[-1].expected_span = (first, last)
        prev = (lang, last)
    return blocks


# ============================================================================ running

_RUNNER = r"""
import json, subprocess, sys, traceback
blocks = json.load(open(sys.argv[1]))
mark = sys.argv[2]
ns = {"__name__": "__main__", "__file__": sys.argv[1]}
for i, b in enumerate(blocks):
    print(mark.format(i), flush=True)
    where = f"{b['file']}:{b['line']}"
    if b["commands"] is not None:
        for cmd in b["commands"]:
            print(mark.format("cmd"), flush=True)
            r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            sys.stdout.write(r.stdout)
            sys.stdout.flush()
            if r.returncode:
                print(f"doc block at {where}: '{cmd}' exited with {r.returncode}:\n{r.stdout}", file=sys.stderr)
                sys.exit(3)
        continue
    try:
        code = compile("\n" * (b["line"] - 1) + b["code"], b["file"], "exec")
        exec(code, ns)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            print(f"doc block at {where} exited with {exc.code!r}", file=sys.stderr)
            sys.exit(3)
    except BaseException:
        sys.stdout.flush()
        print(f"doc block at {where} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(3)
    sys.stdout.flush()
    sys.stderr.flush()
"""


def doc_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZTP_")}
    env.update(QUIET_ENV)
    env["AZTP_HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # aztp-agents
    env.update(extra or {})
    return env


def needs_server(path: Path) -> bool:
    return 'os.environ["AZTP_URL"]' in path.read_text()


def needs_database(path: Path) -> bool:
    return 'os.environ["AZTP_DATABASE_URL"]' in path.read_text()


@contextlib.contextmanager
def doc_services(path: Path, workdir: Path) -> Iterator[dict[str, str] | None]:
    """The services a doc file needs (a server, a database), as its extra environment."""
    with contextlib.ExitStack() as stack:
        extra: dict[str, str] = {}
        if needs_server(path):
            extra.update(stack.enter_context(doc_server(workdir)))
        if needs_database(path):
            extra.update(stack.enter_context(doc_database()))
        yield extra or None


@contextlib.contextmanager
def doc_database() -> Iterator[dict[str, str]]:
    """An empty PostgreSQL database named ``aztp`` on a throwaway cluster, and a master key."""
    import base64

    from tests.support.postgres import running_cluster

    with running_cluster() as cluster:
        url = cluster.database("aztp").replace("postgresql+psycopg://", "postgresql://")
        yield {
            "AZTP_DATABASE_URL": url,
            "AZTP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        }


@contextlib.contextmanager
def doc_server(workdir: Path) -> Iterator[dict[str, str]]:
    """A real server process with organizations acme and globex; yields the env for the docs."""
    from aztp_agents.server.testing import live_server, make_org

    home = workdir / "server-home"
    home.mkdir()
    _, acme = make_org(home, "acme", "acme.example")
    _, globex = make_org(home, "globex", "globex.example")
    with live_server(home) as server:
        yield {
            "AZTP_URL": server.url,
            "AZTP_API_KEY": acme,
            "ACME_API_KEY": acme,
            "GLOBEX_API_KEY": globex,
        }


def run_blocks(
    blocks: list[Block], workdir: Path, env_extra: dict[str, str] | None = None
) -> tuple[int, list[str], str]:
    """Run blocks in one process; returns (exit code, stdout per block, stderr)."""
    spec = workdir / "blocks.json"
    spec.write_text(
        json.dumps(
            [
                {
                    "file": str(b.path.relative_to(ROOT)),
                    "line": b.line,
                    "code": b.code,
                    "commands": b.commands,
                }
                for b in blocks
            ]
        )
    )
    home = workdir / "aztp-home"
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(spec), MARK],
        cwd=workdir,
        env=doc_env(home, env_extra),
        capture_output=True,
        text=True,
        timeout=DOC_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    outputs: list[str] = []
    current: list[str] | None = None
    for line in proc.stdout.splitlines(keepends=True):
        if line != CMD_MARK and re.fullmatch(
            re.escape(MARK).replace(r"\{\}", r"\d+") + r"\n?", line
        ):
            current = []
            outputs.append("")
            continue
        if current is not None:
            outputs[-1] += line
    return proc.returncode, outputs, proc.stderr


# ============================================================================ output matching

_HOST = socket.gethostname()
_MASKS = [
    (re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+"), "<jwt>"),
    (re.compile(r"-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----(\\n)?"), "<pem>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12,}\b"), "<hex>"),
    (re.compile(r"\b[0-9a-f]{24}\b"), "<hex>"),
    (re.compile(r"aztp_[\w-]{20,}"), "<api-key>"),
    (
        re.compile(r"aztp_[\w-]{1,8}(?=\.\.\.)"),
        "<api-key>",
    ),  # the official client prints a key's start
    (re.compile(r"(?<![\w/+-])[\w-]{27,}(?![\w/+-])"), "<b64>"),
    (re.compile(r"\b1\d{9}(\d{3})?\b"), "<epoch>"),
    (re.compile(r"/tmp/[\w./-]+"), "<tmp>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
]


def mask(text: str) -> str:
    text = text.replace(f"hostname:{_HOST}", "hostname:<host>").replace(
        f"'hostname': '{_HOST}'", "'hostname': '<host>'"
    )
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def output_matches(expected: str, actual: str) -> bool:
    want, got = mask(expected).strip() + "\n", mask(actual).strip() + "\n"
    checker = doctest.OutputChecker()
    return checker.check_output(want, got, doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)


# ============================================================================ tests


def _doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize(
    "path", [p for p in DOC_FILES if any(not b.no_run for b in extract_blocks(p))], ids=_doc_id
)
def test_doc_code_blocks_run(path: Path, tmp_path: Path) -> None:
    blocks = [b for b in extract_blocks(path) if not b.no_run]
    with contextlib.ExitStack() as stack:
        extra = stack.enter_context(doc_services(path, tmp_path))
        code, outputs, stderr = run_blocks(blocks, tmp_path, extra)
    assert code == 0, f"{_doc_id(path)}: a code block failed\n{stderr[-6000:]}"
    assert len(outputs) == len(blocks), (
        f"{_doc_id(path)}: ran {len(outputs)} of {len(blocks)} blocks\n{stderr[-3000:]}"
    )
    for block, out in zip(blocks, outputs, strict=True):
        out = out.replace(CMD_MARK, "")
        if block.expected is not None:
            assert output_matches(block.expected, out), (
                f"{block.where}: output differs from the ```output block after it\n"
                f"--- documented (masked)\n{mask(block.expected)}\n--- actual (masked)\n{mask(out)}"
            )


#: The pages a new user runs first, and runs again: on the same home (``~/.aztp`` by default)
#: the second run must succeed and print what the page documents, as the first did.
RERUN_FILES = [ROOT / "README.md", ROOT / "docs" / "index.md"]


@pytest.mark.parametrize("path", RERUN_FILES, ids=_doc_id)
def test_quick_starts_run_twice_on_the_same_home(path: Path, tmp_path: Path) -> None:
    blocks = [b for b in extract_blocks(path) if not b.no_run]
    for n in (1, 2):  # the same workdir, so the same AZTP_HOME
        code, outputs, stderr = run_blocks(blocks, tmp_path)
        assert code == 0, f"{_doc_id(path)}: run {n} failed\n{stderr[-6000:]}"
        assert len(outputs) == len(blocks), f"{_doc_id(path)}: run {n}\n{stderr[-3000:]}"
        for block, out in zip(blocks, outputs, strict=True):
            out = out.replace(CMD_MARK, "")
            if block.expected is not None:
                assert output_matches(block.expected, out), (
                    f"{block.where}: run {n} printed something else\n"
                    f"--- documented (masked)\n{mask(block.expected)}\n"
                    f"--- actual (masked)\n{mask(out)}"
                )


def test_no_run_marker_is_rare() -> None:
    """``# doc: no-run`` is for code that needs a real LLM, the network or a service: at most a
    few blocks in all the docs, and each says why on its marker line."""
    skipped = [b for p in DOC_FILES for b in extract_blocks(p) if b.no_run]
    assert len(skipped) <= 6, [b.where for b in skipped]
    for b in skipped:
        reason = b.code.lstrip().splitlines()[0][len(NO_RUN) :].strip(" -:—")
        assert reason, (
            f"{b.where}: say why the block cannot run: '# doc: no-run - needs a real LLM'"
        )


def test_every_python_block_compiles() -> None:
    """Even a ``# doc: no-run`` block must be valid Python (``...`` only where Python allows it)."""
    problems = []
    for path in DOC_FILES:
        for b in extract_blocks(path):
            if b.lang != "python":
                continue
            try:
                compile(b.code, b.where, "exec")
            except SyntaxError as exc:
                problems.append(f"{b.where}: {exc.msg} (block line {exc.lineno})")
    assert not problems, "\n".join(problems)


_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)#\s]+)(#[^)\s]*)?\)")


def test_relative_links_resolve() -> None:
    broken = [
        f"{_doc_id(path)}: {m[1]}"
        for path in DOC_FILES
        for m in _LINK.finditer(path.read_text())
        if not (path.parent / m[1]).exists()
    ]
    assert not broken, broken


def test_docs_have_code_and_output_blocks() -> None:
    owned = ["index.md", "concepts.md", "server.md", "security.md", "migrating.md"]
    for name in owned:
        blocks = extract_blocks(ROOT / "docs" / name)
        assert any(not b.no_run for b in blocks), f"docs/{name} has no runnable python block"
    concepts = extract_blocks(ROOT / "docs" / "concepts.md")
    assert sum(b.expected is not None for b in concepts) >= 8, (
        "concepts.md shows real output for its examples"
    )


def test_extract_blocks_and_masking() -> None:
    text = textwrap.dedent(
        """\
        # t
        ```python
        print("a")
        ```

        ```output
        a
        ```
        ```bash
        echo no
        ```
        ```output
        not attached: a bash block is not python
        ```
        ````python
        # doc: no-run - needs a real LLM
        x = 1
        ````
        ```console
        $ echo one \\
          two
        one two
        $ true
        ```
        """
    )
    blocks = extract_blocks(ROOT / "README.md", text)
    assert [(b.line, b.expected, b.no_run) for b in blocks[:2]] == [
        (3, "a", False),
        (16, None, True),
    ]
    assert blocks[2].commands == ["echo one \\\n  two", "true"] and blocks[2].expected == "one two"
    assert output_matches(
        "flow 0123456789abcdef01234567 at 2025-09-10T03:36:05.794Z",
        "flow aaaaaaaaaaaa111111111111 at 2026-01-01T00:00:00.000Z",
    )
    assert output_matches("x ... z", "x y z")
    assert not output_matches("allowed", "denied")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=doc_env(tmp_path / "aztp-home"),
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"{example.name} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    assert "Traceback" not in proc.stdout
    pos = 0
    for line in EXAMPLE_LINES.get(example.name, []):
        found = proc.stdout.find(line, pos)
        assert found >= 0, (
            f"{example.name}: expected {line!r} (in order) in its output:\n{proc.stdout}"
        )
        pos = found + len(line)


def test_every_example_has_key_lines() -> None:
    missing = [p.name for p in EXAMPLES if p.name not in EXAMPLE_LINES]
    assert not missing, f"add the key output lines of {missing} to EXAMPLE_LINES"


# ============================================================================ maintenance CLI


def _main(argv: list[str]) -> int:
    update = "--update" in argv
    files = [Path(a).resolve() for a in argv if a != "--update"]
    for path in files:
        blocks = [b for b in extract_blocks(path) if not b.no_run]
        with (
            tempfile.TemporaryDirectory(prefix="aztp-docs-") as tmp,
            contextlib.ExitStack() as stack,
        ):
            extra = stack.enter_context(doc_services(path, Path(tmp)))
            code, outputs, stderr = run_blocks(blocks, Path(tmp), extra)
        if code != 0:
            print(stderr, file=sys.stderr)
            return code
        if not update:
            for b, out in zip(blocks, outputs, strict=True):
                ok = (
                    ""
                    if b.expected is None
                    else " (matches)"
                    if output_matches(b.expected, out.replace(CMD_MARK, ""))
                    else " (DIFFERS)"
                )
                print(f"--- {b.where}{ok}\n{out.replace(CMD_MARK, '')}", end="")
            continue
        lines = path.read_text().splitlines()
        for b, out in sorted(zip(blocks, outputs, strict=True), key=lambda x: -x[0].line):
            if b.commands is not None:
                parts = out.split(CMD_MARK)[1:]
                body = [
                    line
                    for cmd, part in zip(b.commands, parts, strict=True)
                    for line in [f"$ {cmd}", *part.rstrip("\n").splitlines()]
                ]
                lines[b.line - 1 : b.line - 1 + len(b.code.splitlines())] = body
            elif b.expected_span is not None:
                first, last = b.expected_span
                lines[first : last + 1] = out.rstrip("\n").splitlines()
        path.write_text("\n".join(lines) + "\n")
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
