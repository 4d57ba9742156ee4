"""The emulator's ``TransactWriteItems`` (``infra/local/moto_dynamodb.py``) answers as moto's own does and
leaves the same table, for transactions that succeed, fail a condition (with and without the old item),
name one item twice, or carry an invalid update; and a failed one leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends

from infra.local import moto_dynamodb

ACCOUNT, REGION = "123456789012", "us-east-1"


def item(pk: str, **attributes: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": "A"}, **{k: {"S": v} for k, v in attributes.items()}}


def put(table: str, pk: str, condition: str | None = None, **attributes: str) -> dict[str, Any]:
    op: dict[str, Any] = {"TableName": table, "Item": item(pk, **attributes)}
    if condition:
        op["ConditionExpression"] = condition
    return {"Put": op}


def update(
    table: str, pk: str, expression: str, condition: str | None = None, **values: str
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": pk}, "sk": {"S": "A"}},
        "UpdateExpression": expression,
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    if values:
        op["ExpressionAttributeValues"] = {f":{k}": {"S": v} for k, v in values.items()}
    if condition:
        op["ConditionExpression"] = condition
    return {"Update": op}


def transactions(table: str) -> list[list[dict[str, Any]]]:
    """A history: each transaction sees what the ones before it left."""
    return [
        [put(table, "a", "attribute_not_exists(pk)", v="1"), put(table, "b", v="1")],
        [put(table, "c", v="1"), put(table, "a", "attribute_not_exists(pk)", v="2")],  # fails: a exists
        [update(table, "a", "SET v = :v", "v = :old", v="3", old="9")],  # fails, with the old item
        [update(table, "b", "SET v = :v", v="2"), {"Delete": {"TableName": table, "Key": item("a")}}],
        [put(table, "d", v="1"), put(table, "d", v="2")],  # one item twice: refused whole
        [put(table, "e", v="1"), update(table, "b", "SET v = v + :v", v="x")],  # an invalid update
        [
            {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": item("b"),
                    "ConditionExpression": "v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "2"}},
                }
            },
            put(table, "f", v="1"),
        ],
    ]


@pytest.fixture
def backend() -> Iterator[DynamoDBBackend]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        for name in ("moto", "ours"):
            client.create_table(
                TableName=name,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk")],
                BillingMode="PAY_PER_REQUEST",
            )
        yield dynamodb_backends[ACCOUNT][REGION]


def outcome(call: Callable[[], None]) -> Any:
    try:
        call()
    except Exception as exc:
        return type(exc).__name__, str(exc).replace("ours", "moto")
    return "ok"


def contents(backend: DynamoDBBackend, table: str) -> list[Any]:
    return sorted((i.hash_key.value, i.to_json()) for i in backend.get_table(table).all_items())


def test_both_answer_alike_and_leave_the_same_table(backend: DynamoDBBackend) -> None:
    original = getattr(DynamoDBBackend, "_moto_transact_write_items", DynamoDBBackend.transact_write_items)
    answers = []
    for theirs, ours in zip(transactions("moto"), transactions("ours"), strict=True):
        answers.append(
            (
                outcome(lambda t=theirs: original(backend, t)),
                outcome(lambda o=ours: moto_dynamodb.transact_write_items(backend, o)),
            )
        )
    assert [a for a, _ in answers] == [b for _, b in answers]
    failed = [i for i, (a, _) in enumerate(answers) if a != "ok"]
    assert failed == [1, 2, 4, 5]  # the cases meant to fail, and only they
    assert "ConditionalCheckFailed" in answers[1][1][1] and '"Item"' in answers[2][1][1]
    assert contents(backend, "moto") == contents(backend, "ours")
    assert {key for key, _ in contents(backend, "ours")} == {"b", "f"}  # a deleted; c, d, e rolled back


def test_the_local_stack_and_the_test_account_use_it() -> None:
    moto_dynamodb.speed_up()
    moto_dynamodb.speed_up()  # idempotent
    assert DynamoDBBackend.transact_write_items is moto_dynamodb.transact_write_items
    assert DynamoDBBackend._moto_transact_write_items is not moto_dynamodb.transact_write_items  # type: ignore[attr-defined]


def test_items_are_refused_at_the_size_moto_refuses_them() -> None:
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType

    moto_dynamodb.speed_up()
    theirs = moto_dynamodb_original_class()
    ours = moto_dynamodb.sized_attributes_class()
    for filler in (1000, 200_000, 404_000, 405_100):
        verdicts = []
        for cls in (theirs, ours):
            attrs = cls({"pk": DynamoType({"S": "a"})})
            try:
                attrs["a"] = DynamoType({"S": "x" * (filler // 2)})
                attrs["a"] = DynamoType({"S": "y" * (filler // 2)})  # replaced: the old value still counts
                attrs["b"] = DynamoType({"S": "z" * (filler // 2)})
                del attrs["b"]
                attrs["c"] = DynamoType({"N": "1"})
                verdicts.append(("ok", sorted(attrs)))
            except ItemSizeTooLarge:
                verdicts.append(("too large", sorted(attrs)))
        assert verdicts[0] == verdicts[1], filler
    assert verdicts[0][0] == "too large"


def moto_dynamodb_original_class() -> type:
    from moto.dynamodb.models import dynamo_type

    return getattr(dynamo_type, "_moto_limited_size_dict", dynamo_type.LimitedSizeDict)
