"""The one phone normaliser and the one BSUID validator (contract I1, I2)."""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroute import ids
from crossroute.ids import InvalidIdentifier

# Contract I2, restated independently of crossroute.ids.
CONTRACT_BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9]{1,128}$")
CONTRACT_PARENT = re.compile(r"^[A-Z]{2}\.ENT\.[A-Za-z0-9]{1,128}$")
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _example_numbers() -> list[str]:
    """Valid E.164 numbers from every region phonenumbers knows (mobile and fixed line)."""
    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    numbers = (
        phonenumbers.example_number_for_type(region, kind)
        for region in sorted(phonenumbers.SUPPORTED_REGIONS)
        for kind in kinds
    )
    return sorted({phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) for n in numbers if n})


VALID_E164 = _example_numbers()


@st.composite
def written_forms(draw: st.DrawFn) -> tuple[str, str]:
    """A valid E.164 number and one way a person or a system might write it."""
    number = draw(st.sampled_from(VALID_E164))
    digits = number[1:]
    separators = st.sampled_from(["", "", " ", "-", ".", " - "])
    body = "".join(d + draw(separators) for d in digits).rstrip(" -.")
    if draw(st.booleans()):  # an area code in parentheses: "+1 (650) 555-1234"
        country = str(phonenumbers.parse(number).country_code)
        rest = digits[len(country) :]
        body = f"{country} ({rest[:3]}) {rest[3:]}"
    prefix = draw(st.sampled_from(["+", "+ ", "00", "00 "]))
    padding = draw(st.sampled_from(["", " ", "\t"]))
    return number, f"{padding}{prefix}{body}{padding}"


# --- I1: one key per phone number -------------------------------------------------------------------------


def test_the_three_spellings_in_the_contract_are_one_key() -> None:
    assert {ids.e164("16505551234"), ids.e164("+1 650-555-1234"), ids.e164("001 650 555 1234")} == {
        "+16505551234"
    }


@pytest.mark.parametrize(
    ("written", "region", "expected"),
    [
        ("(650) 555-1234", "US", "+16505551234"),
        ("650.555.1234", "US", "+16505551234"),
        ("+1 (650) 555-1234", "US", "+16505551234"),
        ("whatsapp:+14155550142", "US", "+14155550142"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 (0)20 7946 0958", "US", "+442079460958"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("4915123456789", "US", "+4915123456789"),  # a wa_id read as text: international without "+"
    ],
)
def test_national_and_decorated_forms_normalise(written: str, region: str, expected: str) -> None:
    assert ids.e164(written, region) == expected


@settings(max_examples=400, deadline=None)
@given(written_forms(), st.sampled_from(["US", "DE", "BR", "GB", "IN"]))
def test_any_formatting_of_a_valid_number_normalises_to_it(
    form: tuple[str, str], default_region: str
) -> None:
    number, written = form
    assert ids.e164(written, default_region) == number


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID_E164))
def test_normalising_is_idempotent(number: str) -> None:
    assert ids.e164(ids.e164(number)) == ids.e164(number) == number


@pytest.mark.parametrize("garbage", ["", "   ", "abc", "12", "+", "00", "US.13491208655302741918", "+1 650"])
def test_what_is_not_a_phone_number_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidIdentifier):
        ids.e164(garbage)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_e164_returns_plus_and_digits_or_refuses(text: str) -> None:
    try:
        normalised = ids.e164(text)
    except InvalidIdentifier:
        return
    assert re.fullmatch(r"\+[1-9]\d{1,14}", normalised)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True), st.booleans())
def test_a_wa_id_is_its_digits_with_a_plus(digits: str, with_plus: bool) -> None:
    assert ids.e164_from_wa_id(("+" if with_plus else "") + digits) == "+" + digits


@pytest.mark.parametrize(
    "bad", ["", "123456", "1234567890123456", "1650555123a", "+1 650 555 1234", "US.1", "0165055512"]
)
def test_a_malformed_wa_id_is_refused(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        ids.e164_from_wa_id(bad)


# --- I2: BSUIDs and parent BSUIDs, verbatim --------------------------------------------------------------


@settings(max_examples=300)
@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
    st.text(ALNUM, min_size=1, max_size=128),
)
def test_a_well_formed_bsuid_is_kept_verbatim(country: str, rest: str) -> None:
    value = f"{country}.{rest}"
    assert ids.bsuid(value) == value
    assert ids.bsuid(f"whatsapp:{value}") == value  # Twilio's address form


