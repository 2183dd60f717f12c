"""The help text: printed once, markup-free, no metavar on flags, exit codes documented."""

from __future__ import annotations

from tests.support.cli import Run


def test_bare_command_prints_its_help_once(run: Run) -> None:
    result = run(code=2, home=False)
    assert result.stdout.count("Usage:") == 1, result.stdout
    assert result.stdout.count("Commands:") == 1, result.stdout


def test_square_brackets_in_help_are_kept(run: Run) -> None:
    out = run("link", "--help", home=False).stdout
    assert "[a-z_]+" in out, out


def test_flags_show_no_metavar(run: Run) -> None:
    for argv in (["--help"], ["identity", "issue", "--help"], ["verify", "--help"]):
        out = run(*argv, home=False).stdout
        assert "<bool>" not in out, out
        assert "--json " in out or "--json\n" in out


def test_verify_documents_every_exit_code_it_can_answer(run: Run, crew: dict[str, str]) -> None:
    from aztp_agents.cli._errors import (
        EXIT_DENIED,
        EXIT_NEGATIVE,
        EXIT_NOT_FOUND,
        EXIT_OK,
        EXIT_UNAVAILABLE,
        EXIT_USAGE,
    )

    text = " ".join(run("verify", "--help", home=False).stdout.split())
    for code, meaning in (
        (EXIT_OK, "valid"),
        (EXIT_NEGATIVE, "invalid"),
        (EXIT_USAGE, "bad usage"),
        (EXIT_NOT_FOUND, "not found"),
        (EXIT_DENIED, "authentication or permission refused"),
        (EXIT_UNAVAILABLE, "the authority is unavailable"),
    ):
        assert f"{code} {meaning}" in text, (code, meaning, text)
    # ...and it does answer the ones besides 0 and 1.
    run("verify", crew["agent"])
    run("identity", "revoke", "researcher")
    run("verify", "researcher", code=EXIT_NEGATIVE)
    run.fails("verify", "nobody-here", code=EXIT_NOT_FOUND)
    run.fails("verify", "aztp://x", code=EXIT_USAGE)
