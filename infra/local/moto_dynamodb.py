"""Two speed fixes for the emulator's DynamoDB (moto), applied by the local stack and the emulated test
account. ``tests/adapters/test_moto_dynamodb.py`` checks each gives moto's answers.

- moto's ``TransactWriteItems`` deep-copies every table a transaction names before it starts, to roll
  back if one of its requests fails: each transaction costs O(items in the table). Ingest commits every
  provider event in one transaction and the contacts import one per record, so the local stack slowed
  down as its table filled (a 100-record import batch took 18 s on a table of a few hundred items, and
  a 100,000-row import could not finish). This keeps moto's semantics (the same checks, in the same
  order, the same errors and cancellation reasons) but remembers only the items the transaction
  touches, just before it touches each, and puts those back on a rollback.
- moto checks the 400 KB item limit on each attribute set by measuring the whole item again: building
  an item of n attributes costs O(n^2) size computations. ``SizedAttributes`` keeps the running total
  (recomputed after any other change) and refuses exactly what moto refuses.
"""

from __future__ import annotations

import copy
from typing import Any

_OPERATIONS = {"ConditionCheck", "Put", "Delete", "Update"}


ITEM_LIMIT = 405000  # moto's: between DynamoDB's documented 400 KB and the 409-410 KB it really takes


def speed_up() -> None:
    """Give moto's DynamoDB backend the ``transact_write_items`` below, and its items the running size
    (idempotent)."""
    from moto.dynamodb.models import DynamoDBBackend, dynamo_type

    if getattr(DynamoDBBackend, "_moto_transact_write_items", None) is not None:
        return
    DynamoDBBackend._moto_transact_write_items = DynamoDBBackend.transact_write_items  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    dynamo_type._moto_limited_size_dict = dynamo_type.LimitedSizeDict  # type: ignore[attr-defined]
    dynamo_type.LimitedSizeDict = sized_attributes_class()  # type: ignore[misc]


def sized_attributes_class() -> type:
    """moto's ``LimitedSizeDict`` with a running size: the same refusals, O(1) per attribute set."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    def size_of(value: Any) -> int:
        return int(value.size()) if type(value) is DynamoType else int(bytesize(str(value)))

    class SizedAttributes(LimitedSizeDict):  # type: ignore[misc]
        _total: int | None = None

        def __setitem__(self, key: str, value: Any) -> None:
            if self._total is None:  # built by ``update`` or changed some other way: measure once
                self._total = sum(size_of(k) + size_of(v) for k, v in self.items())
            added = int(bytesize(key)) + size_of(value)
            if self._total + added > ITEM_LIMIT:  # as moto: the old value of ``key`` still counted
                raise ItemSizeTooLarge
            if key in self:
                self._total -= size_of(key) + size_of(dict.__getitem__(self, key))
            dict.__setitem__(self, key, value)
            self._total += added

        def _changed(self) -> None:
            self._total = None

        def __delitem__(self, key: str) -> None:
            dict.__delitem__(self, key)
            self._changed()

        def pop(self, *args: Any) -> Any:
            self._changed()
            return dict.pop(self, *args)

        def update(self, *args: Any, **kwargs: Any) -> None:
            self._changed()
            dict.update(self, *args, **kwargs)

        def clear(self) -> None:
            self._changed()
            dict.clear(self)

        def setdefault(self, *args: Any) -> Any:
            self._changed()
            return dict.setdefault(self, *args)

        def popitem(self) -> Any:
            self._changed()
            return dict.popitem(self)

        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            copied = type(self)()
            dict.update(copied, {k: copy.deepcopy(v, memo) for k, v in self.items()})
            return copied

    return SizedAttributes


def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's ``transact_write_items``, with a rollback of the touched items instead of whole tables."""
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    touched: list[tuple[Any, Any, Any, Any]] = []  # (table, hash value, range value, item before)
    targets: set[tuple[str, str]] = set()
    errors: list[tuple[Any, Any, Any]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        original: dict[str, Any] | None = None
        try:
            op_type, op = next(iter(entry.items()))
            if op_type not in _OPERATIONS:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            key = _key(backend, op_type, op)
            target = (str(table_name), str(dict(sorted(key.items()))))
            if target in targets:
                raise MultipleTransactionsException()
            targets.add(target)
            current = backend.get_item(table_name, key)
            if not _condition_holds(op, current):
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    original = current.to_json()["Attributes"]
                raise ConditionalCheckFailed(item=original)
            table = backend.get_table(table_name)
            hash_value, range_value = backend.get_keys_value(table, key)
            touched.append((table, hash_value, range_value, copy.deepcopy(current)))
            _apply(backend, op_type, op, key)
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            _roll_back(touched)
            raise
        except ConditionalCheckFailed as exc:
            errors.append(("ConditionalCheckFailed", str(exc.message), original))
        except Exception as exc:
            errors.append((type(exc).__name__, str(exc), original))
    if any(code is not None for code, _, _ in errors):
        _roll_back(touched)
        raise TransactionCanceledException(errors)


def _key(backend: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _condition_holds(op: dict[str, Any], current: Any) -> bool:
    from moto.dynamodb.comparisons import get_filter_expression

    condition = op.get("ConditionExpression")
    if condition is None:
        return True
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    return bool(get_filter_expression(condition, names, values).expr(current))


def _apply(backend: Any, op_type: str, op: dict[str, Any], key: dict[str, Any]) -> None:
    table_name = op["TableName"]
    condition = {
        "condition_expression": op.get("ConditionExpression"),
        "expression_attribute_names": op.get("ExpressionAttributeNames"),
        "expression_attribute_values": op.get("ExpressionAttributeValues"),
    }
    if op_type == "Put":
        backend.put_item(table_name, op["Item"], **condition)
    elif op_type == "Delete":
        backend.delete_item(table_name, key, **condition)
    elif op_type == "Update":
        backend.update_item(table_name, key, update_expression=op["UpdateExpression"], **condition)


def _roll_back(touched: list[tuple[Any, Any, Any, Any]]) -> None:
    """Each touched item as it was before the transaction, the last touched first."""
    for table, hash_value, range_value, before in reversed(touched):
        if before is None:
            if table.get_item(hash_value, range_value) is not None:
                table.delete_item(hash_value, range_value)
        elif range_value is not None:
            table.items[hash_value][range_value] = before
        else:
            table.items[hash_value] = before
