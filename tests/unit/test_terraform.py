"""Tests for webapp.intake.terraform: a `terraform show -json` plan read as resource changes."""

import pytest

from webapp.intake.resources import MAX_RESOURCES, InvalidInput, parse_resources
from webapp.intake.terraform import resources_from_terraform_plan


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


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("errored", "yes", "true or false"),
        ("errored", "false", "true or false"),
        ("errored", 0, "true or false"),
        ("errored", None, "true or false"),
        ("format_version", 1.2, "a string"),
        ("applyable", "true", "true or false"),
        ("complete", 1, "true or false"),
        ("planned_values", [], "an object"),
    ],
)
def test_plan_fields_of_the_wrong_type_are_refused_with_422_naming_the_plan(field, value, expected):
    # "errored": "yes" once read as a plan without errors (only `is True` refused it).
    wrong = plan()
    wrong[field] = value
    error = invalid(resources_from_terraform_plan, wrong)
    assert error.status == 422
    assert error.message.startswith(f'The Terraform plan\'s "{field}" must be {expected}')
    assert "terraform show -json" in error.message


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
