"""How endpoint secrets are stored: Fernet-encrypted when SONIQ_WEBHOOK_SECRET_KEY is
set, else as given.

A stored secret is ``"fernet:<token>"`` or ``"plain:<secret>"``, so each row says how
to read it back whatever the setting is now. The key setting takes one Fernet key, or
several separated by commas to rotate keys: the first encrypts, any of them decrypts.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from soniq.errors import INVALID_SETTING, WEBHOOKS_UNAVAILABLE, SoniqError

_FERNET = "fernet:"
_PLAIN = "plain:"
_SETTING = "SONIQ_WEBHOOK_SECRET_KEY"


class SecretUnreadable(Exception):
    """A stored secret that cannot be decrypted with the configured key(s)."""


def _cipher(key: SecretStr) -> Any:
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise SoniqError(
            WEBHOOKS_UNAVAILABLE,
            f"{_SETTING} is set, which encrypts webhook secrets with Fernet, but the "
            "cryptography package is missing. Run `pip install 'soniq[webhooks]'`.",
        ) from None
    keys = [k.strip() for k in key.get_secret_value().split(",") if k.strip()]
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except (ValueError, TypeError):
        raise SoniqError(
            INVALID_SETTING,
            f"{_SETTING} must be Fernet keys (32 url-safe base64-encoded bytes each, "
            "comma-separated to rotate), such as the output of "
            '`python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"`.',
            setting=_SETTING,
        ) from None


def seal(secret: str, key: SecretStr | None) -> str:
    """``secret`` as it is stored: encrypted under ``key``, or marked plain without one."""
    if key is None:
        return _PLAIN + secret
    token: bytes = _cipher(key).encrypt(secret.encode("utf-8"))
    return _FERNET + token.decode("ascii")


def check_key(key: SecretStr | None) -> None:
    """Raise SoniqError now if ``key`` is set but unusable (bad keys, no cryptography)."""
    if key is not None:
        _cipher(key)


def unseal(stored: str | None, key: SecretStr | None) -> str | None:
    """The secret of a stored value (None: the endpoint signs nothing).

    Raises :class:`SecretUnreadable` for an encrypted secret without a key that
    opens it.
    """
    if stored is None:
        return None
    if stored.startswith(_PLAIN):
        return stored[len(_PLAIN) :]
    if not stored.startswith(_FERNET):
        return stored  # written by hand: taken as it is
    if key is None:
        raise SecretUnreadable(
            f"the endpoint's secret is encrypted but {_SETTING} is not set here; set it "
            "to the key the secret was registered under"
        )
    from cryptography.fernet import InvalidToken

    try:
        plain: bytes = _cipher(key).decrypt(stored[len(_FERNET) :].encode("ascii"))
    except InvalidToken:
        raise SecretUnreadable(
            f"the endpoint's secret was encrypted under another key than {_SETTING}; "
            "add the old key after the new one (comma-separated) or register it again"
        ) from None
    return plain.decode("utf-8")
