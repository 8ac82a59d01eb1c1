"""Secrets in configs: where one lives (``{env: NAME}`` or ``{file: PATH}``), and the one reader.

A secret is never written in a config: a plain value is refused with a line
saying how to give it, and the value is not echoed (``format_validation_error``
never shows it). ``read_secret`` applies one set of rules to every secret the
project reads (transport passwords and tokens, the Redis stores' password):
the variable must be set and the file readable, a file's surrounding
whitespace (its trailing newline) is dropped, and an empty value is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from ray_dispatch.core.errors import ConfigError

HOW_TO_GIVE = "give it as {env: NAME} (an environment variable) or {file: PATH} (a file holding it)"


class Secret(BaseModel):
    """Where a secret lives: an environment variable or a file (never the value itself).

    Attributes:
        env: name of the environment variable holding the secret.
        file: path of a file holding the secret (surrounding whitespace is stripped).
    """

    model_config = ConfigDict(extra="forbid")

    env: str | None = None
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, value: Any) -> Any:
        if isinstance(value, (dict, Secret)):
            return value
        raise PydanticCustomError("secret_inline", f"a secret is never written in the config: {HOW_TO_GIVE}")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self

    def reveal(self, key: str) -> str:
        """Read the secret's value now (``read_secret``); ``key`` names the config key in errors.

        Raises:
            ConfigError: the variable is unset or empty, or the file is unreadable or empty.
        """
        return read_secret(self, key)


def read_secret(secret: Secret, key: str) -> str:
    """Return the value ``secret`` points at, read now; errors name ``key`` and never the value.

    Raises:
        ConfigError: the variable is unset or empty, or the file is unreadable or empty.
    """
    if secret.env is not None:
        value = os.environ.get(secret.env, "")
        if not value:
            raise ConfigError(f"{key}: environment variable {secret.env!r} is not set or empty")
        return value
    assert secret.file is not None
    try:
        value = Path(secret.file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read secret file {secret.file!r} ({exc.strerror or exc})") from None
    if not value:
        raise ConfigError(f"{key}: secret file {secret.file!r} is empty")
    return value
