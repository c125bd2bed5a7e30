"""`keyorch --server URL`: every command through a real daemon's REST API as the token's user (issue 12, 1-2).

The same commands run both ways over the same database (``--db`` beside the daemon, and ``--server``)
print the same documents and tables and exit with the same codes; refusals come back as the CLI's exit
codes; the audit trail records the token's user with the source ``api`` and direct changes with
``cli-direct``; dual authorization works with two tokens and one token cannot do both steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from keyorch.fakes.registry import connect_args
from tests.daemon.cli_server import Served, served_world
from tests.daemon.harness import connect_body, eventually
from tests.e2e.harness import EXPECTED, CliResult, provider_states

T = TypeVar("T")
KINDS = ("aws_kms", "ibm_key_protect")  # two providers are enough to show the pattern; each call costs a start-up


async def _gather(calls: Iterable[Awaitable[T]], limit: int = 4) -> list[T]:
    """Run CLI subprocesses a few at a time (each is mostly Python start-up)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def _world(served: Served) -> dict[str, Any]:
    """A vault, two keystores on the fakes and a template, made by alice through `keyorch --server` (one keystore
    through the harness's API client, to spare a CLI start-up)."""
    alice = served.remote("alice")
    vault = await alice.ok("vault", "create", "main")
    aws, ibm = KINDS
    await alice.ok("keystore", "connect", "--vault", "main", "--name", aws, *_connect(served, aws))
    body = connect_body(vault["id"], ibm, ibm, served.cluster[ibm], served.credentials[ibm])
    (await served.api.api("POST", "/keystores", json_body=body)).ok(201)
    stores = [arg for kind in KINDS for arg in ("--keystore", kind)]
    template = await alice.ok("template", "create", "--vault", "main", "--name", "tmpl", *stores)
    return {"vault": vault, "template": template}


def _connect(served: Served, kind: str) -> list[str]:
    return connect_args(kind, served.cluster[kind], served.credentials[kind])


def _without(doc: Any, ignored: frozenset[str]) -> Any:
    """The document without the fields that name one object (ids, names, times)."""
    if isinstance(doc, dict):
        return {k: _without(v, ignored) for k, v in doc.items() if k not in ignored}
    if isinstance(doc, list):
        return [_without(v, ignored) for v in doc]
    return doc


#: what differs between two objects made alike: who and when, the object's own id and name (and so its href)
IDENTITY = frozenset({"id", "name", "label", "created_at", "updated_at", "created_by", "updated_by", "href"})


async def test_commands_through_the_server_print_and_exit_as_direct_mode(tmp_path: Path) -> None:
    async with served_world(tmp_path) as served:
        alice, direct = served.remote("alice"), served.direct
        world = await _world(served)
        key = await alice.ok("key", "create", "--template", "tmpl", "--label", "orders")
        assert key["state"] == "pre_activation" and len(key["targets"]) == len(KINDS)
        assert (await alice.ok("key", "activate", "orders"))["state"] == "active"
        synced = await alice("sync-key", "orders")
        assert synced.code == 0, synced
        assert {t["sync_flag"] for t in synced.json()["targets"]} == {"in_sync"}
        states = provider_states(served.cluster, key["id"])
        assert {kind: states[kind] for kind in KINDS} == {kind: EXPECTED["active"][kind] for kind in KINDS}

        # reads: the same output, byte for byte, in json and as tables (once the daemon is done with the key)
        reads: list[tuple[tuple[str, ...], bool]] = [
            (("vault", "show", "main"), True),
            (("keystore", "list"), False),
            (("template", "show", "tmpl"), True),
            (("key", "list", "--vault", "main"), True),
            (("key", "show", "orders"), False),
            (("sync-key", "orders"), True),
        ]

        async def same_everywhere() -> list[tuple[CliResult, CliResult]] | None:
            pairs = await _gather(c(*args, output_json=j) for args, j in reads for c in (direct, alice))
            both = list(zip(pairs[::2], pairs[1::2], strict=True))
            return both if all(d.code == r.code == 0 and d.out == r.out for d, r in both) else None

        pairs = await eventually(same_everywhere, 90, "direct and --server print the same", interval=1)
        assert "orders" in pairs[4][0].out and "in_sync" in pairs[4][0].out  # the key's table, targets in sync

        # creates and state actions: the same documents, but for the objects' own ids, names and times
        made = await _gather(
            [
                direct.ok("vault", "create", "v-direct"),
                alice.ok("vault", "create", "v-remote"),
                direct.ok("key", "create", "--template", "tmpl", "--label", "k-direct"),
                alice.ok("key", "create", "--template", "tmpl", "--label", "k-remote"),
            ]
        )
        assert _without(made[0], IDENTITY) == _without(made[1], IDENTITY)
        assert (made[0]["created_by"], made[1]["created_by"]) == ("operator", "alice")
        changed = await _gather(
            [
                direct.ok("vault", "update", "v-direct", "--description", "same", "--recovery-key-label", "rk"),
                alice.ok("vault", "update", "v-remote", "--description", "same", "--recovery-key-label", "rk"),
            ]
        )
        assert _without(changed[0], IDENTITY) == _without(changed[1], IDENTITY)
        assert (changed[1]["description"], changed[1]["updated_by"], changed[1]["version"]) == ("same", "alice", 2)
        assert _without(made[2], IDENTITY | {"targets", "instances"}) == _without(
            made[3], IDENTITY | {"targets", "instances"}
        )
        # instances name the key in each keystore (ids and labels differ); their types and keystores match
        assert [_without(i, frozenset({"id", "label_in_keystore"})) for i in made[2]["instances"]] == [
            _without(i, frozenset({"id", "label_in_keystore"})) for i in made[3]["instances"]
        ]
        d, r = await _gather([direct.ok("key", "activate", "k-direct"), alice.ok("key", "activate", "k-remote")])
        keep = ("state", "state_code", "deletion_authorization", "destroy_force", "vault", "template")
        assert {k: d[k] for k in keep} == {k: r[k] for k in keep}
        assert r["state"] == "active" and [t["keystore"] for t in d["targets"]] == [t["keystore"] for t in r["targets"]]

        # refusals: the same exit code, nothing on stdout, and the service's own sentence
        refusals = [
            (2, True, ("key", "show", "no-such-key")),
            (2, True, ("vault", "create", "main")),  # a name that exists
            (3, True, ("key", "destroy", "orders")),  # active: deactivate it first
            (3, False, ("key", "activate", "k-remote", "--if-version", "999")),
            (2, False, ("vault", "create", "bad name")),  # each surface words its own validation
        ]
        results = await _gather(c(*args) for _, _, args in refusals for c in (direct, alice))
        for (code, same_words, args), d, r in zip(refusals, results[::2], results[1::2], strict=True):
            assert d.code == r.code == code, (args, str(d), str(r))
            assert not d.out.strip() and not r.out.strip(), (args, str(d), str(r))
            assert d.err.startswith("error: ") and r.err.startswith("error: "), (args, d.err, r.err)
            if same_words:
                assert d.err == r.err, (args, d.err, r.err)

        # refusals only an authenticated caller can meet: a role, a token
        riley, carol, nobody = served.remote("riley"), served.remote("carol"), served.remote("x", token="not-a-token")
        forbidden, active_by_creator, bad_token = await _gather(
            [
                riley("vault", "create", "v-riley"),
                carol("key", "create", "--template", "tmpl", "--label", "k-carol", "--state", "active"),
                nobody("vault", "list"),
            ]
        )
        assert forbidden.code == 3 and "riley has the role reader" in forbidden.err and not forbidden.out
        assert active_by_creator.code == 3 and "starts active" in active_by_creator.err
        assert bad_token.code == 2 and "token is not valid" in bad_token.err and "KEYORCH_TOKEN" in bad_token.err

        # the audit trail: the token's user through the API, the self-declared one directly
        records = await direct.ok("audit", "list", "--limit", "100000")
        vault_id = world["vault"]["id"]
        about_vault = ("audit", "list", "--object", vault_id)
        assert await alice.ok(*about_vault) == await direct.ok(*about_vault)
        by_object = {(r["object_type"], r["action"], r["outcome"], r["user"], r["source"]) for r in records}
        assert ("vault", "vault.create", "accepted", "alice", "api") in by_object
        assert ("vault", "vault.create", "accepted", "operator", "cli-direct") in by_object
        assert ("vault", "vault.create", "refused", "riley", "api") in by_object
        assert ("key", "key.create", "refused", "carol", "api") in by_object
        assert {r["role"] for r in records if r["user"] == "alice"} == {"vault_administrator"}


