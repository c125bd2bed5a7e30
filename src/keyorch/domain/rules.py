"""The lifecycle rules, each in one place. Pure: callers pass in the records and the time."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from keyorch.domain.errors import RuleViolation
from keyorch.domain.models import (
    DeletionAuthorization,
    Keystore,
    KeyTemplate,
    ManagedKey,
    SyncFlag,
    SyncReason,
    Target,
    TargetStatus,
    Vault,
)
from keyorch.domain.states import KeyAction, KeyState, allowed_from, is_allowed, transition_target

#: How long a deletion authorization stays valid (Key Protect's dual authorization window).
DUAL_AUTH_WINDOW = timedelta(days=7)

#: States in which a key blocks disconnecting a keystore it targets (seed 003): the keystore still
#: holds it (a compromised key is held disabled, like a deactivated one).
BLOCKS_DISCONNECT: frozenset[KeyState] = frozenset({KeyState.ACTIVE, KeyState.DEACTIVATED, KeyState.COMPROMISED})

_HINTS: dict[KeyAction, str] = {
    KeyAction.DESTROY: " (deactivate it first)",
    KeyAction.REMOVE: " (destroy it first)",
    KeyAction.COMPROMISE: " (a pre-active key was never in a keystore: destroy it instead)",
}


def is_destroyed(key: ManagedKey) -> bool:
    """Destroyed or destroyed compromised: nothing of it is to be left in any keystore."""
    return key.state.in_keystores is KeyState.DESTROYED


def _describe_key(key: ManagedKey) -> str:
    return f"{key.label} ({key.id})"


def check_action(key: ManagedKey, action: KeyAction) -> KeyState | None:
    """Refuse an action the allowed-actions table forbids; return the state it leads to."""
    if not is_allowed(action, key.state):
        allowed = ", ".join(allowed_from(action))
        raise RuleViolation(
            f"cannot {action} key {_describe_key(key)}: it is {key.state}; {action} is allowed only from "
            f"{allowed}{_HINTS.get(action, '')}",
            target="state",
        )
    return transition_target(action, key.state)


def pending_targets(key: ManagedKey, now: datetime) -> tuple[Target, ...]:
    """Every live target of the key back to pending, stamped now: a new intent in each keystore."""
    return tuple(
        t if t.status is TargetStatus.REMOVED else t.with_changes(sync_flag=SyncFlag.PENDING, updated_at=now)
        for t in key.targets
    )


def apply_state_change(key: ManagedKey, action: KeyAction, now: datetime) -> ManagedKey:
    """The key after a state action: new desired state, every live target back to pending."""
    new_state = check_action(key, action)
    assert new_state is not None
    targets = pending_targets(key, now)
    authorization = None if action is KeyAction.DESTROY else key.deletion_authorization
    activated = now if new_state is KeyState.ACTIVE and key.activated_at is None else key.activated_at
    return replace(
        key,
        state=new_state,
        targets=targets,
        updated_at=now,
        deletion_authorization=authorization,
        generation=key.generation + 1,
        activated_at=activated,
    )


# --- removal from the vault ---------------------------------------------------------------


def removal_blockers(
    key: ManagedKey, keystore_names: dict[str, str], now: datetime, in_flight: Collection[str] = ()
) -> list[str]:
    """Why a destroyed key cannot be removed from its vault yet, one reason per keystore.

    A key leaves the vault only once every keystore it was distributed to is known to be rid of it:
    each target was reconciled since the destroy (its synced generation is the key's), no call
    keyorch made there is still in flight (``in_flight``: keystore ids with an open intent), and the
    keystore reports the key gone or its pending-destruction window has passed. Removing it earlier
    would leave key material alive in a keystore with nothing tracking it. Targets of a disconnected
    keystore do not block (they were unlinked from it)."""
    reasons: list[str] = []
    for target in key.targets:
        if target.status is TargetStatus.REMOVED:
            continue
        name = keystore_names.get(target.keystore_id, target.keystore_id)
        until = target.pending_destruction_until
        if target.keystore_id in in_flight:
            reasons.append(f"keystore {name}: a call keyorch made there has no recorded outcome yet")
        elif (target.synced_generation or 0) != key.generation:
            reasons.append(
                f"keystore {name} has not confirmed the destruction yet (last seen {target.status}; the reconciler "
                "has not brought it in line since the destroy)"
            )
        elif target.status is TargetStatus.UNKNOWN:
            reasons.append(f"keystore {name}: the key's status there is unknown")
        elif target.status is TargetStatus.DESTRUCTION_PENDING:
            if until is None:
                reasons.append(f"keystore {name} has not confirmed the destruction yet")
            elif until > now:
                reasons.append(f"keystore {name} keeps it pending destruction until {until.isoformat()}")
        elif target.status in (TargetStatus.ACTIVE, TargetStatus.DEACTIVATED):
            reasons.append(f"keystore {name} still holds it ({target.status}); destruction is not scheduled yet")
    return reasons


def check_remove(
    key: ManagedKey, keystore_names: dict[str, str], now: datetime, in_flight: Collection[str] = ()
) -> None:
    check_action(key, KeyAction.REMOVE)
    blockers = removal_blockers(key, keystore_names, now, in_flight)
    if blockers:
        raise RuleViolation(
            f"cannot remove key {_describe_key(key)} from its vault yet: " + "; ".join(blockers), target="targets"
        )


# --- keystores --------------------------------------------------------------------------


def disconnect_blockers(keystore: Keystore, keys: Iterable[ManagedKey]) -> list[ManagedKey]:
    """Keys targeting the keystore that are still active, deactivated or compromised (seed 003)."""
    return [
        k
        for k in keys
        if k.state in BLOCKS_DISCONNECT
        and any(t.keystore_id == keystore.id and t.status is not TargetStatus.REMOVED for t in k.targets)
    ]


def live_disconnect_blockers(keys: Sequence[ManagedKey], live: Mapping[str, KeyState]) -> list[ManagedKey]:
    """Keys keyorch manages that the keystore itself still holds usable (active or deactivated, no
    destruction scheduled), whatever their desired state says: e.g. destroyed in keyorch but not yet
    scheduled for destruction there. ``live`` maps managed key ids to what the keystore reports."""
    return [k for k in keys if live.get(k.id) in BLOCKS_DISCONNECT]


def check_disconnect(
    keystore: Keystore, keys: Sequence[ManagedKey], live: Mapping[str, KeyState] | None = None
) -> None:
    """Refuse a disconnect while any key targeting the keystore is active or deactivated, by its
    desired state or, when the keystore could be asked (``live``), by what the keystore holds.

    A template that merely lists the keystore does not block.
    """
    blockers = disconnect_blockers(keystore, keys)
    if live is not None:
        seen = {k.id for k in blockers}
        for key in live_disconnect_blockers(keys, live):
            if key.id not in seen:
                raise RuleViolation(
                    f"cannot disconnect keystore {keystore.name} ({keystore.id}): it still holds key "
                    f"{_describe_key(key)} as {live[key.id]} although its desired state is {key.state}; "
                    "run `keyorch sync-key` (or wait for the reconciler) first",
                    target="keystore",
                )
    if blockers:
        shown = ", ".join(f"{_describe_key(k)} [{k.state}]" for k in blockers[:20])
        more = f" and {len(blockers) - 20} more" if len(blockers) > 20 else ""
        raise RuleViolation(
            f"cannot disconnect keystore {keystore.name} ({keystore.id}): {len(blockers)} key(s) targeting it "
            f"are still active, deactivated or compromised: {shown}{more}; destroy them first",
            target="keystore",
        )


def unlink_key_from_keystore(key: ManagedKey, keystore_id: str, now: datetime) -> ManagedKey:
    """After a disconnect: the key's target there is detached and marked removed by the user."""
    targets = tuple(
        t.with_changes(
            status=TargetStatus.REMOVED,
            sync_flag=SyncFlag.IN_SYNC,
            reason=SyncReason.TARGET_KEYSTORE_REMOVED_BY_USER,
            updated_at=now,
        )
        if t.keystore_id == keystore_id
        else t
        for t in key.targets
    )
    return replace(key, targets=targets, updated_at=now)


def unlink_template_from_keystore(template: KeyTemplate, keystore_id: str, now: datetime) -> KeyTemplate:
    ids = tuple(k for k in template.keystore_ids if k != keystore_id)
    return replace(template, keystore_ids=ids, updated_at=now)


def new_targets(labels_in_keystores: Mapping[str, str | None], now: datetime) -> tuple[Target, ...]:
    """A new key's targets: keystore id -> what that keystore will call the key."""
    return tuple(Target(keystore_id=k, updated_at=now, label_in_keystore=v) for k, v in labels_in_keystores.items())


# --- vaults -------------------------------------------------------------------------------


def check_vault_empty(vault: Vault, keystores: int, templates: int, keys: int) -> None:
    parts = [
        f"{n} {what}" for n, what in ((keystores, "keystore(s)"), (templates, "template(s)"), (keys, "key(s)")) if n
    ]
    if parts:
        raise RuleViolation(
            f"cannot delete vault {vault.name} ({vault.id}): it still holds "
            + ", ".join(parts)
            + "; a vault can be deleted only when empty",
            target="vault",
        )


# --- dual authorization (seed 002) -----------------------------------------------------------


#: Why direct database access cannot take part in dual authorization.
UNAUTHENTICATED_DUAL_AUTH = "dual authorization needs authenticated users: use --server"


def check_authenticated_for_dual_auth(vault: Vault, authenticated: bool) -> None:
    """Two different users are only two people when each was authenticated: refuse the steps of dual
    authorization (authorize, and destroy in a dual-auth vault) to a self-declared user."""
    if vault.dual_auth and not authenticated:
        raise RuleViolation(UNAUTHENTICATED_DUAL_AUTH, target="user")


def live_authorization(key: ManagedKey, now: datetime) -> DeletionAuthorization | None:
    auth = key.deletion_authorization
    if auth is None or auth.expires_at <= now:
        return None
    return auth


def authorize_deletion(vault: Vault, key: ManagedKey, user: str, now: datetime) -> ManagedKey:
    """First of two authorizations: valid for 7 days, until withdrawn or used."""
    if not vault.dual_auth:
        raise RuleViolation(
            f"vault {vault.name} does not use dual authorization; key {_describe_key(key)} can be destroyed directly",
            target="vault",
        )
    if is_destroyed(key) and key.destroy_force:
        raise RuleViolation(f"key {_describe_key(key)} is already destroyed, with force", target="state")
    existing = live_authorization(key, now)
    if existing is not None:
        raise RuleViolation(
            f"deletion of key {_describe_key(key)} is already authorized by {existing.authorized_by} until "
            f"{existing.expires_at.isoformat()}; withdraw it first to authorize again",
            target="deletion_authorization",
        )
    auth = DeletionAuthorization(authorized_by=user, authorized_at=now, expires_at=now + DUAL_AUTH_WINDOW)
    return replace(key, deletion_authorization=auth, updated_at=now)


def withdraw_authorization(key: ManagedKey, now: datetime) -> ManagedKey:
    if live_authorization(key, now) is None:
        raise RuleViolation(
            f"key {_describe_key(key)} has no deletion authorization in force to withdraw",
            target="deletion_authorization",
        )
    return replace(key, deletion_authorization=None, updated_at=now)


def check_destroy_authorization(vault: Vault, key: ManagedKey, user: str, now: datetime) -> None:
    """Where the vault enables dual authorization, destroy needs a live authorization by someone else."""
    if not vault.dual_auth:
        return
    auth = key.deletion_authorization
    if auth is None:
        raise RuleViolation(
            f"vault {vault.name} requires dual authorization: another user must run authorize-deletion on key "
            f"{_describe_key(key)} before it can be destroyed",
            target="deletion_authorization",
        )
    if auth.expires_at <= now:
        raise RuleViolation(
            f"the deletion authorization of key {_describe_key(key)} by {auth.authorized_by} lapsed at "
            f"{auth.expires_at.isoformat()} (7 days); it must be authorized again",
            target="deletion_authorization",
        )
    if auth.authorized_by == user:
        raise RuleViolation(
            f"user {user} authorized the deletion of key {_describe_key(key)} and so cannot also destroy it; "
            "dual authorization needs a different user",
            target="user",
        )


def check_destroy(vault: Vault, key: ManagedKey, user: str, now: datetime) -> None:
    check_action(key, KeyAction.DESTROY)
    check_destroy_authorization(vault, key, user, now)


def destroy(vault: Vault, key: ManagedKey, user: str, now: datetime, *, force: bool) -> ManagedKey:
    """The key after a destroy request. A destroyed key may be destroyed again only to add ``force``
    (a Key Protect keystore refused the deletion because the key protects registered resources): the
    desired state stays destroyed, the generation moves, so the reconciler schedules the deletion again,
    now forced. Adding force is a deletion too: in a dual-authorization vault it needs a live
    authorization by another user, like the first destroy."""
    if is_destroyed(key) and force:
        if key.destroy_force:
            raise RuleViolation(f"key {_describe_key(key)} is already being destroyed with force", target="force")
        check_destroy_authorization(vault, key, user, now)
        targets = pending_targets(key, now)
        return replace(
            key,
            targets=targets,
            updated_at=now,
            destroy_force=True,
            deletion_authorization=None,
            generation=key.generation + 1,
        )
    check_destroy(vault, key, user, now)
    return replace(apply_state_change(key, KeyAction.DESTROY, now), destroy_force=force)
