"""Tests for webapp.intake.resources and trigger: what a trigger may carry, and what it is told if not."""

import copy

import pytest

from tests.unit.test_terraform import plan, plan_change
from webapp.intake.resources import (
    CHANGE_TYPES,
    DESTRUCTIVE_CHANGE_TYPES,
    MAX_RESOURCES,
    InvalidInput,
    check_slug,
    is_slug,
    parse_resources,
)
from webapp.intake.terraform import resources_from_terraform_plan
from webapp.intake.trigger import TriggerRequest, parse_trigger_body


def resource(**overrides):
    entry = {
        "resourceType": "service",
        "resourceName": "api",
        "resourcePath": "services/api.json",
        "changeType": "UPDATE_IN_PLACE",
    }
    entry.update(overrides)
    return entry


def invalid(function, *args):
    with pytest.raises(InvalidInput) as caught:
        function(*args)
    return caught.value


# --- InvalidInput and constants -------------------------------------------------------


def test_invalid_input_is_a_value_error_whose_str_is_its_message():
    error = InvalidInput("Something is wrong: fix it.", 400)
    assert isinstance(error, ValueError)
    assert str(error) == error.message == "Something is wrong: fix it."
    assert error.status == 400


def test_invalid_input_defaults_to_422():
    assert InvalidInput("Bad value.").status == 422


def test_destructive_change_types_are_change_types():
    assert sorted(DESTRUCTIVE_CHANGE_TYPES) == ["DELETE", "RECREATE", "REPLACE"]
    assert DESTRUCTIVE_CHANGE_TYPES.issubset(CHANGE_TYPES)
    assert len(CHANGE_TYPES) == 6


# --- slugs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "qa", "prod-eu", "shop_2", "a" * 63, "9-_"])
def test_valid_slugs_are_accepted(name):
    assert is_slug(name)
    assert check_slug(name, "environment name") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Prod",
        "prod!",
        "-prod",
        "_prod",
        "a" * 64,
        "prod eu",
        "prod\n",
        "prød",
        "prod.eu",
    ],
)
def test_invalid_slugs_are_refused_with_422(name):
    assert not is_slug(name)
    error = invalid(check_slug, name, "environment name")
    assert error.status == 422
    assert "is not a valid environment name" in error.message


def test_slug_message_quotes_the_name_and_says_what_to_use():
    error = invalid(check_slug, "Prod!", "environment name")
    assert error.message == (
        '"Prod!" is not a valid environment name: use 1–63 lowercase letters, digits, '
        '"-" or "_", starting with a letter or digit.'
    )


def test_slug_message_defaults_to_project_name():
    assert "project name" in invalid(check_slug, "X").message


@pytest.mark.parametrize("name", [None, 3, 1.5, True, ["qa"], {"name": "qa"}])
def test_a_slug_that_is_not_a_string_is_refused_with_400(name):
    assert not is_slug(name)
    error = invalid(check_slug, name, "project name")
    assert error.status == 400
    assert "project name must be a string" in error.message


def test_a_huge_slug_is_shortened_in_the_message():
    error = invalid(check_slug, "X" * 100_000)
    assert len(error.message) < 300


# --- parse_resources ------------------------------------------------------------------


def test_valid_resources_come_back_as_normalised_copies():
    given = [resource(), resource(changeType="DELETE", resourceName="db")]
    parsed = parse_resources(given)
    assert parsed == given
    assert parsed[0] is not given[0]
    parsed[0]["resourceName"] = "changed"
    assert given[0]["resourceName"] == "api"


def test_an_empty_resource_list_is_a_release_with_no_changes():
    assert parse_resources([]) == []


@pytest.mark.parametrize("change_type", CHANGE_TYPES)
def test_every_change_type_is_accepted(change_type):
    assert (
        parse_resources([resource(changeType=change_type)])[0]["changeType"]
        == change_type
    )


def test_extra_keys_are_kept_as_given_and_copied_deeply():
    extra = {"notes": {"owner": "team-a", "tags": ["x", 1, None, True, 2.5]}}
    given = [resource(**extra)]
    parsed = parse_resources(given)
    assert parsed[0]["notes"] == extra["notes"]
    parsed[0]["notes"]["tags"].append("more")
    assert given[0]["notes"]["tags"] == ["x", 1, None, True, 2.5]


def test_the_four_keys_come_first_in_a_normalised_resource():
    parsed = parse_resources([{"extra": 1, **resource()}])
    assert list(parsed[0]) == [
        "resourceType",
        "resourceName",
        "resourcePath",
        "changeType",
        "extra",
    ]


