"""releases.TRANSITIONS is the state diagram: every arrow drawn there is a move in the table,
every move in the table is an arrow there (or a sentence beside it), and the state machine
refuses any other move before it sends SQL. The diagram read is the README's "Release states",
which draws SPEC §3's moves (checked where the shared contract sits beside the clone, as in CI)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from webapp import releases
from webapp.extensions import db
from webapp.models import STATES, TERMINAL_STATES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SPEC = ROOT.parent / "shared" / "SPEC.md"  # the contract; CI has it beside the clone
STATE = r"[A-Z][A-Z_]+"
# Moves §3 states in words rather than draws; each must still be written there as quoted.
WRITTEN_NOT_DRAWN = {
    ("QUEUED", "IN_PROGRESS"): "With the approval workflow off, dispatch goes straight to `IN_PROGRESS`.",
}


def states_section(path: Path, heading: str) -> str:
    match = re.search(rf"^{re.escape(heading)}\n(.*?)^## ", path.read_text(encoding="utf-8"), re.S | re.M)
    assert match, f"{path.name} has no section {heading!r}"
    return match.group(1)


def diagram(section: str) -> str:
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def diagram_moves(section: str) -> set[tuple[str, str]]:
    """The arrows of the diagram in §3's first code block, as (from, to) pairs.

    An arrow `──label──> TO` (or `──> A | B`) starts at the state written just before it
    ("A ──>", "A or B ──>"); otherwise at the state above it, found by following the `│`
    or `└` its line hangs from straight up. A label may run onto the next line
    ("└──other exit, timeout," / "missing/invalid hook──> FAILED")."""
    lines = diagram(section).splitlines()
    targets = rf"(?P<to>{STATE}(?:\s*\|\s*{STATE})*)"
    arrow = re.compile(rf"(?:(?<=\s)|^|(?P<hook>└))──[^─>│└]*─*>\s*{targets}")
    opened = re.compile(r"└──[^─>│└]+?(?=\s*(?:└|│|$))")

    def state_at(row: int, column: int) -> str | None:
        for match in re.finditer(STATE, lines[row]):
            if match.start() <= column < match.end():
                return match.group()
        return None

    def state_above(row: int, column: int) -> str:
        for above in range(row - 1, -1, -1):
            found = state_at(above, column)
            if found:
                return found
            assert lines[above][column:column + 1] in ("│", "└"), f"line {row + 1}: no state above column {column}"
        raise AssertionError(f"line {row + 1}: an arrow that hangs from nothing")

    moves: set[tuple[str, str]] = set()
    drawn = 0
    hanging: tuple[int, str] | None = None  # (column where its label goes on, from state)
    for row, line in enumerate(lines):
        found = []
        if hanging is not None:
            column, source = hanging
            rest = re.compile(rf"[^\s─>│└][^─>│└]*─*>\s*{targets}").match(line, column)
            assert rest, f"line {row + 1}: the label of the arrow above does not end in an arrow here"
            found.append(([source], rest.group("to"), rest.end()))
            hanging = None
            line = line[:column] + " " * (rest.end() - column) + line[rest.end():]
        for match in arrow.finditer(line):
            before = line[:match.start()]
            written = re.search(rf"({STATE}(?:\s+or\s+{STATE})*)\s*$", before)
            if match.group("hook"):
                sources = [state_above(row, match.start())]
            elif written:
                sources = re.findall(STATE, written.group(1))
            else:
                assert "│" in before, f"line {row + 1}: an arrow from nowhere: {match.group()!r}"
                sources = [state_above(row, before.rindex("│"))]
            found.append((sources, match.group("to"), match.end()))
        for match in opened.finditer(line):
            hanging = (match.start() + 3, state_above(row, match.start()))
        for sources, to, _end in found:
            drawn += 1
            moves |= {(source, target) for source in sources for target in re.findall(STATE, to)}
    arrowheads = sum(line.count("─>") for line in lines)
    assert drawn == arrowheads, f"read {drawn} of the diagram's {arrowheads} arrows"
    return moves


def table_moves() -> set[tuple[str, str]]:
    return {(source, target) for source, targets in releases.TRANSITIONS.items() for target in targets}


def test_every_arrow_of_the_diagram_is_a_move_of_the_table_and_no_other():
    section = states_section(README, "## Release states")
    drawn = diagram_moves(section)
    assert ("READY", "FAILED") in drawn and ("PENDING_APPROVAL", "CANCELLED") in drawn  # the parser reads
    words = " ".join(section.split())
    for move, sentence in WRITTEN_NOT_DRAWN.items():
        assert sentence in words, f"the README no longer says {sentence!r}, which allows {move}"
    documented = drawn | set(WRITTEN_NOT_DRAWN)
    assert table_moves() - documented == set(), "moves in TRANSITIONS that the diagram does not have"
    assert documented - table_moves() == set(), "moves of the diagram that TRANSITIONS lacks"


# Moves an issue added to the contract (an issue that changes SPEC.md wins over it; the shared
# file itself is not ours to edit): issue 14's change windows and break-glass.
ADDED_BY_ISSUES = {
    ("QUEUED", "SCHEDULED"): 14, ("READY", "SCHEDULED"): 14, ("SCHEDULED", "IN_PROGRESS"): 14,
    ("SCHEDULED", "FAILED"): 14, ("PENDING_APPROVAL", "QUEUED"): 14, ("SCHEDULED", "QUEUED"): 14,
    ("SCHEDULED", "CANCELLED"): 14, ("IN_PROGRESS", "SCHEDULED"): 14,
}


@pytest.mark.spec
def test_the_readmes_diagram_draws_the_moves_of_spec_section_3_and_those_the_issues_added():
    spec = states_section(SPEC, "## 3. Release states")
    drawn_in_spec = diagram_moves(spec)
    assert not drawn_in_spec & ADDED_BY_ISSUES.keys(), "SPEC.md draws a move listed as added by an issue"
    assert diagram_moves(states_section(README, "## Release states")) == drawn_in_spec | ADDED_BY_ISSUES.keys()
    words = " ".join(spec.split())
    assert all(sentence in words for sentence in WRITTEN_NOT_DRAWN.values())


def test_the_table_names_only_known_states_and_terminal_states_move_nowhere():
    assert table_moves() and {state for move in table_moves() for state in move} <= set(STATES)
    assert set(releases.TRANSITIONS) == set(STATES) - set(TERMINAL_STATES)
    assert all(actions for targets in releases.TRANSITIONS.values() for actions in targets.values())


@pytest.mark.parametrize("to_state, action, expect", [
    ("SUCCEEDED", "dispatch", ("QUEUED",)),           # not an arrow of the diagram
    ("APPROVED", "dispatch", ("PENDING_APPROVAL",)),  # an arrow, but not what dispatch does
    ("FAILED", "abort", ("READY", "PENDING_APPROVAL")),  # one expected state has no such arrow
])
def test_a_move_the_table_lacks_is_refused_before_any_sql(app, api, new_environment, to_state, action, expect):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    release_id = trigger(api)
    with app.app_context():
        release = releases.get_release(release_id)
        sent: list[str] = []

        def record(_connection, _cursor, statement, *_):
            sent.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", record)
        try:
            with pytest.raises(ValueError, match="not a move of SPEC §3"):
                releases.states.move(release, to_state, releases.WORKER, action, expect=expect)
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", record)
        assert sent == []
        db.session.rollback()
        assert releases.get_release(release_id).state == "READY"
