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
    make mutation ARGS='--own-tests 3'         first, each unchecked mutant against its module's own
                                               tests only, 3 at a time (an hour, not a day)
    make mutation ARGS='--own-tests 1 webapp.running.sandbox'   one module's
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import tomllib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = [sys.executable, "-m", "mutmut"]
COLUMNS = ("killed", "survived", "no tests", "timeout")

# The tests written for each rule module: `--own-tests` runs a mutant against those of them that
# reach its function (see first_pass). Each file is also in mutmut's test selection.
OWN_TESTS = {
    "webapp.releases.states": ["tests/unit/test_transitions.py", "tests/unit/test_state_moves.py",
                               "tests/unit/test_workflow.py"],
    "webapp.releases.queue": ["tests/unit/test_workflow.py", "tests/unit/test_modes_and_input.py",
                              "tests/unit/test_trigger_body.py", "tests/worker/test_dispatch_sentences.py",
                              "tests/worker/test_break_glass_queue.py", "tests/worker/test_windows_and_freezes.py",
                              "tests/worker/test_queues.py", "tests/worker/test_break_glass.py"],
    "webapp.releases.runs": ["tests/unit/test_verdict_parsing.py", "tests/worker/test_run_outcome_sentences.py",
                             "tests/worker/test_dispatch_sentences.py", "tests/worker/test_verdict.py",
                             "tests/worker/test_hook_outcomes.py", "tests/worker/test_since_authors.py",
                             "tests/worker/test_runner.py", "tests/worker/test_break_glass_queue.py",
                             "tests/web/test_permission_enforcement.py"],
    "webapp.releases.decisions": ["tests/unit/test_decisions.py", "tests/unit/test_decision_records.py",
                                  "tests/unit/test_decision_refusals.py"],
    "webapp.transactions": ["tests/unit/test_transactions.py", "tests/unit/test_state_moves.py",
                            "tests/worker/test_dispatch_sentences.py"],
    "webapp.permissions": ["tests/unit/test_deciders_by_environment.py", "tests/unit/test_decision_refusals.py",
                           "tests/unit/test_approval_rules_checks.py", "tests/web/test_permission_rules.py",
                           "tests/web/test_permission_enforcement.py", "tests/web/test_authorship_refusal.py",
                           "tests/web/test_trigger_page.py"],
    "webapp.approval_rules": ["tests/unit/test_approval_rules.py", "tests/unit/test_approval_rules_checks.py",
                              "tests/unit/test_approval_progress.py", "tests/unit/test_approval_rule_sentences.py",
                              "tests/web/test_approval_rules_pages.py"],
    "webapp.running.hook": ["tests/worker/test_hook_syntax_check.py", "tests/worker/test_hooks.py",
                            "tests/worker/test_hook_edges.py", "tests/worker/test_gate_integrity.py"],
    "webapp.running.sandbox": ["tests/worker/test_sandbox.py", "tests/worker/test_sandbox_probe.py",
                               "tests/worker/test_sandbox_paths.py"],
    "webapp.notify.email_links": ["tests/web/test_email_link_sentences.py", "tests/web/test_email_links.py",
                                  "tests/web/test_email_link_refusals.py", "tests/web/test_email_link_burn.py"],
}
MUTANT_WALL_LIMIT = 600  # seconds; a mutant that makes a test wait this long is left for mutmut


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