@pytest.mark.parametrize("value", [None, {}, "resources", 3, True, {"0": resource()}])
def test_resources_that_are_not_a_list_are_refused_with_400(value):
    error = invalid(parse_resources, value)
    assert error.status == 400
    assert "resources must be a list" in error.message


@pytest.mark.parametrize("entry", [None, "service", 3, [], [resource()]])
def test_an_entry_that_is_not_an_object_is_refused_with_400_naming_its_index(entry):
    error = invalid(parse_resources, [resource(), resource(), entry])
    assert error.status == 400
    assert error.message.startswith("resources[2] must be an object")


@pytest.mark.parametrize(
    "key", ["resourceType", "resourceName", "resourcePath", "changeType"]
)
def test_a_missing_key_is_refused_with_400_naming_index_and_key(key):
    entries = [resource() for _ in range(4)]
    del entries[3][key]
    error = invalid(parse_resources, entries)
    assert error.status == 400
    assert error.message == f'resources[3] is missing "{key}".'


@pytest.mark.parametrize(
    "key", ["resourceType", "resourceName", "resourcePath", "changeType"]
)
@pytest.mark.parametrize("value", [None, 3, 1.5, False, ["x"], {"x": "y"}])
def test_a_key_that_is_not_a_string_is_refused_with_400(key, value):
    error = invalid(parse_resources, [resource(**{key: value})])
    assert error.status == 400
    assert f"resources[0].{key} must be a string" in error.message


@pytest.mark.parametrize(
    "key", ["resourceType", "resourceName", "resourcePath", "changeType"]
)
def test_an_empty_string_is_refused_with_422(key):
    error = invalid(parse_resources, [resource(**{key: ""})])
    assert error.status == 422
    assert f"resources[0].{key} is empty" in error.message


@pytest.mark.parametrize(
    "change_type", ["create", "DESTROY", "UPDATE", " CREATE", "NO-OP"]
)
def test_an_unknown_change_type_is_refused_with_422_listing_the_known_ones(change_type):
    error = invalid(parse_resources, [resource(), resource(changeType=change_type)])
    assert error.status == 422
    assert "resources[1].changeType" in error.message
    for known in CHANGE_TYPES:
        assert known in error.message


@pytest.mark.parametrize("key", ["resourceType", "resourceName", "resourcePath"])
def test_a_string_over_1000_characters_is_refused_with_422(key):
    assert parse_resources([resource(**{key: "x" * 1000})])
    error = invalid(parse_resources, [resource(**{key: "x" * 1001})])
    assert error.status == 422
    assert f"resources[0].{key} is 1,001 characters long" in error.message


def test_more_than_the_maximum_number_of_resources_is_refused_with_422():
    assert len(parse_resources([resource()] * MAX_RESOURCES)) == MAX_RESOURCES
    error = invalid(parse_resources, [resource()] * (MAX_RESOURCES + 1))
    assert error.status == 422
    assert "10,001 entries" in error.message


@pytest.mark.parametrize("text", ["nul\x00byte", "lone \ud800 surrogate"])
def test_strings_a_database_cannot_store_are_refused_with_422(text):
    error = invalid(parse_resources, [resource(resourceName=text)])
    assert error.status == 422
    assert "resources[0].resourceName" in error.message


def test_unicode_names_are_accepted():
    parsed = parse_resources([resource(resourceName="сервис-日本-🚀")])
    assert parsed[0]["resourceName"] == "сервис-日本-🚀"


@pytest.mark.parametrize(
    "extra",
    [float("nan"), float("inf"), {"k": "\x00"}, {1: "not a string key"}, {"s": {1, 2}}],
)
def test_extra_keys_that_are_not_plain_json_are_refused(extra):
    error = invalid(parse_resources, [resource(extra=extra)])
    assert error.status in (400, 422)
    assert "resources[0].extra" in error.message


def test_a_resource_key_that_is_not_a_string_is_refused_with_400():
    error = invalid(parse_resources, [{**resource(), 7: "x"}])
    assert error.status == 400
    assert error.message == "resources[0] has a key that is a number, not a string."


def test_extra_keys_nested_too_deeply_are_refused_with_422():
    nested = []
    for _ in range(10_000):
        nested = [nested]
    error = invalid(parse_resources, [resource(extra=nested)])
    assert error.status == 422
    assert "nested more than" in error.message


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
