"""Release pages, the pending-approvals inbox and the trigger form."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

release_pages = Blueprint("release_pages", __name__)


@release_pages.get("/approvals")
@login_required
def approvals():
    return render_template("approvals.html")


@release_pages.get("/fragments/approvals-count")
@login_required
def approvals_count():
    return ""


@release_pages.get("/trigger")
@login_required
def trigger():
    return render_template("trigger.html")
