"""Password policy, one-time codes (10 minutes, 5 tries), activation codes, scopes."""

from __future__ import annotations

import datetime as dt

import pytest

from carnet_identity.domain.credentials import (
    ACTIVATION_CODE_ALPHABET,
    ChallengeState,
    CodeAttempts,
    after_wrong_code,
    check_password_policy,
    ensure_code_usable,
    grant_scopes,
    looks_like_refresh_token,
    mask_email,
    mask_phone,
    new_activation_code,
    new_one_time_code,
    new_refresh_token,
    normalise_activation_code,
    refresh_token_digest,
    wrong_code_error,
)
from carnet_kit.errors import InvalidArgument, PermissionDenied, Unauthenticated

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_demo_password_satisfies_the_policy() -> None:
    check_password_policy("Carnet-demo-2026")
    check_password_policy("583920174629")


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short-1A!", "min_length"),
        ("x" * 129, "max_length"),
        ("aaaaaaaaaaaaaaaa", "variety"),
        ("Password2024!!", "common"),
        ("azertyuiop123", "common"),
        ("123456789012", "common"),
        ("motdepasse!!2026", "common"),
    ],
)
def test_password_policy_refuses_short_common_and_repetitive(password: str, rule: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_password_policy(password)
    assert caught.value.reason == "PASSWORD_TOO_WEAK"
    assert caught.value.metadata == {"field": "password", "rule": rule}


def test_password_policy_refuses_the_persons_own_data() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_password_policy("dupont-1956-secret", personal=["Dupont", "1956"])
    assert caught.value.metadata["rule"] == "personal"
    check_password_policy("grand-voilier-bleu", personal=["Dupont", "jd"])


def test_one_time_codes_are_six_digits_and_vary() -> None:
    codes = {new_one_time_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(codes) > 150


def test_a_code_is_usable_within_its_ten_minutes() -> None:
    challenge = CodeAttempts(ChallengeState.PENDING, NOW + dt.timedelta(minutes=10), attempts=0)
    ensure_code_usable(challenge, NOW + dt.timedelta(minutes=9, seconds=59))


def test_a_code_past_its_expiry_is_refused() -> None:
    challenge = CodeAttempts(ChallengeState.PENDING, NOW + dt.timedelta(minutes=10), attempts=0)
    with pytest.raises(Unauthenticated) as caught:
        ensure_code_usable(challenge, NOW + dt.timedelta(minutes=10))
    assert caught.value.reason == "ONE_TIME_CODE_EXPIRED"


def test_five_wrong_codes_lock_the_challenge() -> None:
    challenge = CodeAttempts(ChallengeState.PENDING, NOW + dt.timedelta(minutes=10), attempts=0)
    for tries_left in (4, 3, 2, 1):
        challenge = after_wrong_code(challenge)
        error = wrong_code_error(challenge)
        assert isinstance(error, Unauthenticated)
        assert error.metadata["remaining_attempts"] == str(tries_left)
        ensure_code_usable(challenge, NOW)
    challenge = after_wrong_code(challenge)
    assert challenge.state is ChallengeState.LOCKED
    assert isinstance(wrong_code_error(challenge), PermissionDenied)
    with pytest.raises(PermissionDenied) as caught:
        ensure_code_usable(challenge, NOW)
    assert caught.value.reason == "ONE_TIME_CODE_LOCKED"


@pytest.mark.parametrize("state", [ChallengeState.COMPLETED, ChallengeState.UNDELIVERABLE])
def test_a_used_or_undelivered_challenge_is_refused(state: ChallengeState) -> None:
    with pytest.raises(Unauthenticated) as caught:
        ensure_code_usable(CodeAttempts(state, NOW + dt.timedelta(minutes=10), attempts=0), NOW)
    assert caught.value.reason == "ONE_TIME_CODE_INVALID"


def test_activation_codes_use_an_unambiguous_alphabet() -> None:
    for _ in range(100):
        code = new_activation_code()
        assert len(code) >= 8
        assert set(code) <= set(ACTIVATION_CODE_ALPHABET)
    assert not set("0O1IL5S2Z8B") & set(ACTIVATION_CODE_ALPHABET)
    assert normalise_activation_code("ac-dE fg") == "ACDEFG"


def test_refresh_tokens_are_opaque_and_stored_as_digests() -> None:
    token = new_refresh_token()
    assert looks_like_refresh_token(token)
    assert not looks_like_refresh_token("eyJhbGciOi.x.y")
    assert len(refresh_token_digest(token)) == 32
    assert refresh_token_digest(token) != refresh_token_digest(new_refresh_token())


def test_grant_scopes_gives_all_when_none_asked_and_refuses_extra_ones() -> None:
    allowed = ("imaging.push", "documents.deposit")
    assert grant_scopes(allowed, []) == allowed
    assert grant_scopes(allowed, ["documents.deposit"]) == ("documents.deposit",)
    assert grant_scopes(allowed, ["imaging.push documents.deposit"]) == allowed
    with pytest.raises(PermissionDenied) as caught:
        grant_scopes(allowed, ["documents.deposit", "measurements.write"])
    assert caught.value.reason == "SCOPE_NOT_ALLOWED"
    assert caught.value.metadata["scopes"] == "measurements.write"


def test_destinations_are_masked() -> None:
    assert mask_email("camille.martin@demo.carnet.test") == "c***@demo.carnet.test"
    assert mask_phone("+33612345678") == "+33 6** ** ** 78"