async def test_dual_authorization_needs_two_tokens(tmp_path: Path) -> None:
    """alice authorizes, bob destroys; the same token cannot do both; a withdrawn authorization allows nothing."""
    async with served_world(tmp_path) as served:
        vault = (await served.api.api("POST", "/vaults", json_body={"name": "dual", "dual_auth": True})).ok(201)
        kind = "aws_kms"
        alice, bob, dave = served.remote("alice"), served.remote("bob"), served.remote("dave")
        await alice.ok("keystore", "connect", "--vault", vault["name"], "--name", kind, *_connect(served, kind))
        await alice.ok("template", "create", "--vault", "dual", "--name", "t", "--keystore", kind)
        key, _ = await _gather([alice.ok("key", "create", "--template", "t", "--label", n) for n in ("d1", "d2")])

        unauthorized = await bob("key", "destroy", "d1")
        assert unauthorized.code == 3 and "authorize-deletion" in unauthorized.err, unauthorized
        authorized = await alice.ok("key", "authorize-deletion", "d1")
        assert authorized["deletion_authorization"]["authorized_by"] == "alice"
        again = await dave("key", "authorize-deletion", "d1")
        assert again.code == 3 and "already authorized by alice" in again.err, again
        same = await alice("key", "destroy", "d1")
        assert same.code == 3 and "different user" in same.err and "alice" in same.err, same
        for refused in await _gather(  # a self-declared user is nobody in particular
            [served.direct("key", "destroy", "d1"), served.direct("key", "authorize-deletion", "d2")]
        ):
            assert refused.code == 3, refused
            assert refused.err == "error: dual authorization needs authenticated users: use --server\n"

        destroyed = await bob.ok("key", "destroy", "d1")
        assert destroyed["state"] == "destroyed" and destroyed["deletion_authorization"] is None

        await alice.ok("key", "authorize-deletion", "d2")
        assert (await alice.ok("key", "withdraw-authorization", "d2"))["deletion_authorization"] is None
        withdrawn = await bob("key", "destroy", "d2")
        assert withdrawn.code == 3 and "authorize-deletion" in withdrawn.err

        records = await bob.ok("audit", "list", "--object", key["id"])
        assert [(r["action"], r["user"], r["source"], r["outcome"]) for r in records] == [
            ("key.create", "alice", "api", "accepted"),
            ("key.destroy", "bob", "api", "refused"),
            ("key.authorize_deletion", "alice", "api", "accepted"),
            ("key.authorize_deletion", "dave", "api", "refused"),
            ("key.destroy", "alice", "api", "refused"),
            ("key.destroy", "operator", "cli-direct", "refused"),  # refused directly, filed under the key too
            ("key.destroy", "bob", "api", "accepted"),
        ]
        assert await served.direct.ok("audit", "list", "--object", "d1") == records  # by label: the same
