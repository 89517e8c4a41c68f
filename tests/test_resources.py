"""Tests for webapp.resources: what a trigger may carry, and what it is told if not."""

import copy

import pytest

from webapp.resources import (
    CHANGE_TYPES,
    DESTRUCTIVE_CHANGE_TYPES,
    MAX_RESOURCES,
    InvalidInput,
    TriggerRequest,
    check_slug,
    is_slug,
    parse_resources,
    parse_trigger_body,
    resources_from_terraform_plan,
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


def plan_change(actions, index=None, **overrides):
    change = {
        "address": "aws_instance.web",
        "mode": "managed",
        "type": "aws_instance",
        "name": "web",
        "provider_name": "registry.terraform.io/hashicorp/aws",
        "change": {"actions": actions, "before": None, "after": {}},
    }
    if index is not None:
        change["index"] = index
    change.update(overrides)
    return change


def plan(*changes):
    return {
        "format_version": "1.2",
        "terraform_version": "1.9.0",
        "planned_values": {"root_module": {}},
        "resource_changes": list(changes),
    }


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


# --- Terraform plans ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "change_type"),
    [
        (["create"], "CREATE"),
        (["delete"], "DELETE"),
        (["update"], "UPDATE_IN_PLACE"),
        (["delete", "create"], "RECREATE"),
        (["create", "delete"], "REPLACE"),
        (["no-op"], "NO_OPERATION"),
        (["forget"], "NO_OPERATION"),
    ],
)
def test_every_terraform_action_maps_to_its_change_type(actions, change_type):
    [converted] = resources_from_terraform_plan(plan(plan_change(actions)))
    assert converted == {
        "resourceType": "aws_instance",
        "resourceName": "web",
        "resourcePath": "aws_instance.web",
        "changeType": change_type,
        "actions": actions,
    }


def test_data_source_reads_are_left_out():
    read = plan_change(
        ["read"], mode="data", address="data.aws_ami.ubuntu", type="aws_ami"
    )
    converted = resources_from_terraform_plan(plan(read, plan_change(["create"])))
    assert [r["resourcePath"] for r in converted] == ["aws_instance.web"]


def test_a_numeric_index_is_added_to_the_name_as_brackets():
    change = plan_change(["create"], index=0, address="aws_instance.web[0]")
    [converted] = resources_from_terraform_plan(plan(change))
    assert converted["resourceName"] == "web[0]"
    assert converted["resourcePath"] == "aws_instance.web[0]"


def test_a_string_index_is_added_to_the_name_quoted_like_terraform_addresses():
    change = plan_change(
        ["update"], index="eu-west", address='aws_instance.web["eu-west"]'
    )
    [converted] = resources_from_terraform_plan(plan(change))
    assert converted["resourceName"] == 'web["eu-west"]'
    assert converted["resourceName"] == converted["resourcePath"].removeprefix(
        "aws_instance."
    )


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ('say "hi"', 'web["say \\"hi\\""]'),
        ("back\\slash", 'web["back\\\\slash"]'),
        ("line\nbreak", 'web["line\\nbreak"]'),
        ("${var}", 'web["$${var}"]'),
        ("%{if}", 'web["%%{if}"]'),
        ("$5 and 50%", 'web["$5 and 50%"]'),
        ("zero\u200bwidth", 'web["zero\\u200bwidth"]'),
        ("日本", 'web["日本"]'),
        ("", 'web[""]'),
    ],
)
def test_string_indexes_are_escaped_like_terraform_does(key, name):
    [converted] = resources_from_terraform_plan(
        plan(plan_change(["create"], index=key))
    )
    assert converted["resourceName"] == name


def test_a_module_resource_keeps_its_full_address_as_path():
    change = plan_change(
        ["delete"],
        index=1,
        address="module.net.aws_subnet.private[1]",
        type="aws_subnet",
    )
    change["name"] = "private"
    [converted] = resources_from_terraform_plan(plan(change))
    assert converted["resourceType"] == "aws_subnet"
    assert converted["resourceName"] == "private[1]"
    assert converted["resourcePath"] == "module.net.aws_subnet.private[1]"


def test_action_reason_is_passed_along_when_present():
    change = plan_change(["delete", "create"], action_reason="replace_because_tainted")
    [converted] = resources_from_terraform_plan(plan(change))
    assert converted["action_reason"] == "replace_because_tainted"
    assert converted["actions"] == ["delete", "create"]


def test_the_actions_list_is_a_copy():
    change = plan_change(["create"])
    [converted] = resources_from_terraform_plan(plan(change))
    converted["actions"].append("delete")
    assert change["change"]["actions"] == ["create"]


def test_converted_plan_resources_pass_resource_validation():
    changes = [
        plan_change(["create"], index=0),
        plan_change(["delete", "create"], index="a"),
    ]
    converted = resources_from_terraform_plan(plan(*changes))
    assert parse_resources(converted) == converted


@pytest.mark.parametrize(
    "actions",
    [
        [],
        ["update", "delete"],
        ["create", "forget"],
        ["destroy"],
        ["read", "create"],
        ["CREATE"],
    ],
)
def test_an_unknown_terraform_action_is_refused_with_422_naming_address_and_actions(
    actions,
):
    error = invalid(resources_from_terraform_plan, plan(plan_change(actions)))
    assert error.status == 422
    assert '"aws_instance.web"' in error.message
    for action in actions:
        assert f'"{action}"' in error.message


