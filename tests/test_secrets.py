"""Secrets: given inline they are refused without being echoed anywhere; given by env/file they are read by one rule."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from ray_dispatch.core.errors import ConfigError, format_validation_error
from ray_dispatch.core.secrets import Secret, read_secret
from ray_dispatch.core.stores.redis_routing import RedisStore
from ray_dispatch.preflight import preflight

BASE: dict[str, Any] = {
    "router_class": "routers.SimpleDispatchRouter",
    "transport_names": ["sms", "xmpp", "web"],
    "exposed_names": ["app"],
    "route_mappings": {"sms": "app"},
}

PLACEHOLDER = "PLACEHOLDER-VALUE"


def inline_secret_configs(secret: str) -> list[dict[str, Any]]:
    """Configs that each carry ``secret`` inline somewhere a secret may end up."""
    smpp = {"class": "actors.transports.smpp.SmppTransport", "config": {"system_id": "me", "password": secret}}
    xmpp = {"class": "actors.transports.xmpp.XmppTransport", "config": {"jid": "a@b.c", "password": secret}}
    web = {"class": "actors.transports.http_api.HttpTransport"}
    return [
        {**BASE, "endpoints": {"sms": smpp}},
        {**BASE, "endpoints": {"xmpp": xmpp}},
        {**BASE, "endpoints": {"web": {**web, "config": {"inbound_auth": {"type": "token", "token": secret}}}}},
        {**BASE, "endpoints": {"web": {**web, "config": {"inbound_auth": {"type": "token", "tokn": secret}}}}},
        {**BASE, "endpoints": {"sms": {**smpp, "config": {"system_id": "me", "pasword": secret}}}},
        {**BASE, "store": {"class": "ray_dispatch.redis_store.RedisStore", "password": secret}},
        {**BASE, "failure_store": {"class": "ray_dispatch.redis_failures.RedisFailureStore", "password": secret}},
        {**BASE, "middleware": [{"mw": {"class": "ray_dispatch.middleware.LoggingMiddleware", "password": secret}}]},
    ]


def refusal(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        preflight(config)
    return str(info.value)


def test_an_inline_secret_is_refused_with_how_to_give_it() -> None:
    text = refusal(inline_secret_configs("Hunter2!")[0])
    assert "endpoints.sms.config (SmppTransport): password: a secret is never written in the config" in text
    assert "{env: NAME}" in text and "{file: PATH}" in text
    assert "Hunter2!" not in text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=8, max_size=40))
def test_a_fuzzed_inline_secret_appears_in_no_error_and_no_log(secret: str, caplog: pytest.LogCaptureFixture) -> None:
    for config, baseline in zip(inline_secret_configs(secret), inline_secret_configs(PLACEHOLDER)):
        expected = refusal(baseline)
        if secret in expected:  # the secret happens to be a piece of the error's own wording
            continue
        with caplog.at_level(logging.DEBUG):
            text = refusal(config)
        assert secret not in text and repr(secret) not in text
        assert secret not in caplog.text
        caplog.clear()


class Credentials(BaseModel):
    """Plain strings under secret-looking names: their values are masked in errors too."""

    api_token: int
    password: int
    user: int


def test_values_under_secret_looking_keys_are_never_shown() -> None:
    with pytest.raises(ValidationError) as info:
        Credentials.model_validate({"api_token": "tok-123456", "password": "pw-123456", "user": "bob"})
    text = format_validation_error(info.value, "credentials", Credentials)
    assert "tok-123456" not in text and "pw-123456" not in text
    assert "user: Input should be a valid integer, unable to parse string as an integer (got 'bob')" in text


@pytest.mark.parametrize(("value", "refused"), [("", "is not set or empty"), ("s3cret", None)])
def test_one_rule_for_environment_secrets_transports_and_redis_alike(
    monkeypatch: pytest.MonkeyPatch, value: str, refused: str | None
) -> None:
    monkeypatch.setenv("RAY_DISPATCH_TEST_SECRET", value)
    if refused is None:
        assert read_secret(Secret(env="RAY_DISPATCH_TEST_SECRET"), "password") == value
        RedisStore("redis://127.0.0.1:1/0", password_env="RAY_DISPATCH_TEST_SECRET")
        return
    with pytest.raises(ConfigError, match=f"password: environment variable 'RAY_DISPATCH_TEST_SECRET' {refused}"):
        Secret(env="RAY_DISPATCH_TEST_SECRET").reveal("password")
    with pytest.raises(ConfigError, match=f"password_env: environment variable 'RAY_DISPATCH_TEST_SECRET' {refused}"):
        RedisStore("redis://127.0.0.1:1/0", password_env="RAY_DISPATCH_TEST_SECRET")


def test_one_rule_for_secret_files(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("  s3cret\n")
    (tmp_path / "empty").write_text("\n")
    assert read_secret(Secret(file=str(tmp_path / "pw")), "password") == "s3cret"
    with pytest.raises(ConfigError, match="is empty"):
        read_secret(Secret(file=str(tmp_path / "empty")), "password")
    with pytest.raises(ConfigError, match=r"password_file: secret file .* is empty"):
        RedisStore("redis://127.0.0.1:1/0", password_file=str(tmp_path / "empty"))
