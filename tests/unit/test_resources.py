"""Tests for webapp.intake.resources and trigger: what a trigger may carry, and what it is told if not."""


import pytest

from webapp.intake.resources import (
    CHANGE_TYPES,
    DESTRUCTIVE_CHANGE_TYPES,
    MAX_RESOURCES,
    InvalidInput,
    check_slug,
    is_slug,
    parse_resources,
)


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