def pytest_in_mutants(mutant: str, tests: list[str]) -> int | None:
    """pytest's exit status for `tests` with `mutant` switched on (mutmut's trampolines read
    MUTANT_UNDER_TEST), run in mutants/ like mutmut runs them; None if it outlasts the limit,
    and then it is ended with everything it started (its RQ workers, its Redis)."""
    with subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT / "mutants", env={**os.environ, "MUTANT_UNDER_TEST": mutant},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) as child:
        try:
            return child.wait(MUTANT_WALL_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            return None


def first_pass(jobs: int, modules: list[str]) -> int:
    """Judge every unchecked mutant of `modules` (all rule modules if none) against those of its
    module's own tests that reach its function, `jobs` mutants at a time.

    mutmut runs a mutant against every selected test that reaches its function; for a function
    the whole workflow reaches that is most of the suite, and a full run takes many hours. Most
    mutants fail their module's own tests within seconds. A kill is recorded as mutmut records
    one (pytest's status 1 in the module's meta file, which `mutmut results` reads); a mutant those
    tests miss stays unchecked, for `make mutation` to run with every test that reaches it. It
    needs mutants/ from a `make mutation` run (mutmut writes the mutants when it starts).
    """
    from mutmut.mutation.data import SourceFileMutationData  # mutmut's own reader and writer

    os.chdir(ROOT)  # mutmut's meta files are named relative to the project
    unchecked = [line.strip().rpartition(": ")[0] for line in subprocess.run(
        [*MUTMUT, "results", "--all", "true"], cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines() if line.strip().endswith(": not checked")]
    by_module: dict[str, list[str]] = defaultdict(list)
    for mutant in unchecked:
        if not modules or mutant.rsplit(".", 1)[0] in modules:
            by_module[mutant.rsplit(".", 1)[0]].append(mutant)

    def unfit(module: str) -> str | None:
        """As mutmut checks first: the tests pass as they are, and fail when mutated code is made to fail."""
        if pytest_in_mutants("", OWN_TESTS[module]) != 0:
            return f"{module}: its own tests fail without a mutant; fix them first."
        if pytest_in_mutants("fail", OWN_TESTS[module]) in (0, None):
            return f"{module}: its own tests pass with every mutant forced to fail; they never reach it."
        return None

    with ThreadPoolExecutor(jobs) as pool:
        problems = [problem for problem in pool.map(unfit, by_module) if problem]
    if problems:
        print("\n".join(problems))
        return 1
    lock = threading.Lock()  # one module's meta file is written at a time
    # the sandbox's tests look for their processes on the whole machine: one of its mutants at a time
    alone = defaultdict(contextlib.nullcontext, {"webapp.running.sandbox": threading.Lock()})
    # as mutmut runs them: only the tests its test map says reach the mutant's function (a test
    # written since mutmut last collected the map is not among them), the quickest first
    stats = json.loads((ROOT / "mutants" / "mutmut-stats.json").read_text())
    reaching, duration = stats["tests_by_mangled_function_name"], stats["duration_by_test"]

    def own_tests_reaching(mutant: str) -> list[str]:
        own = OWN_TESTS[mutant.rsplit(".", 1)[0]]
        tests = [test for test in reaching.get(mutant.rsplit("__mutmut_", 1)[0], ())
                 if test.split("::")[0] in own]
        return sorted(tests, key=lambda test: duration.get(test, 0))

    def judge(mutant: str) -> bool | None:
        """Whether the mutant's own tests killed it; None if none of them reach it."""
        module = mutant.rsplit(".", 1)[0]
        tests = own_tests_reaching(mutant)
        if not tests:
            return None  # the full run judges it
        with alone[module]:
            status = pytest_in_mutants(mutant, tests)
        if status not in (0, 1):
            print(f"  {mutant}: pytest ended with {status}; left unchecked", flush=True)
        if status != 1:  # 1: a test failed, so it is killed; anything else is left for the full run
            return False
        with lock:
            data = SourceFileMutationData(path=module.replace(".", "/") + ".py")
            data.load()
            data.exit_code_by_key[mutant] = 1
            data.save()
        return True

    mutants = [mutant for module in by_module for mutant in by_module[module]]
    with ThreadPoolExecutor(jobs) as pool:
        verdicts = dict(zip(mutants, pool.map(judge, mutants), strict=True))
    for module, names in by_module.items():
        print(f"{module}: {len(names)} unchecked, {sum(verdicts[name] is True for name in names)} killed by "
              f"its own tests, {sum(verdicts[name] is None for name in names)} reached by none of them")
    return report()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--own-tests"]:
        jobs = int(argv[1]) if argv[1:2] and argv[1].isdigit() else 2
        return first_pass(jobs, [arg for arg in argv[1:] if not arg.isdigit()])
    if argv[:1] != ["--report"]:
        # mutmut's own exit status says nothing about survivors; the report does
        subprocess.run([*MUTMUT, "run", *argv], cwd=ROOT, check=False)
    return report()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
