"""Each fake's keys made from a seed (:mod:`keyorch.fakes.seed`), in the fake's own store.

Every key is built with the same records the fake's API makes, so its listing, reads, states and versions are
the provider's; only what an API cannot do is set here: a creation date in the past, versions made before, a
state reached earlier, and UKO's marks. A seed is checked whole before any key is made (names free, values the
provider allows): a refused seed changes nothing. Versions are dated one day apart, the last one ``created`` plus
``versions - 1`` days at the latest (never after the fake's clock).
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from keyorch.domain.uko_markers import UKO_AWS_ORIGIN, UKO_ID_TAG, uko_description
from keyorch.fakes.aws_state import DISABLED, ENABLED, PENDING_DELETION, KeyMaterial, KmsAlias, KmsKey, KmsStore
from keyorch.fakes.azure_crypto import DEFAULT_OPS, family
from keyorch.fakes.azure_crypto import KeySpec as AzureKeySpec
from keyorch.fakes.azure_state import MAX_TAGS as AZURE_MAX_TAGS
from keyorch.fakes.azure_state import Changes, KeyVault, KeyVersion, VaultKey
from keyorch.fakes.base import FakeError
from keyorch.fakes.gcp_model import ID_PATTERN, CryptoKey, GoogleError, KeyRing, check_labels
from keyorch.fakes.ibm_state import ACTIVE, AUTO_PURGE, SUSPENDED, IbmKey, KeyProtectState, check_alias
from keyorch.fakes.ibm_state import KeyVersion as IbmVersion
from keyorch.fakes.ibm_wire import IbmError
from keyorch.fakes.seed import SeedError, SeedKey

_AWS_ALIAS = re.compile(r"alias/[a-zA-Z0-9:/_-]{1,250}")
_AZURE_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
AWS_WINDOW_DAYS = 30
GCP_DESTROY_WINDOW = timedelta(days=30)
AWS_MAX_TAGS = 50


def _dates(key: SeedKey, now: datetime, where: str) -> list[datetime]:
    """When each version was made: ``created``, then a day apart (the newest no later than now)."""
    first = key.created or now
    if first > now:
        raise SeedError(f"{where}.created: {first.isoformat()} is after the fake's clock ({now.isoformat()})")
    return [min(first + timedelta(days=i), now) for i in range(key.versions)]


def _marked(key: SeedKey) -> dict[str, str]:
    """The key's tags or labels, with UKO's mark (:data:`UKO_ID_TAG`) when UKO made it."""
    uko_id = key.uko_id()
    return {**key.tags, UKO_ID_TAG: uko_id} if uko_id is not None else dict(key.tags)


def _each(keys: Sequence[SeedKey], prefix: str) -> list[tuple[str, SeedKey]]:
    return [(f"{prefix}[{i}]", key) for i, key in enumerate(keys)]


def _unique(names: list[tuple[str, str]], taken: Callable[[str], bool], what: str) -> None:
    seen: set[str] = set()
    for where, name in names:
        if name in seen or taken(name):
            raise SeedError(f"{where}: {what} {name!r} is already taken")
        seen.add(name)


# -- AWS KMS ------------------------------------------------------------------------------------


def seed_aws(store: KmsStore, keys: Sequence[SeedKey], prefix: str = "keys") -> list[dict[str, Any]]:
    now = store.clock.now()
    store.sweep()
    made: list[tuple[KmsKey, list[str]]] = []
    aliases: list[tuple[str, str]] = []
    for where, key in _each(keys, prefix):
        names = [n if n.startswith("alias/") else f"alias/{n}" for n in (key.name, *key.aliases)]
        for name in names:
            if not _AWS_ALIAS.fullmatch(name) or name.startswith("alias/aws/"):
                raise SeedError(f"{where}.name: {name!r} is no AWS alias (alias/ and 1-250 of a-z A-Z 0-9 : / _ -)")
        aliases += [(f"{where}.name", n) for n in names]
        if key.key_type is not None or key.key_ring is not None:
            raise SeedError(f"{where}: key_type and key_ring are not AWS KMS fields")
        tags = _marked(key)
        if len(tags) > AWS_MAX_TAGS:
            raise SeedError(f"{where}.tags: a KMS key has at most {AWS_MAX_TAGS} tags")
        origin = key.origin or (UKO_AWS_ORIGIN if key.uko_id() is not None else "AWS_KMS")
        if key.versions > 1 and origin != "AWS_KMS":
            raise SeedError(f"{where}.versions: the fake rotates (and lists rotations of) KMS-made material only")
        dates = _dates(key, now, where)
        materials = [KeyMaterial(os.urandom(32), when, None if i == 0 else "ON_DEMAND") for i, when in enumerate(dates)]
        key_id = store.new_key_id(False)
        state = {"active": ENABLED, "disabled": DISABLED, "destruction_pending": PENDING_DELETION}[key.state]
        record = KmsKey(
            key_id=key_id,
            arn=store.key_arn(key_id),
            created=dates[0],
            seq=0,
            description=key.description,
            key_usage="ENCRYPT_DECRYPT",
            key_spec="SYMMETRIC_DEFAULT",
            origin=origin,
            state=state,
            multi_region=False,
            materials=materials,
            tags=tags,
        )
        made.append((record, names))
    _unique(aliases, lambda name: name in store.aliases, "alias")
    answer = []
    for record, names in made:
        record.seq = store.next_seq()
        store.keys[record.key_id] = record
        if record.state == PENDING_DELETION:
            record.pending_window_days = AWS_WINDOW_DAYS
            store.schedule_deletion(record, now + timedelta(days=AWS_WINDOW_DAYS))
        for name in names:
            store.aliases[name] = KmsAlias(name, store.alias_arn(name), record.key_id, now, now, store.next_seq())
        answer.append({"id": record.key_id, "name": names[0], "arn": record.arn})
    return answer


# -- Azure Key Vault ----------------------------------------------------------------------------

_AZURE_TYPES = {"RSA": 2048, "RSA-HSM": 2048, "EC": None, "EC-HSM": None, "oct-HSM": 256}


def seed_azure(
    vault: KeyVault, keys: Sequence[SeedKey], *, managed_hsm: bool, prefix: str = "keys"
) -> list[dict[str, Any]]:
    now = vault.clock.now()
    vault.settle()
    made: list[VaultKey] = []
    for where, key in _each(keys, prefix):
        if not _AZURE_NAME.fullmatch(key.name):
            raise SeedError(f"{where}.name: {key.name!r} is no Key Vault key name (1-127 letters, digits, '-')")
        if key.aliases or key.origin or key.key_ring:
            raise SeedError(f"{where}: aliases, origin and key_ring are not Azure Key Vault fields")
        kty = key.key_type or "RSA"
        if kty not in _AZURE_TYPES or (kty == "oct-HSM" and not managed_hsm):
            allowed = [t for t in _AZURE_TYPES if managed_hsm or t != "oct-HSM"]
            raise SeedError(f"{where}.key_type: {kty!r} is not one of {', '.join(allowed)} for this vault")
        tags = _marked(key)
        try:
            Changes.parse({"tags": tags})  # the fake's own rule for tags
        except FakeError as exc:
            raise SeedError(f"{where}.tags: {exc.message} (at most {AZURE_MAX_TAGS})") from None
        size = _AZURE_TYPES[kty]
        spec = AzureKeySpec(kty, key_size=size, crv="P-256" if size is None else None)
        record = VaultKey(key.name)
        for when in _dates(key, now, where):
            stamp = int(when.timestamp())
            version = KeyVersion(
                version=secrets.token_hex(16),
                spec=spec,
                material=spec.generate(),
                key_ops=list(DEFAULT_OPS[family(kty)]),
                enabled=key.state != "disabled",
                nbf=None,
                exp=None,
                created=stamp,
                updated=stamp,
                tags=dict(tags),
            )
            record.versions.append(version)
        made.append(record)
    names = [(f"{prefix}[{i}].name", k.name.lower()) for i, k in enumerate(made)]
    _unique(names, lambda n: n in vault.live or n in vault.deleted or n in vault.in_flight, "key name")
    answer = []
    for record, key in zip(made, keys, strict=True):
        lname = record.name.lower()
        if key.state == "destruction_pending":
            record.deleted_date = int(now.timestamp())
            record.scheduled_purge_date = record.deleted_date + vault.retention_days * 86400
            vault.deleted[lname] = record
            vault.purges.add(record.scheduled_purge_date, lname)
        else:
            vault.live[lname] = record
        answer.append({"id": record.name, "name": record.name, "version": record.latest.version})
    return answer


# -- Google Cloud KMS ---------------------------------------------------------------------------


def seed_google(
    rings: dict[str, KeyRing], keys: Sequence[SeedKey], default_ring: str, prefix: str = "keys", *, now: datetime
) -> list[dict[str, Any]]:
    made: list[tuple[KeyRing | str, CryptoKey]] = []
    for where, key in _each(keys, prefix):
        ring_name = key.key_ring or default_ring
        if not re.fullmatch(r"projects/[^/]+/locations/[^/]+/keyRings/[a-zA-Z0-9_-]{1,63}", ring_name):
            raise SeedError(f"{where}.key_ring: {ring_name!r} is no key ring name (projects/P/locations/L/keyRings/R)")
        if ID_PATTERN.fullmatch(key.name) is None:
            raise SeedError(f"{where}.name: {key.name!r} is no cryptoKeyId (1-63 letters, digits, '_', '-')")
        if key.aliases or key.origin:
            raise SeedError(f"{where}: aliases and origin are not Cloud KMS fields")
        level = key.key_type or "SOFTWARE"
        if level not in ("SOFTWARE", "HSM"):
            raise SeedError(f"{where}.key_type: {level!r} is not a protection level the fake serves (SOFTWARE, HSM)")
        try:
            labels = check_labels(_marked(key), "labels")
        except GoogleError as exc:
            raise SeedError(f"{where}.tags: {exc.message} (labels: lowercase letters, digits, '_', '-')") from None
        dates = _dates(key, now, where)
        record = CryptoKey(
            f"{ring_name}/cryptoKeys/{key.name}", "ENCRYPT_DECRYPT", dates[0], level, "GOOGLE_SYMMETRIC_ENCRYPTION"
        )
        record.labels = labels
        for when in dates:
            version = record.add_version(when)
            if key.state == "disabled":
                version.state = "DISABLED"
            elif key.state == "destruction_pending":
                version.state, version.destroy_time = "DESTROY_SCHEDULED", now + GCP_DESTROY_WINDOW
        record.primary = len(record.versions)
        made.append((rings.get(ring_name) or ring_name, record))

    def taken(name: str) -> bool:
        ring_name, _, key_id = name.rpartition("/cryptoKeys/")
        ring = rings.get(ring_name)
        return ring is not None and key_id in ring.keys

    _unique([(f"{prefix}[{i}].name", rec.name) for i, (_, rec) in enumerate(made)], taken, "cryptoKey")
    answer = []
    for ring, record in made:
        if isinstance(ring, str):
            ring = rings.setdefault(ring, KeyRing(ring, now))
        ring.keys[record.name.rpartition("/")[2]] = record
        answer.append({"id": record.name, "name": record.name.rpartition("/")[2]})
    return answer


# -- IBM Key Protect ----------------------------------------------------------------------------


def seed_ibm(state: KeyProtectState, keys: Sequence[SeedKey], user: str, prefix: str = "keys") -> list[dict[str, Any]]:
    now = state.clock.now()
    state.sweep()
    made: list[IbmKey] = []
    aliases: list[tuple[str, str]] = []
    for where, key in _each(keys, prefix):
        if not 2 <= len(key.name) <= 90:
            raise SeedError(f"{where}.name: a Key Protect key name is 2-90 characters")
        if key.origin or key.key_type or key.key_ring:
            raise SeedError(f"{where}: origin, key_type and key_ring are not Key Protect fields")
        try:
            for alias in key.aliases:
                check_alias(alias, "seed")
        except IbmError as exc:
            raise SeedError(f"{where}.aliases: {exc.detail}") from None
        aliases += [(f"{where}.aliases", a.lower()) for a in key.aliases]
        tags = [f"{k}:{v}" if v else k for k, v in key.tags.items()]
        if len(tags) > 30 or any(len(t) > 30 for t in tags):
            raise SeedError(f"{where}.tags: Key Protect takes at most 30 tags of at most 30 characters each")
        uko_id = key.uko_id()
        description = uko_description(uko_id) if uko_id is not None and not key.description else key.description
        dates = _dates(key, now, where)
        key_id = str(uuid.uuid4())
        versions = [
            IbmVersion(key_id if i == 0 else str(uuid.uuid4()), when, os.urandom(32)) for i, when in enumerate(dates)
        ]
        made.append(
            IbmKey(
                id=key_id,
                name=key.name,
                description=description,
                extractable=False,
                imported=False,
                key_ring="default",
                created=dates[0],
                created_by=user,
                crn=f"crn:v1:bluemix:public:kms:{state.region}:a/{state.account_id}:{state.instance_id}:key:{key_id}",
                versions=versions,
                state=SUSPENDED if key.state == "disabled" else ACTIVE,
                aliases=list(key.aliases),
                tags=tags,
                last_update=dates[-1],
                last_rotate=dates[-1] if len(dates) > 1 else None,
            )
        )
    _unique(aliases, lambda a: a in state.aliases, "alias")
    answer = []
    for record, key in zip(made, keys, strict=True):
        if key.state == "destruction_pending":
            record.deleted_at, record.deleted_by = now, user
            state.purges.add((now + AUTO_PURGE).timestamp(), record.id)
        state.keys[record.id] = record
        for alias in record.aliases:
            state.aliases[alias.lower()] = record.id
        answer.append({"id": record.id, "name": record.name})
    return answer
