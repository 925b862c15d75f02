"""The one secret scanner (skitflow.util.redact): names, shapes, environment values, masking."""

from __future__ import annotations

import time

import pytest

from skitflow.util.redact import (
    MASK,
    Scanner,
    environment_secrets,
    find_secrets,
    is_secret_name,
    looks_random,
    redact,
)

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwidG9rZW5fdHlwZSI6InJlZnJl"
       "c2gifQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
GITHUB = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.mark.parametrize("name", [
    "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "KFP_TOKEN", "api_key",
    "LABEL_STUDIO_API_KEY", "GPG_PASSPHRASE", "MY_PRIVATE_THING", "KFP_COOKIE", "DB_PWD",
    "SMTP_PASS", "SENTRY_DSN", "HTTP_AUTH", "HTTP_AUTHORIZATION", "GOOGLE_CREDENTIALS",
])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["HOME", "PWD", "OLDPWD", "DATA_DIR", "REGION", "PASSAGE_DIR",
                                  "KFP_HOST", "DATABASE_URL", "PATH"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(("text", "kind", "secret"), [
    ("postgresql://app:s3cr3t-Pw@db:5432/x", "a password in a URL", "s3cr3t-Pw"),
    ("postgresql+psycopg://u:p@ss@h/db", "a password in a URL", "p@ss"),
    ("redis://:onlypass@cache:6379/0", "a password in a URL", "onlypass"),
    (f"refresh={JWT}", "a JSON web token", JWT),
    ("key AKIAIOSFODNN7EXAMPLE used", "an AWS access key id", "AKIAIOSFODNN7EXAMPLE"),
    (f"push with {GITHUB}", "a GitHub token", GITHUB),
    ("xoxb-123456789012-abcdefghij", "a Slack token", "xoxb-123456789012-abcdefghij"),
    ("AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6", "a Google API key",
     "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"),
    ("sk_live_a1B2c3D4e5F6g7H8i9J0", "an API secret key", "sk_live_a1B2c3D4e5F6g7H8i9J0"),
    ("Authorization: Bearer abc.def-123_456", "an Authorization header value", "abc.def-123_456"),
    ("host=db password=hunter22 user=u", "a secret parameter", "hunter22"),
    ("https://h/x?X-Amz-Signature=0badc0ffee&b=1", "a secret parameter", "0badc0ffee"),
])
def test_credential_shapes_are_found(text: str, kind: str, secret: str) -> None:
    found = find_secrets(text, {})
    assert (kind, secret) in [(f.kind, f.value) for f in found]
    assert secret not in redact(text, environ={})


def test_a_private_key_block_is_found_whole() -> None:
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----"
    assert redact(f"key:\n{block}\nrest", environ={}) == f"key:\n{MASK}\nrest"


@pytest.mark.parametrize("text", [
    "s3://datasets/intent-classifier/2024-01-01/clean.parquet",
    "export DATABASE_URL=postgresql+psycopg://USER:PASSWORD@HOST:5432/DB",  # a hint's stand-ins
    "the API token in `LABEL_STUDIO_API_KEY` is empty",
    "sent: a bearer token (--token / KFP_TOKEN)",
    "https://user@example.org/path",
])
def test_ordinary_text_has_no_secret(text: str) -> None:
    assert find_secrets(text, {}) == []
    assert redact(text, environ={}) == text


@pytest.mark.parametrize("value", [
    "k7Qz2R9vXw4Lp0Tn8Ys3Bd6Hf1Jm5Gc+a9Ue",  # AWS-secret-like
    "Xq3bKz9LmN0pQrStUvWx12",  # token_urlsafe(16)-like
    "eeNiF9T7ZdyrSpgch5qH3EdW6OLSq8eu",
])
def test_random_looking_strings(value: str) -> None:
    assert looks_random(value)
    assert find_secrets(f"x {value} y", {}, random_strings=True)
    assert not find_secrets(f"x {value} y", {})  # only when asked: logs keep their words


@pytest.mark.parametrize("value", [
    "d3cb2cf7db3357e1b957dde0e9302e73676a38a1",  # a git commit: hex is not flagged
    "550e8400-e29b-41d4-a716-446655440000",  # a UUID
    "ThisIsMyCamelCaseIdentifier123", "TrainingDataset2024Q1Version3",
    "xgboost-2024-01-01T12-00-00Z", "skitflow_runtime_component_name",
])
def test_ordinary_long_strings_do_not_look_random(value: str) -> None:
    assert not looks_random(value)
    assert not find_secrets(value, {}, random_strings=True)


def test_environment_secrets_by_name_and_inside_values() -> None:
    environ = {"DB_PASSWORD": "hunter2", "DATABASE_URL": "postgresql://u:Pw-9f3k@h/db",
               "HOME": "/home/u", "FEATURE_TOKEN_ENABLED": "true", "SHORT_KEY": "ab"}
    found = {(f.kind, f.value) for f in environment_secrets(environ)}
    assert found == {("the value of `DB_PASSWORD`", "hunter2"),
                     ("a password in a URL", "Pw-9f3k")}
    text = "connect as hunter2 with Pw-9f3k, or Pw%2D9f3k, from /home/u: true ab"
    assert redact(text, environ=environ) == "connect as *** with ***, or Pw%2D9f3k, from /home/u: true ab"
    assert [f.kind for f in Scanner(environ).environment_values_in("x hunter2")] == [
        "the value of `DB_PASSWORD`"]


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKITFLOW_TEST_SECRET", "v4lue-from-env")
    assert redact("got v4lue-from-env") == "got ***"
    assert find_secrets("got v4lue-from-env")[0].kind == "the value of `SKITFLOW_TEST_SECRET`"


def test_extra_values_are_masked_in_their_url_encoded_forms_longest_first() -> None:
    text = "tok-123456 and tok-123456789 and p%40ss%2Fword and p%40ss%2Fword"
    assert redact(text, ["tok-123456", "tok-123456789", "p@ss/word", None, "ab"], environ={}) == (
        "*** and *** and *** and ***")


def test_a_secret_named_value_is_masked_even_when_it_reads_like_a_stand_in() -> None:
    assert redact("the password is password", environ={"DB_PASSWORD": "password"}) == (
        "the *** is ***")


@pytest.mark.parametrize("text", [
    "y" * 100_000, "y." * 50_000, "a " * 50_000, "a://" * 25_000, "x://u:p@" * 12_000,
    "password" * 12_000, "eyJaaaa." * 12_000, "Bearer " * 14_000, "-----BEGIN RSA PRIVATE KEY-----"
    * 3_000, ":@" * 50_000, "ghp_" * 25_000, "xAa1" * 25_000, "a=" * 50_000,
])
def test_scanning_is_linear_on_hostile_text(text: str) -> None:
    started = time.perf_counter()
    find_secrets(text, {}, random_strings=True)
    redact(text, environ={})
    assert time.perf_counter() - started < 1.0
