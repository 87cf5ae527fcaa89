"""The webhook signature scheme, secrets at rest and the retry rules, without I/O."""

from __future__ import annotations

import hashlib
import hmac
import pickle
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from soniq.errors import (
    INVALID_ARGUMENT,
    INVALID_SETTING,
    WEBHOOK_DELIVERY_FAILED,
    SoniqError,
    WebhookDeliveryError,
)
from soniq.settings import SoniqSettings
from soniq.webhooks import sign_webhook, verify_webhook_signature
from soniq.webhooks.retry import backoff, is_retryable, is_success, retry_after
from soniq.webhooks.secrets import SecretUnreadable, seal, unseal

BODY = b'{"event":"order.paid","data":{"id":7}}'
NOW = 1_700_000_000


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(BODY, "s3cret", NOW) == "sha256=" + expected
    assert sign_webhook(BODY.decode(), b"s3cret", str(NOW)) == "sha256=" + expected


def test_verify_accepts_a_fresh_signature_and_rejects_every_change() -> None:
    sig = sign_webhook(BODY, "s3cret", NOW)
    assert verify_webhook_signature(BODY, sig, "s3cret", timestamp=NOW, now=NOW + 10)
    assert verify_webhook_signature(BODY.decode(), sig, "s3cret", timestamp=str(NOW), now=NOW)
    assert not verify_webhook_signature(BODY + b"x", sig, "s3cret", timestamp=NOW, now=NOW)
    assert not verify_webhook_signature(BODY, sig, "other", timestamp=NOW, now=NOW)
    assert not verify_webhook_signature(BODY, sig, "s3cret", timestamp=NOW + 1, now=NOW)
    assert not verify_webhook_signature(BODY, sig[:-1], "s3cret", timestamp=NOW, now=NOW)
    assert not verify_webhook_signature(BODY, None, "s3cret", timestamp=NOW, now=NOW)
    assert not verify_webhook_signature(BODY, sig, "s3cret", timestamp=None, now=NOW)
    assert not verify_webhook_signature(BODY, sig, "s3cret", timestamp="12a", now=NOW)


def test_verify_rejects_stale_and_future_timestamps_within_the_tolerance() -> None:
    sig = sign_webhook(BODY, "k", NOW)
    assert not verify_webhook_signature(BODY, sig, "k", timestamp=NOW, now=NOW + 301)
    assert not verify_webhook_signature(BODY, sig, "k", timestamp=NOW, now=NOW - 301)
    assert verify_webhook_signature(BODY, sig, "k", timestamp=NOW, now=NOW + 3000, tolerance=3600)
    assert verify_webhook_signature(BODY, sig, "k", timestamp=NOW, now=NOW + 10**6, tolerance=None)


def test_verify_without_timestamp_says_to_pass_it() -> None:
    sig = sign_webhook(BODY, "k", NOW)
    with pytest.raises(SoniqError) as err:
        verify_webhook_signature(BODY, sig, "k")  # the original's three-argument call
    assert err.value.code == INVALID_ARGUMENT
    assert "X-Webhook-Timestamp" in err.value.message


def test_secrets_are_sealed_with_the_key_and_readable_with_any_rotated_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = seal("s3cret", SecretStr(old))
    assert stored.startswith("fernet:") and "s3cret" not in stored
    assert unseal(stored, SecretStr(old)) == "s3cret"
    assert unseal(stored, SecretStr(f"{new},{old}")) == "s3cret"
    with pytest.raises(SecretUnreadable, match="another key"):
        unseal(stored, SecretStr(new))
    with pytest.raises(SecretUnreadable, match="not set"):
        unseal(stored, None)
    assert seal("s3cret", None) == "plain:s3cret"
    assert unseal("plain:s3cret", SecretStr(new)) == "s3cret"
    assert unseal(None, None) is None