@settings(max_examples=300)
@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
    st.text(ALNUM, min_size=1, max_size=128),
)
def test_a_well_formed_parent_bsuid_is_kept_verbatim(country: str, rest: str) -> None:
    value = f"{country}.ENT.{rest}"
    assert ids.parent_bsuid(value) == value
    assert ids.parent_bsuid(f"whatsapp:{value}") == value


@pytest.mark.parametrize(
    "bad",
    [
        "US." + "1" * 129,  # 129 alphanumerics: one too many
        "us.13491208655302741918",  # lowercase country
        "USA.13491208655302741918",
        "U.13491208655302741918",
        "US.",
        "US",
        "US-13491208655302741918",
        "US.1349 1208",
        "US.1349-1208",
        "US.ENT.1",  # a parent BSUID, not a BSUID
        "US.\uff11\uff12\uff13",  # fullwidth digits are not ASCII alphanumerics
        "13491208655302741918",
    ],
)
def test_a_malformed_bsuid_is_refused(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        ids.bsuid(bad)


@pytest.mark.parametrize(
    "bad", ["US.ENT." + "1" * 129, "us.ENT.1", "US.ent.1", "US.ENT.", "US.1", "US.ENT.1.2", "US.ENTX1"]
)
def test_a_malformed_parent_bsuid_is_refused(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        ids.parent_bsuid(bad)


def test_the_longest_bsuid_allowed_is_128_characters_after_the_dot() -> None:
    assert ids.bsuid("US." + "a" * 128) == "US." + "a" * 128
    assert ids.parent_bsuid("US.ENT." + "Z" * 128) == "US.ENT." + "Z" * 128


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=140),
        st.builds(lambda c, r: f"{c}.{r}", st.text(max_size=3), st.text(max_size=130)),
        st.builds(lambda c, r: f"{c}.ENT.{r}", st.text(max_size=3), st.text(max_size=130)),
    )
)
def test_validators_accept_exactly_the_contract_patterns(value: str) -> None:
    for check, pattern in ((ids.bsuid, CONTRACT_BSUID), (ids.parent_bsuid, CONTRACT_PARENT)):
        candidate = ids.strip_channel_prefix(value.strip())
        try:
            accepted = check(value)
        except InvalidIdentifier:
            assert not pattern.fullmatch(candidate)
        else:
            assert accepted == candidate
            assert pattern.fullmatch(accepted)


def test_a_value_is_never_both_a_bsuid_and_a_parent() -> None:
    assert ids.is_bsuid("US.123") and not ids.is_bsuid("US.ENT.123")
    assert ids.parent_bsuid("US.ENT.123") == "US.ENT.123"


def test_only_the_whatsapp_channel_prefix_is_stripped() -> None:
    assert ids.strip_channel_prefix("whatsapp:+15550100003") == "+15550100003"
    assert ids.strip_channel_prefix("whatsapp:US.1") == "US.1"
    assert ids.strip_channel_prefix("+15550100002") == "+15550100002"
    assert ids.strip_channel_prefix("messenger:123") == "messenger:123"


# --- I12: one normaliser for writes and reads ----------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.from_regex(r"[1-9][0-9]{6,14}", fullmatch=True))
def test_a_wa_id_is_found_again_when_read_back_as_plus_digits_or_digits(digits: str) -> None:
    """What the store keeps for Meta's wa_id is what the read API makes of ``?phone=+<wa_id>`` (and of
    the bare digits, as a ``+`` that was not URL-encoded arrives), whatever range the library knows."""
    stored = ids.e164_from_wa_id(digits)
    assert stored == "+" + digits
    assert ids.e164("+" + digits) == stored
    if not _valid_national(digits, "US"):  # else bare digits are that national number, as before
        assert ids.e164(digits, "US") == stored


def _valid_national(digits: str, region: str) -> bool:
    import phonenumbers

    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(digits, region)))
    except phonenumbers.NumberParseException:
        return False


@pytest.mark.parametrize("wa_id", ["785165291048", "4210301134", "99912345678", "2250707000000"])
def test_wa_ids_the_library_would_rewrite_or_refuse_are_kept_as_meta_wrote_them(wa_id: str) -> None:
    assert ids.e164_from_wa_id(wa_id) == ids.e164("+" + wa_id) == ids.e164(wa_id) == "+" + wa_id