def test_a_plan_without_resource_changes_means_nothing_changes():
    empty_plan = {"format_version": "1.2", "planned_values": {}, "applyable": False}
    assert resources_from_terraform_plan(empty_plan) == []


def test_an_empty_resource_changes_list_is_an_empty_release():
    assert resources_from_terraform_plan(plan()) == []


@pytest.mark.parametrize("value", [None, [], "plan", 3, True])
def test_a_plan_that_is_not_an_object_is_refused_with_400(value):
    error = invalid(resources_from_terraform_plan, value)
    assert error.status == 400
    assert "terraform show -json" in error.message


def test_an_object_that_is_not_terraform_output_is_refused_with_400():
    error = invalid(resources_from_terraform_plan, {"resources": []})
    assert error.status == 400
    assert "resource_changes" in error.message


def test_terraform_state_instead_of_a_plan_is_refused_with_400():
    state = {"format_version": "1.0", "terraform_version": "1.9.0", "values": {}}
    error = invalid(resources_from_terraform_plan, state)
    assert error.status == 400
    assert "state, not a plan" in error.message


@pytest.mark.parametrize("value", [None, {}, "x", 3])
def test_resource_changes_that_are_not_a_list_are_refused_with_400(value):
    error = invalid(
        resources_from_terraform_plan,
        {"format_version": "1.2", "resource_changes": value},
    )
    assert error.status == 400
    assert '"resource_changes" must be a list' in error.message


def test_an_errored_plan_is_refused_with_422():
    errored = plan(plan_change(["create"]))
    errored["errored"] = True
    error = invalid(resources_from_terraform_plan, errored)
    assert error.status == 422
    assert "errored" in error.message


@pytest.mark.parametrize("entry", [None, "aws_instance.web", 3, []])
def test_a_plan_entry_that_is_not_an_object_is_refused_with_400(entry):
    error = invalid(resources_from_terraform_plan, plan(plan_change(["create"]), entry))
    assert error.status == 400
    assert "resource_changes[1] must be an object" in error.message


@pytest.mark.parametrize("key", ["type", "name", "address", "change"])
def test_a_plan_entry_missing_a_key_is_refused_with_400_naming_it(key):
    change = plan_change(["create"])
    del change[key]
    error = invalid(resources_from_terraform_plan, plan(change))
    assert error.status == 400
    assert error.message == f'resource_changes[0] is missing "{key}".'


@pytest.mark.parametrize("key", ["type", "name", "address"])
@pytest.mark.parametrize("value", [None, 3, ["x"], {}])
def test_a_plan_entry_with_a_non_string_key_is_refused_with_400(key, value):
    error = invalid(
        resources_from_terraform_plan, plan(plan_change(["create"], **{key: value}))
    )
    assert error.status == 400
    assert f"resource_changes[0].{key} must be a string" in error.message


def test_a_plan_entry_without_actions_is_refused_with_400():
    change = plan_change(["create"])
    del change["change"]["actions"]
    error = invalid(resources_from_terraform_plan, plan(change))
    assert error.status == 400
    assert error.message == 'resource_changes[0].change is missing "actions".'


@pytest.mark.parametrize("change", [None, [], "create"])
def test_a_plan_entry_whose_change_is_not_an_object_is_refused_with_400(change):
    entry = plan_change(["create"])
    entry["change"] = change
    error = invalid(resources_from_terraform_plan, plan(entry))
    assert error.status == 400
    assert "resource_changes[0].change must be an object" in error.message


@pytest.mark.parametrize(
    "actions", [None, "create", [1], [["create"]], {"0": "create"}]
)
def test_actions_that_are_not_a_list_of_strings_are_refused_with_400(actions):
    error = invalid(resources_from_terraform_plan, plan(plan_change(actions)))
    assert error.status == 400
    assert (
        "resource_changes[0].change.actions must be a list of strings" in error.message
    )


@pytest.mark.parametrize("index", [True, 1.5, [0], {"k": 1}])
def test_an_index_that_is_neither_number_nor_string_is_refused_with_400(index):
    error = invalid(
        resources_from_terraform_plan, plan(plan_change(["create"], index=index))
    )
    assert error.status == 400
    assert "resource_changes[0].index must be a number or a string" in error.message


def test_a_non_string_action_reason_is_refused_with_400():
    change = plan_change(["create"], action_reason=7)
    error = invalid(resources_from_terraform_plan, plan(change))
    assert error.status == 400
    assert "resource_changes[0].action_reason" in error.message


def test_a_plan_with_too_many_changes_is_refused_with_422():
    huge = plan(*[plan_change(["create"])] * (MAX_RESOURCES + 1))
    error = invalid(resources_from_terraform_plan, huge)
    assert error.status == 422


def test_a_plan_address_over_1000_characters_is_refused_with_422():
    change = plan_change(["create"], address="module.x." * 200 + "aws_instance.web")
    error = invalid(resources_from_terraform_plan, plan(change))
    assert error.status == 422
    assert "resource_changes[0].address" in error.message


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
