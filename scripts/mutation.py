"""`make mutation`: mutmut over the rule modules, with the tests that exercise them.

Which modules and which tests is mutmut's own configuration, `[tool.mutmut]` in pyproject.toml
(`only_mutate`, `pytest_add_cli_args_test_selection`); mutmut learns which of those tests reach
each function and runs only those against its mutants. This script runs mutmut, then prints a
line per module (mutants, killed, survived, no test reached it, timed out) and the survivors,
each with `mutmut show NAME` to read. docs/testing.md keeps the table and why each survivor that
is left cannot change behaviour.

    make mutation                              every rule module (long: read the estimate first)
    make mutation ARGS='webapp.permissions.*'  the mutants of one module (mutmut's name globs)
    make mutation ARGS=--report                the table of the last run, without running
"""
from __future__ import annotations

import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = [sys.executable, "-m", "mutmut"]
COLUMNS = ("killed", "survived", "no tests", "timeout")


def rule_modules() -> list[str]:
    """The dotted names of the modules mutmut mutates, from its configuration."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return [path.removesuffix(".py").replace("/", ".") for path in config["only_mutate"]]


def results() -> dict[str, Counter]:
    """Each module's mutants by status, from `mutmut results --all true` ("name: status" lines)."""
    listing = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
    by_module: dict[str, Counter] = defaultdict(Counter)
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            by_module[name.rsplit(".", 1)[0]][status] += 1
    return by_module


def survivors() -> list[str]:
    listing = subprocess.run([*MUTMUT, "results"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return [line.strip().rpartition(": ")[0] for line in listing.splitlines() if line.strip().endswith(": survived")]


def report() -> int:
    counts = results()
    print(f"{'module':34} {'mutants':>8} " + " ".join(f"{column:>9}" for column in COLUMNS)
          + f" {'unchecked':>9}   killed")
    below = []
    for module in rule_modules():
        found = counts.get(module, Counter())
        # a mutant no test reaches is as alive as one that survives them; one that hangs is caught
        judged = sum(found[column] for column in COLUMNS)
        caught = found["killed"] + found["timeout"]
        share = f"{100 * caught / judged:5.1f} %" if judged else "    —"
        print(f"{module:34} {sum(found.values()):>8} " + " ".join(f"{found[c]:>9}" for c in COLUMNS)
              + f" {found['not checked']:>9}   {share}")
        if judged and caught / judged < 0.9:
            below.append(module)
    left = survivors()
    if left:
        print(f"\n{len(left)} surviving mutants (read one with: .venv/bin/mutmut show NAME):")
        print("\n".join(f"  {name}" for name in left))
    if below:
        print(f"\nBelow the 90 % target: {', '.join(below)}.")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] != ["--report"]:
        # mutmut's own exit status says nothing about survivors; the report does
        subprocess.run([*MUTMUT, "run", *argv], cwd=ROOT, check=False)
    return report()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
