"""The trusted hook's Python check before it runs (running.hook.preflight): valid Python passes
whatever our own module's __future__ imports are, and source Python cannot compile is refused
with a sentence naming the hook."""
from __future__ import annotations

from webapp.running.hook import preflight


def test_a_hook_is_judged_as_python_itself_would_not_with_our_future_imports(tmp_path):
    """`from __future__ import annotations` (which hook.py has) makes a yield in an annotation a
    syntax error; python3 runs such a hook, so the check must pass it."""
    script = tmp_path / "pre_release_hook.py"
    script.write_text("def steps():\n    first: (yield) = 1\n\nprint(list(steps()))\n")
    assert preflight(script, "py") is None


def test_a_hook_holding_a_nul_byte_is_refused_with_a_sentence_naming_it(tmp_path):
    script = tmp_path / "pre_release_hook.py"
    script.write_bytes(b"print('a')\0\n")
    assert preflight(script, "py") == ("The hook pre_release_hook.py is not valid Python source: source code "
                                       "string cannot contain null bytes.")
