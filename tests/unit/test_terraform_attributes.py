"""Tests for webapp.intake.attributes: the attributes a Terraform plan changes, masked and bounded."""

import json

import pytest

from webapp.intake.attributes import (
    MAX_ATTRIBUTES_PER_RELEASE,
    MAX_ATTRIBUTES_PER_RESOURCE,
    MAX_VALUE_LENGTH,
    SENSITIVE,
    UNKNOWN,
    attribute_changes,
)
from webapp.intake.resources import InvalidInput, parse_resources
from webapp.intake.terraform import resources_from_terraform_plan

SECRET = "hunter2-do-not-store-me"


def plan_of(*changes, actions=("update",)):
    return {"format_version": "1.2", "resource_changes": [
        {"address": f"aws_instance.web{index}", "type": "aws_instance", "name": f"web{index}",
         "change": {"actions": list(actions), **change}}
        for index, change in enumerate(changes)]}


def stored(resources) -> str:
    """The resources as the database keeps them (a JSON column)."""
    return json.dumps(resources, ensure_ascii=False)


def test_only_the_attributes_that_differ_are_kept_sorted_as_json_text():
    attributes, truncated = attribute_changes({
        "before": {"ami": "ami-1", "instance_type": "t3.micro", "tags": {"team": "web"}, "count": 1},
        "after": {"ami": "ami-1", "instance_type": "t3.large", "tags": {"team": "web", "env": "prod"}, "count": 1},
    })
    assert attributes == [
        {"name": "instance_type", "before": '"t3.micro"', "after": '"t3.large"'},
        {"name": "tags", "before": '{"team": "web"}', "after": '{"env": "prod", "team": "web"}'},
    ]
    assert truncated is False


def test_a_create_reads_null_before_and_a_delete_null_after():
    created, _ = attribute_changes({"before": None, "after": {"name": "logs", "size": 3}})
    assert created == [{"name": "name", "before": "null", "after": '"logs"'},
                       {"name": "size", "before": "null", "after": "3"}]
    deleted, _ = attribute_changes({"before": {"name": "logs"}, "after": None})
    assert deleted == [{"name": "name", "before": '"logs"', "after": "null"}]


def test_nothing_changed_gives_no_attributes_and_the_resource_no_key():
    [resource] = resources_from_terraform_plan(plan_of({"before": {"a": 1}, "after": {"a": 1}}))
    assert "attributes" not in resource and "attributes_truncated" not in resource


def test_a_plan_resource_carries_its_attributes():
    [resource] = resources_from_terraform_plan(plan_of({"before": {"a": 1}, "after": {"a": 2}}))
    assert resource["attributes"] == [{"name": "a", "before": "1", "after": "2"}]
    assert "attributes_truncated" not in resource


def test_a_no_op_shows_no_attributes_even_when_terraform_lists_some():
    [resource] = resources_from_terraform_plan(plan_of({"before": {"a": 1}, "after": {"a": 2}}, actions=("no-op",)))
    assert resource["changeType"] == "NO_OPERATION" and "attributes" not in resource


def test_an_attribute_marked_sensitive_is_masked_on_both_sides_and_never_stored():
    change = {"before": {"password": "old-" + SECRET, "name": "db"},
              "after": {"password": SECRET, "name": "db2"},
              "before_sensitive": {"password": True}, "after_sensitive": {"password": True}}
    resources = resources_from_terraform_plan(plan_of(change))
    assert resources[0]["attributes"] == [
        {"name": "name", "before": '"db"', "after": '"db2"'},
        {"name": "password", "before": SENSITIVE, "after": SENSITIVE},
    ]
    assert SECRET not in stored(resources)


def test_a_sensitive_value_that_did_not_change_is_not_listed():
    attributes, _ = attribute_changes({"before": {"password": SECRET}, "after": {"password": SECRET},
                                       "before_sensitive": {"password": True}, "after_sensitive": {"password": True}})
    assert attributes == []


def test_a_mark_dropped_by_the_plan_still_masks_the_value_it_was_on():
    attributes, _ = attribute_changes({"before": {"token": SECRET}, "after": {"token": SECRET},
                                       "before_sensitive": {"token": True}, "after_sensitive": {}})
    assert attributes == [{"name": "token", "before": SENSITIVE, "after": SENSITIVE}]


def test_a_nested_sensitive_mark_masks_the_whole_top_level_attribute():
    change = {"before": {"settings": [{"user": "app", "password": "a"}]},
              "after": {"settings": [{"user": "app", "password": SECRET}]},
              "before_sensitive": {"settings": [{"password": True}]},
              "after_sensitive": {"settings": [{"password": True}]}}
    resources = resources_from_terraform_plan(plan_of(change))
    assert resources[0]["attributes"] == [{"name": "settings", "before": SENSITIVE, "after": SENSITIVE}]
    assert SECRET not in stored(resources)


def test_a_whole_object_marked_sensitive_keeps_no_value():
    change = {"before": {"content": "x"}, "after": {"content": SECRET, "mode": SECRET + "-mode"},
              "before_sensitive": True, "after_sensitive": True}
    resources = resources_from_terraform_plan(plan_of(change))
    assert resources[0]["attributes"] == [{"name": "content", "before": SENSITIVE, "after": SENSITIVE},
                                          {"name": "mode", "before": "null", "after": SENSITIVE}]
    assert SECRET not in stored(resources)


