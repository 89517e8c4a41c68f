"""Admin pages: users, grants, projects and environments, API tokens."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import login_required

admin = Blueprint("admin", __name__, url_prefix="/admin")


@admin.get("/")
@login_required
def index():
    return render_template("admin/index.html")


@admin.get("/tokens")
@login_required
def tokens():
    return render_template("admin/tokens.html")
