"""docs/api-reference.md, rendered from the OpenAPI document (webapp/openapi.yaml) for people
who read the API in the repository rather than in a viewer: each operation with its
parameters, request body and answers. tests/web/test_openapi.py fails when the committed file
differs from what this renders, so the two never drift apart.

    .venv/bin/python scripts/api_reference.py          # rewrite docs/api-reference.md
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "webapp" / "openapi.yaml"
REFERENCE = ROOT / "docs" / "api-reference.md"
METHODS = ("get", "post", "put", "patch", "delete")


def render(spec: dict) -> str:
    lines = [f"# {spec['info']['title']}: the reference",
             "",
             "Rendered from `webapp/openapi.yaml` by `scripts/api_reference.py`; edit the document, then run the "
             "script. The same document is served at `GET /api/v1/openapi.json`, for any OpenAPI viewer.",
             "",
             spec["info"]["description"].strip(),
             ""]
    for tag in [entry["name"] for entry in spec.get("tags", [])]:
        lines += [f"## {tag.capitalize()}", ""]
        for path, item in spec["paths"].items():
            for method in METHODS:
                operation = item.get(method)
                if operation is None or tag not in operation.get("tags", []):
                    continue
                lines += _operation(spec, method, path, {**item, **operation})
    return "\n".join(lines).rstrip() + "\n"


def _operation(spec: dict, method: str, path: str, operation: dict) -> list[str]:
    lines = [f"### `{method.upper()} /api/v1{path}`", ""]
    if operation.get("summary"):
        lines += [operation["summary"].strip(), ""]
    if operation.get("description"):
        lines += [operation["description"].strip(), ""]
    if operation.get("security") == []:
        lines += ["No token needed.", ""]
    parameters = [_resolve(spec, parameter) for parameter in operation.get("parameters", [])]
    if parameters:
        lines += ["| parameter | in | |", "|---|---|---|"]
        lines += [f"| `{p['name']}` | {p['in']} | {_one_line(p.get('description', ''))} |" for p in parameters]
        lines.append("")
    body = operation.get("requestBody")
    if body:
        body = _resolve(spec, body)
        schema = _resolve(spec, body.get("content", {}).get("application/json", {}).get("schema", {}))
        fields = ", ".join(f"`{name}`" for name in schema.get("properties", {}))
        required = "" if body.get("required") else " (optional)"
        lines += [f"Body{required}: {_one_line(body.get('description', '')) or 'a JSON object'}"
                  + (f"; fields {fields}." if fields else "."), ""]
    lines += ["| answer | |", "|---|---|"]
    for status, response in operation.get("responses", {}).items():
        lines.append(f"| {status} | {_one_line(_resolve(spec, response).get('description', ''))} |")
    return [*lines, ""]


def _resolve(spec: dict, value: dict) -> dict:
    while isinstance(value, dict) and "$ref" in value:
        node = spec
        for part in value["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        value = node
    return value


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def main() -> int:
    REFERENCE.write_text(render(yaml.safe_load(DOCUMENT.read_text())))
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