def test_a_bad_secret_key_is_an_invalid_setting() -> None:
    with pytest.raises(SoniqError) as err:
        seal("s3cret", SecretStr("not-a-fernet-key"))
    assert err.value.code == INVALID_SETTING
    assert err.value.details["setting"] == "SONIQ_WEBHOOK_SECRET_KEY"


def test_the_secret_key_setting_is_not_shown_in_reprs() -> None:
    settings = SoniqSettings.load({"SONIQ_WEBHOOK_SECRET_KEY": "abc"})
    assert settings.webhook_secret_key is not None
    assert settings.webhook_secret_key.get_secret_value() == "abc"
    assert "abc" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"SONIQ_WEBHOOK_TIMEOUT": "0"}, "SONIQ_WEBHOOK_TIMEOUT"),
        ({"SONIQ_WEBHOOK_RETRY_DELAY": "-1"}, "SONIQ_WEBHOOK_RETRY_DELAY"),
        ({"SONIQ_WEBHOOK_RETRY_MAX_DELAY": "inf"}, "SONIQ_WEBHOOK_RETRY_MAX_DELAY"),
    ],
)
def test_bad_webhook_settings_are_refused(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SoniqError) as err:
        SoniqSettings.load(env)
    assert (err.value.code, err.value.details["setting"]) == (INVALID_SETTING, setting)


def test_only_2xx_succeeds_and_only_5xx_and_429_are_retried() -> None:
    assert [s for s in (199, 200, 204, 299, 300) if is_success(s)] == [200, 204, 299]
    retried = [s for s in (301, 400, 401, 404, 409, 422, 429, 500, 502, 503) if is_retryable(s)]
    assert retried == [429, 500, 502, 503]


def test_backoff_doubles_up_to_the_cap_with_jitter_between_half_and_whole() -> None:
    assert [backoff(n, 60, 300, rand=lambda: 1.0) for n in (1, 2, 3, 4, 9)] == [
        60,
        120,
        240,
        300,
        300,
    ]
    assert backoff(1, 60, 300, rand=lambda: 0.0) == 30
    assert 30 <= backoff(1, 60, 300) <= 60
    assert backoff(10_000, 1, 5, rand=lambda: 1.0) == 5


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert retry_after("7") == 7.0
    assert retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert retry_after("999999999") == 86400.0
    assert retry_after(None) is None
    assert retry_after("soon") is None


def test_the_delivery_error_keeps_its_class_and_code_across_pickling() -> None:
    err = WebhookDeliveryError("HTTP 404", status_code=404)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is WebhookDeliveryError
    assert (copy.code, copy.message, copy.details) == (
        WEBHOOK_DELIVERY_FAILED,
        "HTTP 404",
        {"status_code": 404},
    )


@pytest.mark.parametrize("stamp", ["²", "١٢٣", "9" * 5000, " 12", "-5", ""])
def test_verify_answers_false_for_a_timestamp_that_is_not_plain_digits(stamp: str) -> None:
    signature = sign_webhook("{}", "s3cret", 1_700_000_000)
    assert verify_webhook_signature("{}", signature, "s3cret", timestamp=stamp) is False
    assert (
        verify_webhook_signature("{}", signature, "s3cret", timestamp=stamp, tolerance=None)
        is False
    )


@pytest.mark.parametrize("header", ["²", "٣", "9" * 5000])
def test_retry_after_ignores_a_header_that_is_not_plain_digits(header: str) -> None:
    assert retry_after(header) is None


def test_an_endpoints_repr_leaves_out_its_headers() -> None:
    from soniq.webhooks import WebhookEndpoint

    endpoint = WebhookEndpoint(
        id="e1",
        url="https://example.test/hook",
        events=None,
        active=True,
        max_retries=3,
        timeout_seconds=5.0,
        headers={"Authorization": "Bearer hunter2"},
        signed=False,
    )
    assert "hunter2" not in repr(endpoint)
    assert endpoint.headers["Authorization"] == "Bearer hunter2"
