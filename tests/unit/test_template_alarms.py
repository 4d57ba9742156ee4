"""template.yaml is told when things break: every queue, dead-letter queue, function and rule has its
alarm, every alarm notifies the alarm topic, rule targets retry and dead-letter, the bus is archived,
and the API's access log carries no query strings, bodies or caller addresses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.template import load_template

TEMPLATE: dict[str, Any] = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def of_type(kind: str) -> list[str]:
    return sorted(name for name, r in RESOURCES.items() if r["Type"] == kind)


def alarms() -> list[dict[str, Any]]:
    return [RESOURCES[name]["Properties"] for name in of_type("AWS::CloudWatch::Alarm")]


def alarmed(namespace: str, metric: str) -> list[Any]:
    """The first dimension's value of every alarm on ``namespace``/``metric`` (e.g. the queue it watches)."""
    found = []
    for alarm in alarms():
        if (alarm.get("Namespace"), alarm.get("MetricName")) == (namespace, metric):
            found.append(alarm["Dimensions"][-1]["Value"])
    return found


def dead_letter_queues() -> set[str]:
    """Queues something parks failures on: a queue's redrive target, or a rule target's DLQ."""
    found = set()
    for name in of_type("AWS::SQS::Queue"):
        redrive = RESOURCES[name]["Properties"].get("RedrivePolicy")
        if redrive:
            found.add(redrive["deadLetterTargetArn"]["Fn::GetAtt"][0])
    for rule in of_type("AWS::Events::Rule"):
        for target in RESOURCES[rule]["Properties"]["Targets"]:
            found.add(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0])
    return found


def test_there_are_queues_functions_and_rules_to_check() -> None:
    assert len(of_type("AWS::SQS::Queue")) >= 5
    assert len(of_type("AWS::Serverless::Function")) == 6
    assert len(of_type("AWS::Events::Rule")) == 2


def test_every_dead_letter_queue_alarms_on_its_first_message() -> None:
    watched = {value["Fn::GetAtt"][0] for value in alarmed("AWS/SQS", "ApproximateNumberOfMessagesVisible")}
    assert dead_letter_queues() <= watched
    assert dead_letter_queues() == {
        "InboundDeadLetterQueue",
        "SendDeadLetterQueue",
        "EventTargetDeadLetterQueue",
        "MediaDeadLetterQueue",
    }
    for alarm in alarms():
        if alarm.get("MetricName") == "ApproximateNumberOfMessagesVisible":
            assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_every_other_queue_alarms_on_the_age_of_its_oldest_message() -> None:
    queues = set(of_type("AWS::SQS::Queue")) - dead_letter_queues()
    watched = {value["Fn::GetAtt"][0] for value in alarmed("AWS/SQS", "ApproximateAgeOfOldestMessage")}
    assert queues == watched == {"InboundQueue", "SendQueue", "MediaQueue"}


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_alarms_on_errors_and_throttles(metric: str) -> None:
    watched = {value["Ref"] for value in alarmed("AWS/Lambda", metric)}
    assert watched == set(of_type("AWS::Serverless::Function"))


def test_the_api_the_table_the_rules_and_the_registry_have_alarms() -> None:
    assert alarmed("AWS/ApiGateway", "5xx") == [{"Ref": "HttpApi"}]
    assert len(alarmed("AWS/Events", "FailedInvocations")) == len(of_type("AWS::Events::Rule"))
    assert alarmed("crossroute", "RegistryInvalid") == ["crossroute"]
    (throttles,) = [a for a in alarms() if "Metrics" in a]
    names = {m["MetricStat"]["Metric"]["MetricName"] for m in throttles["Metrics"] if "MetricStat" in m}
    assert names == {"ReadThrottleEvents", "WriteThrottleEvents"}


def test_every_alarm_notifies_the_topic_and_an_address_can_subscribe() -> None:
    for alarm in alarms():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], alarm["AlarmDescription"]
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""


def test_rule_targets_retry_then_dead_letter_and_the_bus_is_archived() -> None:
    for rule in of_type("AWS::Events::Rule"):
        for target in RESOURCES[rule]["Properties"]["Targets"]:
            assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 86400
            assert "DeadLetterConfig" in target
    (archive,) = [RESOURCES[n]["Properties"] for n in of_type("AWS::Events::Archive")]
    assert archive["SourceArn"] == {"Fn::GetAtt": ["EventBus", "Arn"]}
    assert archive["RetentionDays"] == {"Ref": "EventArchiveRetentionDays"}


def test_tracing_is_a_parameter_off_by_default() -> None:
    assert TEMPLATE["Globals"]["Function"]["Tracing"] == {"Ref": "Tracing"}
    assert TEMPLATE["Parameters"]["Tracing"]["Default"] == "Disabled"


def test_the_access_log_holds_no_query_string_body_path_or_caller() -> None:
    settings = RESOURCES["HttpApi"]["Properties"]["AccessLogSettings"]
    fields = settings["Format"]
    for leak in ("querystring", "body", "sourceip", "$context.path", "useragent", "identity"):
        assert leak not in fields.lower(), leak
    assert (
        json.loads(fields.replace("$context.error.messageString", '"x"'))["routeKey"] == "$context.routeKey"
    )


def test_the_dashboard_shows_the_flow_and_every_contract_metric() -> None:
    body = json.dumps(RESOURCES["Dashboard"]["Properties"]["DashboardBody"])
    for metric in (
        "WebhookAccepted", "WebhookRejected", "EventsIngested", "CustomersCreated", "CustomersMerged",
        "IdentityConflicts", "IdentifiersRejected", "SendsRequested", "SendsRouted", "SmsFallbacks",
        "SendsUndeliverable", "ProviderErrors", "SendsRetried", "RegistryInvalid",
    ):  # fmt: skip
        assert metric in body, metric
