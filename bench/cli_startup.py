"""CLI start-up: ``aztp-agents --help`` and one embedded-store command against bare Python.

Each command runs as a fresh subprocess (as an operator runs it), ``--runs`` times, the
commands interleaved round by round so a noisy machine moves all of them alike; the figure
is the median wall time and the median CPU time (user + system of the child). Baselines:
``python -c pass`` (the interpreter alone), ``python -c 'import sqlalchemy'`` (what the CLI
used to pay before it ran anything), and ``import what 'identity list' needs`` (the client
facade, typer and rich's table: the floor of a store command, its own work excluded).

Run: ``.venv/bin/python bench/cli_startup.py [--runs N]``.
Target: ``aztp-agents --help`` <= 25x ``python -c pass`` (wall). Exits 1 below target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 25.0

# The `aztp-agents` console script is `sys.exit(main())`: the same thing, run on this checkout.
CLI = "import sys; from aztp_agents.cli import main; sys.exit(main())"


def _commands(home: str) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import sqlalchemy'": [py, "-c", "import sqlalchemy"],
        "aztp-agents --help": [py, "-c", CLI, "--help"],
        "import what 'identity list' needs": [
            py,
            "-c",
            "import typer, rich.table, aztp_agents.client",
        ],
        "aztp-agents identity list (embedded store)": [
            py,
            "-c",
            CLI,
            "--home",
            home,
            "identity",
            "list",
        ],
    }


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZTP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "adapters")])
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def _once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv`` (which must succeed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}): {err}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = _env()
    with tempfile.TemporaryDirectory() as home:
        commands = _commands(home)
        # One identity in the store, and every command once unmeasured (bytecode, page cache).
        subprocess.run(
            [sys.executable, "-c", CLI, "--home", home, "identity", "issue", "bench-agent"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for argv in commands.values():
            _once(argv, env)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                wall, cpu = _once(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
    wall = {name: statistics.median(v) for name, v in walls.items()}
    cpu = {name: statistics.median(v) for name, v in cpus.items()}
    bare = wall["python -c pass"]
    print(f"median of {args.runs} runs each (fresh subprocesses, interleaved)\n")
    print(f"{'command':45} {'wall':>9} {'cpu':>9} {'÷ pass':>8}")
    for name in commands:
        print(
            f"{name:45} {wall[name] * 1e3:7.1f}ms {cpu[name] * 1e3:7.1f}ms "
            f"{wall[name] / bare:7.1f}x"
        )
    ratio = wall["aztp-agents --help"] / bare
    store = wall["aztp-agents identity list (embedded store)"]
    floor = wall["import what 'identity list' needs"]
    print(
        f"\naztp-agents --help = {ratio:.1f}x python -c pass "
        f"(target <= {TARGET:.0f}x): {'MET' if ratio <= TARGET else 'NOT MET'}"
    )
    sqla = wall["python -c 'import sqlalchemy'"]
    print(
        f"aztp-agents --help = {wall['aztp-agents --help'] / sqla:.2f}x python -c 'import sqlalchemy'"
    )
    print(
        f"identity list = {store / floor:.2f}x importing what it needs "
        f"(+{(store - floor) * 1e3:.0f} ms: opening the store, the query, the table)"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