@pytest.mark.parametrize("mark", ["yes", 1, [True], {"password": "yes"}])
def test_an_odd_sensitive_mark_never_lets_a_value_through(mark):
    change = {"before": {"password": "a"}, "after": {"password": SECRET}, "after_sensitive": mark}
    resources = resources_from_terraform_plan(plan_of(change))
    assert SECRET not in stored(resources)


def test_a_value_known_after_apply_says_so():
    attributes, _ = attribute_changes({"before": None, "after": {"name": "web"},
                                       "after_unknown": {"id": True, "arn": True, "name": False}})
    assert attributes == [{"name": "arn", "before": "null", "after": UNKNOWN},
                          {"name": "id", "before": "null", "after": UNKNOWN},
                          {"name": "name", "before": "null", "after": '"web"'}]


def test_a_long_value_is_cut_to_the_bound_with_an_ellipsis_and_marked():
    [resource] = resources_from_terraform_plan(plan_of({"before": {"policy": "a"}, "after": {"policy": "x" * 5000}}))
    [attribute] = resource["attributes"]
    assert len(attribute["after"]) == MAX_VALUE_LENGTH and attribute["after"].endswith("…")
    assert attribute["after"].startswith('"xxx')
    assert resource["attributes_truncated"] is True


def test_a_long_value_whose_start_is_the_same_still_reads_as_changed():
    start = "y" * (MAX_VALUE_LENGTH * 2)
    attributes, truncated = attribute_changes({"before": {"policy": start + "1"}, "after": {"policy": start + "2"}})
    assert [a["name"] for a in attributes] == ["policy"] and truncated is True


def test_at_most_fifty_attributes_are_kept_per_resource():
    change = {"before": {}, "after": {f"a{index:03}": index for index in range(MAX_ATTRIBUTES_PER_RESOURCE + 5)}}
    [resource] = resources_from_terraform_plan(plan_of(change))
    assert len(resource["attributes"]) == MAX_ATTRIBUTES_PER_RESOURCE
    assert resource["attributes"][0]["name"] == "a000" and resource["attributes_truncated"] is True
    exact = {"before": {}, "after": {f"a{index:03}": index for index in range(MAX_ATTRIBUTES_PER_RESOURCE)}}
    [resource] = resources_from_terraform_plan(plan_of(exact))
    assert len(resource["attributes"]) == MAX_ATTRIBUTES_PER_RESOURCE and "attributes_truncated" not in resource


def test_at_most_five_thousand_attributes_are_kept_per_release():
    full = {"before": None, "after": {f"a{index:03}": index for index in range(MAX_ATTRIBUTES_PER_RESOURCE)}}
    count = MAX_ATTRIBUTES_PER_RELEASE // MAX_ATTRIBUTES_PER_RESOURCE
    resources = resources_from_terraform_plan(plan_of(*[full] * (count + 2), actions=("create",)))
    assert sum(len(r["attributes"]) for r in resources) == MAX_ATTRIBUTES_PER_RELEASE
    assert all("attributes_truncated" not in r for r in resources[:count])
    for late in resources[count:]:
        assert late["attributes"] == [] and late["attributes_truncated"] is True
    assert len(stored(resources)) < 2_000_000  # bounded, whatever the plan held


def test_a_long_attribute_name_is_cut_too():
    [attribute], truncated = attribute_changes({"before": {}, "after": {"n" * 1000: 1}})
    assert len(attribute["name"]) == MAX_VALUE_LENGTH and truncated is True


def test_text_the_database_cannot_store_is_escaped():
    [attribute], _ = attribute_changes({"before": {}, "after": {"a\x00b": "\ud800"}})
    assert "\x00" not in attribute["name"] and "\ud800" not in attribute["after"]
    json.dumps(attribute).encode("utf-8")


@pytest.mark.parametrize("change", [
    None, "changed", [1, 2], {"before": "x", "after": {"a": 1}}, {"before": {"a": 1}, "after": [1]},
    {"before": {}, "after": {"a": 1}, "after_unknown": "all"}, {"before": {}, "after": {"a": 1}, "before_sensitive": 3},
])
def test_a_malformed_change_gives_no_attributes_and_no_error(change):
    assert attribute_changes(change) == ([], False)


def test_a_plan_with_a_malformed_change_is_still_accepted():
    plan = plan_of({"before": "not an object", "after": {"a": 1}}, {"before": {"a": 1}, "after": {"a": 2}})
    first, second = resources_from_terraform_plan(plan)
    assert "attributes" not in first and second["attributes"] == [{"name": "a", "before": "1", "after": "2"}]


def test_a_deeply_nested_value_gives_no_attributes_rather_than_an_error():
    deep: object = "bottom"
    for _ in range(100_000):
        deep = [deep]
    assert attribute_changes({"before": {}, "after": {"a": deep}}) == ([], False)


@pytest.mark.parametrize("key", ["attributes", "attributes_truncated"])
def test_a_resource_list_written_by_hand_cannot_carry_the_plan_only_keys(key):
    entry = {"resourceType": "service", "resourceName": "api", "resourcePath": "services/api.json",
             "changeType": "UPDATE_IN_PLACE", key: [{"name": "a", "before": "1", "after": "2"}]}
    with pytest.raises(InvalidInput) as caught:
        parse_resources([entry])
    assert f"resources[0].{key} is filled in from a Terraform plan" in caught.value.message
    assert caught.value.status == 422


def test_a_resource_list_written_by_hand_keeps_its_other_extra_keys():
    entry = {"resourceType": "service", "resourceName": "api", "resourcePath": "services/api.json",
             "changeType": "UPDATE_IN_PLACE", "owner": {"team": "web"}, "attribute": "kept"}
    assert parse_resources([entry]) == [entry]
