"""The root command: help, global options before the command, ``--home`` from the environment."""

from __future__ import annotations

import json

from tests.support.cli import Run


def test_no_arguments_shows_help_and_help_works(run: Run) -> None:
    result = run(code=2, home=False)
    assert "identity" in result.stdout and "Usage" in result.stdout
    assert "flow" in run("--help", home=False).stdout
    assert "issue" in run("identity", "--help").stdout


def test_global_json_flag_before_the_command(run: Run) -> None:
    run("identity", "issue", "alpha")
    docs = json.loads(run("--json", "identity", "list").stdout)
    assert [d["name"] for d in docs] == ["alpha"]


def test_home_from_environment(run: Run) -> None:
    run("identity", "issue", "from-flag")
    result = run("--json", "identity", "list", home=False, env={"AZTP_HOME": str(run.home)})
    assert [d["name"] for d in json.loads(result.stdout)] == ["from-flag"]
