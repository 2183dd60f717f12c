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
