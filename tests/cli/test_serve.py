"""``aztp-agents serve`` and ``python -m aztp_agents.server``: one launcher, with the same
options, the same default port (8700) and the same errors."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aztp_agents.cli import app
from aztp_agents.server.__main__ import main as server_main
from tests.support.cli import Run


def test_serve_calls_the_server(run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("aztp_agents.server")
    fake.run = lambda *args: calls.append(args)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aztp_agents.server", fake)
    result = run("serve", "--port", "8711")
    assert calls == [(run.home, "127.0.0.1", 8711, None, None)]
    assert "http://127.0.0.1:8711" in result.stderr

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    run("serve", "--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key))
    assert calls[-1] == (run.home, "0.0.0.0", 8700, str(cert), str(key))

    run.fails("serve", "--tls-cert", str(cert), code=2, contains="both")
    run.fails(
        "serve",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(tmp_path / "none.pem"),
        code=2,
        contains="no such file",
    )
    run.fails("serve", "--port", "70000", code=2)
    run.fails("serve", "--port", "http", code=2)


def test_serve_without_the_server_extra(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aztp_agents.server", None)
    run.fails("serve", code=2, contains="aztp-agents[server]")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Replace ``aztp_agents.server.run`` by a recorder of its calls."""
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    fake = types.ModuleType("aztp_agents.server")
    fake.run = lambda *args, **kwargs: seen.append((args, kwargs))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aztp_agents.server", fake)
    for var in ("AZTP_HOME", "AZTP_URL", "AZTP_API_KEY", "AZTP_METRICS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return seen


SERVER_OPTIONS = [
    "--host",
    "0.0.0.0",
    "--port",
    "8123",
    "--prefix",
    "/astha/v1",
    "--trust-domain",
    "acme.example",
    "--log-level",
    "warning",
    "--access-log",
]
SERVER_KWARGS = {
    "prefix": "/astha/v1",
    "trust_domain": "acme.example",
    "log_level": "warning",
    "access_log": True,
}


def test_module_launcher_takes_every_option(calls: list[Any], tmp_path: Path) -> None:
    assert server_main(["--home", str(tmp_path), *SERVER_OPTIONS]) == 0
    assert calls == [((tmp_path, "0.0.0.0", 8123, None, None), SERVER_KWARGS)]


def test_serve_takes_the_same_options(calls: list[Any], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--home", str(tmp_path), *SERVER_OPTIONS])
    assert result.exit_code == 0, result.stderr
    assert calls == [((tmp_path, "0.0.0.0", 8123, None, None), SERVER_KWARGS)]


def test_metrics_token_from_a_file_or_the_environment(
    calls: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("file-token-0123456789abcdef\n")
    monkeypatch.setenv("AZTP_METRICS_TOKEN", "env-token-0123456789abcdef")
    assert server_main(["--home", str(tmp_path), "--metrics-token-file", str(token)]) == 0
    assert calls[-1][1] == {"metrics_token": "file-token-0123456789abcdef"}  # the file wins
    assert server_main(["--home", str(tmp_path)]) == 0
    assert calls[-1][1] == {"metrics_token": "env-token-0123456789abcdef"}
    monkeypatch.setenv("AZTP_METRICS_TOKEN", "short")
    assert server_main(["--home", str(tmp_path)]) == 2
    monkeypatch.delenv("AZTP_METRICS_TOKEN")
    assert server_main(["--home", str(tmp_path), "--metrics-token-file", str(tmp_path / "no")]) == 2
    assert len(calls) == 2  # refused before the server started


def test_one_default_port(calls: list[Any], tmp_path: Path) -> None:
    assert server_main(["--home", str(tmp_path)]) == 0
    assert calls == [((tmp_path, "127.0.0.1", 8700, None, None), {})]


def test_module_launcher_ignores_aztp_url(
    calls: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZTP_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AZTP_HOME", str(tmp_path))
    assert server_main([]) == 0
    assert calls[0][0][0] == tmp_path


def test_module_launcher_errors_are_one_line(
    calls: list[Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server_main(["--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert server_main(["--log-level", "loud"]) == 2
    assert server_main(["--bogus"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), lines
    assert "python -m aztp_agents.server --help" in lines[2]
    assert calls == []


def test_module_launcher_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aztp_agents.server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "python -m aztp_agents.server [OPTIONS]" in result.stdout
    for option in ("--home", "--port", "--prefix", "--trust-domain", "--log-level", "--access-log"):
        assert option in result.stdout
