"""Bearer tokens → a user and roles per vault (UKO's four roles), and the role checks.

Tokens are configured only as SHA-256 hashes. A presented token is hashed and compared with
every configured hash in constant time. Roles are given per vault name or ``"*"`` (every vault);
an entry for the vault itself wins over ``"*"``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from keyorch.api.errors import Forbidden, Unauthorized
from keyorch.settings import ApiToken

ALL_VAULTS = "*"


class Role(StrEnum):
    READER = "reader"
    KEY_CUSTODIAN_CREATOR = "key_custodian_creator"
    KEY_CUSTODIAN_DEPLOYER = "key_custodian_deployer"
    VAULT_ADMINISTRATOR = "vault_administrator"


class Permission(StrEnum):
    READ = "read"
    CREATE = "create"  # create keys and templates
    DEPLOY = "deploy"  # activate, deactivate, sync, authorize or withdraw deletion
    ADMINISTER = "administer"  # vaults, keystores, destroy, remove, disconnect


#: Which roles grant which permission (every role may read).
GRANTED_BY: dict[Permission, frozenset[Role]] = {
    Permission.READ: frozenset(Role),
    Permission.CREATE: frozenset({Role.KEY_CUSTODIAN_CREATOR, Role.VAULT_ADMINISTRATOR}),
    Permission.DEPLOY: frozenset({Role.KEY_CUSTODIAN_DEPLOYER, Role.VAULT_ADMINISTRATOR}),
    Permission.ADMINISTER: frozenset({Role.VAULT_ADMINISTRATOR}),
}


#: Several permissions an operation needs together.
Permissions = tuple[Permission, ...]


def granting(*permissions: Permission) -> frozenset[Role]:
    """The roles that grant every one of ``permissions``."""
    return frozenset.intersection(*(GRANTED_BY[p] for p in permissions))


@dataclass(frozen=True)
class Principal:
    user: str
    roles: Mapping[str, Role]

    def role_in(self, vault_name: str) -> Role | None:
        return self.roles.get(vault_name, self.roles.get(ALL_VAULTS))

    def can(self, permission: Permission, vault_name: str) -> bool:
        role = self.role_in(vault_name)
        return role is not None and role in GRANTED_BY[permission]

    def require(self, permission: Permission | Permissions, vault_name: str, action: str) -> Role:
        """The role that allows ``action`` in the vault; ``Forbidden`` (403) naming what is needed otherwise.

        With several permissions (e.g. creating a key that starts active: create *and* deploy), the
        caller's role must grant every one of them.
        """
        wanted = permission if isinstance(permission, tuple) else (permission,)
        roles = granting(*wanted)
        role = self.role_in(vault_name)
        if role is not None and role in roles:
            return role
        needed = " or ".join(sorted(roles))
        if len(wanted) > 1:
            needed = f"the permissions to {' and '.join(wanted)} ({needed})"
        has = f"has the role {role}" if role is not None else "has no role"
        raise Forbidden(f"user {self.user} {has} in vault {vault_name}; {action} needs {needed}", target="vault")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class Authenticator:
    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._tokens = [
            (t.sha256.encode("ascii"), Principal(t.user, {v: Role(r) for v, r in t.roles.items()})) for t in tokens
        ]

    def authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        if header is None:
            raise Unauthorized("authentication required: send Authorization: Bearer <token>")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be: Bearer <token>")
        found = self.by_digest(token_hash(token))
        if found is None:
            raise Unauthorized("the bearer token is not valid")
        return found

    def by_digest(self, digest: str) -> Principal | None:
        """The user and roles of the configured token whose SHA-256 is ``digest`` (hex), if any: the bearer check
        above, and the console's session (which keeps the token's hash, never the token), both through here."""
        presented = digest.encode("ascii", "replace")
        found: Principal | None = None
        for configured, principal in self._tokens:  # compare with every hash, so timing shows nothing
            if hmac.compare_digest(presented, configured) and found is None:
                found = principal
        return found
