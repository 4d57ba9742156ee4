"""The registry's JSON Schema: one file in docs/ and its copy in the package, the package's validator agreeing
with ``jsonschema`` over good and bad documents, and the dataclasses agreeing with the schema."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from crossroute import registry_schema
from crossroute.registry_schema import Location, SchemaError, errors, supported
from crossroute.tenants import MetaChannel, MetaNumber, Tenant, TenantRegistry, TwilioChannel
from tests.support import LOCAL_TENANT, REPO

DOCS_SCHEMA = REPO / "docs" / "registry.schema.json"
SCHEMA = json.loads(DOCS_SCHEMA.read_text())
MARKER = "s3cr3t-Value"  # in the documents below; never in a problem's message

# Every field set, the previous secrets included.
FULL_TENANT: dict[str, Any] = {
    "default_region": "GB",
    "channel_preference": ["sms", "whatsapp"],
    "meta": {
        **LOCAL_TENANT["meta"],  # type: ignore[dict-item]
        "previous_app_secret": "old",
        "phone_numbers": [{"phone_number_id": "1", "display_phone_number": "1555", "coexistence": True}],
    },
    "twilio": {
        **LOCAL_TENANT["twilio"],  # type: ignore[dict-item]
        "previous_auth_token": "old",
        "messaging_service_sids": ["MG1"],
    },
}


def test_the_package_ships_the_schema_in_docs_byte_for_byte() -> None:
    assert registry_schema.SCHEMA_FILE.read_bytes() == DOCS_SCHEMA.read_bytes(), (
        "copy docs/registry.schema.json to layers/crossroute/crossroute/registry.schema.json"
    )


def test_the_schema_is_valid_draft_2020_12_and_uses_only_what_the_package_validates() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert registry_schema.schema() == SCHEMA


@pytest.mark.parametrize(
    ("schema", "complaint"),
    [
        ({"type": "object", "properties": {"a": {"format": "email"}}}, "keywords not validated: format"),
        ({"type": "integer"}, "type must be one of"),
        ({"type": ["string", "null"]}, "type must be one of"),
        ({"$ref": "https://example.com/other.json"}, "only references within the schema"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"items": True}, "a schema must be an object"),
        ({"additionalProperties": False}, "a schema must be an object"),
    ],
)
def test_a_schema_saying_more_than_is_validated_is_refused(schema: dict[str, Any], complaint: str) -> None:
    with pytest.raises(SchemaError, match=complaint):
        supported(schema)


def test_the_local_tenant_and_every_field_conform() -> None:
    doc = {"tenants": {"demo": LOCAL_TENANT, "full": FULL_TENANT}, "unused": "generated"}
    assert list(errors(doc)) == []
    assert list(Draft202012Validator(SCHEMA).iter_errors(doc)) == []


# ---------------------------------------------------------------- the validator agrees with jsonschema


def jsonschema_locations(doc: Any) -> set[Location]:
    """Where ``jsonschema`` finds problems; a missing required key at the key, as ``errors`` reports it."""
    found: set[Location] = set()
    for error in Draft202012Validator(SCHEMA).iter_errors(doc):
        at = tuple(error.absolute_path)
        if error.validator == "required":
            found |= {(*at, name) for name in error.validator_value if name not in error.instance}
        else:
            found.add(at)
    return found


def verdicts(locations: set[Location]) -> tuple[bool, set[str]]:
    """(is the document itself unusable, the tenants left out) for problems at ``locations``."""
    document = any(len(at) < 2 or at[0] != "tenants" for at in locations)
    return document, {str(at[1]) for at in locations if len(at) >= 2 and at[0] == "tenants"}


def assert_agree(doc: Any) -> None:
    ours = list(errors(doc))
    assert {at for at, _ in ours} == jsonschema_locations(doc), json.dumps(doc)
    assert not any(MARKER in message for _, message in ours)
    document, left_out = verdicts({at for at, _ in ours})
    try:
        registry = TenantRegistry.from_json(json.dumps(doc))
    except ValueError:
        assert document or (left_out and left_out >= set(doc["tenants"])), json.dumps(doc)
    else:
        assert not document
        # from_json also leaves out a tenant claiming an address an earlier one holds; none do here.
        assert {t.id for t in registry.tenants} == set(doc["tenants"]) - left_out


BAD_DOCUMENTS: list[Any] = [
    [],
    "tenants",
    None,
    {},
    {"tenants": []},
    {"tenants": None},
    {"tenant": {"demo": LOCAL_TENANT}},
    {"tenants": {"a": []}},
    {"tenants": {"a": {"meta": {}}}},
    {"tenants": {"a": {"meta": {"app_secret": "", "verify_token": MARKER}}}},
    {"tenants": {"a": {"twilio": {"account_sid": "AC", "auth_token": "t", "sms_numbers": MARKER}}}},
    {"tenants": {"a": {"twilio": {"account_sid": "AC", "auth_token": "t", "sms_numbers": [MARKER, 1]}}}},
    {"tenants": {"a": {"default_region": "US\n"}, "b": {"default_region": "us"}, "c": {"default_region": 1}}},
    {"tenants": {"a": {"channel_preference": []}, "b": {"channel_preference": ["sms", "sms"]}}},
    {"tenants": {"a": {"channel_preference": [1, 1.0]}, "b": {"channel_preference": [True, 1]}}},
    {"tenants": {"a": {"meta": {"app_secret": "s", "verify_token": "v", "phone_numbers": [{}, 5]}}}},
    {"tenants": {"ok": LOCAL_TENANT, "bad": {"meta": {**FULL_TENANT["meta"], "previous_app_secret": None}}}},
    {"tenants": {"ok": LOCAL_TENANT, "bad": {"twilio": {**FULL_TENANT["twilio"], "previous_auth_token": 0}}}},
]


@pytest.mark.parametrize("doc", BAD_DOCUMENTS, ids=range(len(BAD_DOCUMENTS)))
def test_the_validator_and_jsonschema_agree_on_hand_written_documents(doc: Any) -> None:
    assert_agree(doc)


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.floats(allow_nan=False, allow_infinity=False, width=16)
    | st.sampled_from(["", "US", "us", "USA", "US\n", "whatsapp", "sms", "fax", MARKER])
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "sms", MARKER]), inner, max_size=2)
    ),
    max_leaves=6,
)


def _locations(value: Any, at: Location = ()) -> list[Location]:
    """Every location inside ``value``, its root included."""
    found = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _locations(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _locations(item, (*at, index))
    return found


@st.composite
def mutated_tenants(draw: st.DrawFn) -> Any:
    """A conforming tenant with one to three changes: a value replaced, a key removed or a key added."""
    tenant = copy.deepcopy(draw(st.sampled_from([LOCAL_TENANT, FULL_TENANT])))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(_locations(tenant)))
        if not at:
            return draw(JSON_VALUES)
        parent: Any = tenant
        for step in at[:-1]:
            parent = parent[step]
        change = draw(st.sampled_from(["replace", "remove", "add"]))
        if change == "remove" and isinstance(parent, dict):
            del parent[at[-1]]
        elif change == "add" and isinstance(parent[at[-1]], dict):
            parent[at[-1]][draw(st.sampled_from(["previous_app_secret", "coexistence", "x"]))] = draw(
                JSON_VALUES
            )
        else:
            parent[at[-1]] = draw(JSON_VALUES)
    return tenant


@settings(max_examples=400, deadline=None)
@given(mutated_tenants(), st.booleans())
def test_the_validator_and_jsonschema_agree_on_mutated_tenants(tenant: Any, with_a_good_one: bool) -> None:
    tenants = {"mutant": tenant, **({"good": {"default_region": "US"}} if with_a_good_one else {})}
    assert_agree({"tenants": tenants})


# ---------------------------------------------------------------- the dataclasses agree with the schema

DATACLASSES = [("tenant", Tenant, {"id"}), ("meta", MetaChannel, set()), ("meta_number", MetaNumber, set())]
DATACLASSES.append(("twilio", TwilioChannel, set()))


@pytest.mark.parametrize(("definition", "cls", "not_in_the_document"), DATACLASSES)
def test_every_schema_property_is_a_dataclass_field_with_the_schemas_default(
    definition: str, cls: type, not_in_the_document: set[str]
) -> None:
    properties = SCHEMA["$defs"][definition]["properties"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(properties) == set(fields) - not_in_the_document
    for name, prop in properties.items():
        if "default" in prop:
            default = prop["default"]
            assert fields[name].default == (tuple(default) if isinstance(default, list) else default), name
    required = set(SCHEMA["$defs"][definition].get("required", ()))
    assert required == {
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and name not in not_in_the_document
    }
