"""Who may use the triage page: a YAML file of users, each with a role and a scrypt hash
of their password (``anomaly-triage hash-password``), or, behind a trusted reverse proxy
that authenticates, the user the proxy names in a header (roles still from the file)."""

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

ROLES = ("viewer", "analyst")
#: scrypt cost (RFC 7914's interactive-login parameters: about 50 ms and 16 MiB here).
N, R, P = 2**14, 8, 1


class User(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal[ROLES]
    password: str | None = Field(
        default=None,
        pattern=r"^scrypt\$",
        description="scrypt$N$r$p$salt$hash; none: only through the proxy header.",
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


#: Checked against when the user is unknown, so an unknown name costs the same time.
_DECOY = hash_password(secrets.token_hex(8))


def verify_password(password: str, stored: str | None) -> bool:
    _, n, r, p, salt, digest = (stored or _DECOY).split("$")
    computed = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(base64.b64decode(digest)),
    )
    return stored is not None and hmac.compare_digest(
        computed, base64.b64decode(digest)
    )


def load_users(path: str | Path) -> dict[str, User]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {
        name: User.model_validate(u) for name, u in (data.get("users") or {}).items()
    }
