"""Vendored front-end files are the pinned versions."""
from __future__ import annotations

import hashlib
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "static"


def test_htmx_is_the_pinned_release():
    digest = hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest()
    assert digest == "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
    assert digest in (STATIC / "VENDORED.md").read_text()
