"""What a trigger's body may carry (intake/trigger.py), and that wrong types anywhere
only ever raise InvalidInput."""
from __future__ import annotations

import copy

import pytest

from tests.unit.test_resources import invalid, resource
from tests.unit.test_terraform import plan, plan_change
from webapp.intake.resources import (
    InvalidInput,
    check_slug,
    is_slug,
    parse_resources,
)
from webapp.intake.terraform import resources_from_terraform_plan
from webapp.intake.trigger import TriggerRequest, parse_trigger_body

# --- parse_trigger_body ---------------------------------------------------------------


def test_a_body_with_resources_becomes_a_trigger_request():
    request = parse_trigger_body({"resources": [resource()]})
    assert request == TriggerRequest(resources=[resource()], ref=None, description="")


def test_a_body_with_a_terraform_plan_becomes_resources():
    request = parse_trigger_body(
        {
            "terraform_plan": plan(plan_change(["create"])),
            "ref": "main",
            "description": "tf",
        }
    )
    assert [r["changeType"] for r in request.resources] == ["CREATE"]
    assert request.ref == "main"
    assert request.description == "tf"


def test_a_trigger_request_is_frozen():
    request = parse_trigger_body({"resources": []})
    with pytest.raises(AttributeError):
        request.ref = "main"


@pytest.mark.parametrize(
    "ref",
    ["main", "v1.2.3", "feature/x", "9f2c" * 10, "HEAD~1", "release@{1}", "r" * 255],
)
def test_valid_refs_are_kept(ref):
    assert parse_trigger_body({"resources": [], "ref": ref}).ref == ref


def test_null_ref_and_description_count_as_not_sent():
    request = parse_trigger_body({"resources": [], "ref": None, "description": None})
    assert request.ref is None
    assert request.description == ""


def test_the_body_is_not_modified():
    body = {"resources": [resource()], "ref": "main"}
    before = copy.deepcopy(body)
    parse_trigger_body(body)
    assert body == before


@pytest.mark.parametrize("body", [None, [], "resources", 3, True, [{"resources": []}]])
def test_a_body_that_is_not_an_object_is_refused_with_400(body):
    error = invalid(parse_trigger_body, body)
    assert error.status == 400
    assert error.message == "The request body must be a JSON object."


def test_a_body_with_both_resources_and_a_plan_is_refused_with_400():
    error = invalid(parse_trigger_body, {"resources": [], "terraform_plan": plan()})
    assert error.status == 400
    assert error.message == 'Send either "resources" or "terraform_plan", not both.'


@pytest.mark.parametrize("body", [{}, {"ref": "main"}, {"resources": None}])
def test_a_body_with_neither_resources_nor_a_plan_is_refused_with_400(body):
    error = invalid(parse_trigger_body, body)
    assert error.status == 400
    assert '"resources"' in error.message
    assert '"terraform_plan"' in error.message


def test_unknown_top_level_keys_are_refused_with_400_naming_them():
    error = invalid(
        parse_trigger_body, {"resources": [], "resource": [], "comment": "x"}
    )
    assert error.status == 400
    assert '"resource"' in error.message
    assert '"comment"' in error.message
    assert error.message.startswith("Unknown fields")


def test_many_unknown_keys_are_summarised():
    body = {f"key{i}": i for i in range(50)}
    error = invalid(parse_trigger_body, body)
    assert "and 45 more" in error.message
    assert len(error.message) < 400


def test_errors_inside_resources_name_the_index_and_key():
    body = {"resources": [resource(), resource(), resource(), {"resourceType": "x"}]}
    error = invalid(parse_trigger_body, body)
    assert error.message == 'resources[3] is missing "resourceName".'


@pytest.mark.parametrize("ref", [3, ["main"], {"name": "main"}, True])
def test_a_ref_that_is_not_a_string_is_refused_with_400(ref):
    error = invalid(parse_trigger_body, {"resources": [], "ref": ref})
    assert error.status == 400
    assert '"ref" must be a string' in error.message


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "my branch",
        "main\n",
        "tab\there",
        "nul\x00",
        "bell\x07",
        "bidi\u202e",
        "r" * 256,
        "--upload-pack=evil",
        "lone\ud800",
    ],
)
def test_an_invalid_ref_is_refused_with_422(ref):
    error = invalid(parse_trigger_body, {"resources": [], "ref": ref})
    assert error.status == 422
    assert '"ref"' in error.message


@pytest.mark.parametrize("description", [3, ["x"], {"x": 1}, False])
def test_a_description_that_is_not_a_string_is_refused_with_400(description):
    error = invalid(parse_trigger_body, {"resources": [], "description": description})
    assert error.status == 400
    assert '"description" must be a string' in error.message


def test_a_description_up_to_2000_characters_with_newlines_is_kept():
    description = ("line\n" * 400)[:2000]
    assert parse_trigger_body(
        {"resources": [], "description": description}
    ).description == (description)


@pytest.mark.parametrize("description", ["x" * 2001, "nul\x00"])
def test_an_invalid_description_is_refused_with_422(description):
    error = invalid(parse_trigger_body, {"resources": [], "description": description})
    assert error.status == 422
    assert '"description"' in error.message


# --- wrong types everywhere: only InvalidInput ever comes out -------------------------

NASTY_VALUES = [
    None,
    0,
    -1,
    10**100,
    1.5,
    float("nan"),
    float("inf"),
    True,
    "",
    " ",
    "x" * 1_000_000,
    "日本語🚀",
    "\x00",
    "\ud800",
    [],
    [[]],
    [[[None]]],
    [None],
    [{}],
    {},
    {"": None},
    {"resources": None},
    {1: 2},
    (1, 2),
    {1, 2},
    object(),
    b"bytes",
]


def nasty_bodies():
    for value in NASTY_VALUES:
        yield value
        yield {"resources": value}
        yield {"resources": [value]}
        yield {"resources": [resource(changeType=value)]}
        yield {"resources": [resource(extra=value)]}
        yield {"resources": [], "ref": value}
        yield {"resources": [], "description": value}
        yield {"terraform_plan": value}
        yield {"terraform_plan": {"format_version": "1", "resource_changes": value}}
        yield {"terraform_plan": plan(value)}
        yield {"terraform_plan": plan(plan_change(value))}
        yield {"terraform_plan": plan(plan_change(["create"], index=value))}
        yield {"terraform_plan": plan(plan_change([value]))}
        yield {"terraform_plan": plan(plan_change(["create"], name=value))}
        yield {"terraform_plan": plan(plan_change(["create"], action_reason=value))}
        yield {"terraform_plan": plan({**plan_change(["create"]), "change": value})}


def test_wrong_types_everywhere_raise_only_invalid_input():
    for body in nasty_bodies():
        try:
            request = parse_trigger_body(body)
        except InvalidInput as error:
            assert error.status in (400, 422)
            assert error.message.endswith(".")
            assert len(error.message) < 1000
        else:
            assert isinstance(request, TriggerRequest)


@pytest.mark.parametrize("value", NASTY_VALUES, ids=repr)
def test_each_public_function_raises_only_invalid_input(value):
    assert is_slug(value) in (True, False)
    for function in (check_slug, parse_resources, resources_from_terraform_plan):
        try:
            function(value)
        except InvalidInput as error:
            assert error.status in (400, 422)
