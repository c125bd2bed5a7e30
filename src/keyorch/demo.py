"""`keyorch demo`: a first look, on a temporary SQLite database and the four bundled fakes.

It starts the fakes in-process, connects one keystore of each provider, creates keys from a
template that targets all four, activates them, reconciles, makes one key drift behind keyorch's
back, shows it flagged, syncs it, deactivates and destroys one, and prints the tables after each
step: keyorch's view and what each fake really holds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from keyorch.audit import Actor
from keyorch.crypto import MasterKey, generate_master_key
from keyorch.domain.clock import SystemClock
from keyorch.fakes.registry import (
    AWS_REGION,
    GOOGLE_KEY_RING,
    GOOGLE_LOCATION,
    IBM_REGION,
    FakeCluster,
    start_fakes,
    write_credentials,
)
from keyorch.providers.base import KeyRef
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import ServiceContext
from keyorch.service.keystores import ConnectRequest
from keyorch.store.engine import migrate
from keyorch.store.repository import Store

KINDS = ("aws_kms", "azure_key_vault", "google_kms", "ibm_key_protect")
LABELS = ("payments", "orders", "archive")


def _connect_request(kind: str, url: str, credentials: Path, fake_doc: dict[str, Any]) -> ConnectRequest:
    common: dict[str, Any] = {
        "vault": "demo",
        "name": kind,
        "type": kind,
        "endpoint": url,
        "credentials_file": str(credentials),
        "allow_insecure_http": True,
        "provider_quotas": False,  # the fakes enforce no quotas
        "rate_per_second": 0.0,
    }
    if kind == "aws_kms":
        common["region"] = AWS_REGION
    elif kind == "google_kms":
        common |= {"project": fake_doc["project_id"], "location": GOOGLE_LOCATION, "key_ring": GOOGLE_KEY_RING}
    elif kind == "ibm_key_protect":
        common |= {"region": IBM_REGION, "instance_id": fake_doc["instance_id"]}
    return ConnectRequest(**common)


class Demo:
    def __init__(self, console: Console, workdir: Path) -> None:
        self.console = console
        self.workdir = workdir
        self.store = Store.from_url(f"sqlite:///{workdir / 'keyorch.db'}")
        self.ctx = ServiceContext(
            store=self.store,
            actor=Actor("demo"),
            clock=SystemClock(),
            master_key=MasterKey.from_base64(generate_master_key()),
        )
        self.pool = ClientPool(self.store, self.ctx.master_key)
        self.controller = Controller(self.store, self.pool, self.ctx.clock, workers=8)
        self.cluster: FakeCluster | None = None
        self.names: dict[str, str] = {}

    def step(self, title: str) -> None:
        self.console.print()
        self.console.print(Rule(f"[bold]{escape(title)}"))

    async def keys_table(self) -> None:
        async with self.store.read() as tx:
            all_keys = await tx.list_keys()
        table = Table(title="keyorch: managed keys and their status in each keystore", title_justify="left")
        for column in ("key", "desired state", "keystore", "status", "sync", "reason"):
            table.add_column(column, overflow="fold")
        for key in all_keys:
            for target in key.targets:
                flag = target.sync_flag.value
                style = {"in_sync": "green", "out_of_sync": "bold red", "pending": "yellow"}[flag]
                table.add_row(
                    key.label,
                    f"{key.state.value} ({key.state.code})",
                    self.names.get(target.keystore_id, target.keystore_id),
                    target.status.value,
                    f"[{style}]{flag}[/]",
                    escape(target.reason.value if target.reason else ""),
                )
        self.console.print(table)

    async def fakes_table(self) -> None:
        """Each keystore's own words for each key, listed over its wire protocol."""
        async with self.store.read() as tx:
            labels = {k.id: k.label for k in await tx.list_keys()}
            connected = await tx.list_keystores()
        table = Table(title="what each provider reports (its own state words)", title_justify="left")
        table.add_column("provider")
        for label in LABELS:
            table.add_column(label, overflow="fold")
        for keystore in connected:
            seen: dict[str, str] = {}
            async for observation in (await self.pool.client(keystore)).list_keys():
                found = labels.get(observation.managed_key_id or "")
                if found is not None:
                    seen[found] = observation.raw_state or observation.state.value
            table.add_row(keystore.name, *(escape(seen.get(label, "(absent)")) for label in LABELS))
        self.console.print(table)

    async def reconcile(self, title: str) -> None:
        summary = await self.controller.run_once()
        self.console.print(
            f"reconcile --once: {summary.keys_checked} keys checked, {summary.in_sync} in sync, "
            f"{summary.flagged} flagged, {summary.actions} actions taken, {summary.errors} errors "
            f"(exit code {summary.exit_code})"
        )
        await self.keys_table()
        await self.fakes_table()

    async def run(self) -> int:
        await migrate(self.store.engine)
        self.step("1. start the four fake providers (in-process, loopback)")
        self.cluster = await start_fakes(KINDS)
        credentials = write_credentials(self.cluster, self.workdir / "credentials")
        for kind in KINDS:
            self.console.print(f"  {kind:<16} {self.cluster[kind].url}")

        self.step("2. connect one keystore of each provider; a template that targets all four")
        await vaults.create_vault(self.ctx, "demo")
        for kind in KINDS:
            running = self.cluster[kind]
            doc = running.fake.credentials(running.url)
            ks = await keystores.connect_keystore(self.ctx, _connect_request(kind, running.url, credentials[kind], doc))
            self.names[ks.id] = ks.name
        await templates.create_template(
            self.ctx, vault="demo", name="everywhere", keystores=list(KINDS), naming_scheme="DEMO-{label}"
        )
        for label in LABELS:
            await keys.create_key(self.ctx, template="everywhere", label=label)
        await self.keys_table()

        self.step("3. activate the keys; reconcile creates them in all four keystores")
        for label in LABELS:
            await keys.activate_key(self.ctx, label)
        await self.reconcile("activated")

        self.step("4. someone disables 'payments' in AWS KMS behind keyorch's back; reconcile flags it")
        aws = next(ks for ks, name in self.names.items() if name == "aws_kms")
        payments = await keys.get_key(self.ctx, "payments")
        target = payments.target_for(aws)
        assert target is not None
        async with self.store.read() as tx:
            keystore = await tx.keystore(aws)
        client = await self.pool.client(keystore)
        await client.disable(KeyRef(target.key_id_in_keystore, payments.id))
        await self.reconcile("drift flagged")

        self.step("5. keyorch sync-key payments: push the desired state again")
        summary = await self.controller.run_once(refs=["payments"], push=True, use_listing=False)
        self.console.print(f"sync-key: exit code {summary.exit_code}")
        await self.keys_table()
        await self.fakes_table()

        self.step("6. deactivate and destroy 'archive'; each provider keeps it pending destruction")
        await keys.deactivate_key(self.ctx, "archive")
        await self.reconcile("deactivated")
        await keys.destroy_key(self.ctx, "archive")
        await self.reconcile("destroyed")
        archive = await keys.get_key(self.ctx, "archive")
        for t in archive.targets:
            until = t.pending_destruction_until.isoformat() if t.pending_destruction_until else "-"
            self.console.print(
                f"  {self.names.get(t.keystore_id, t.keystore_id):<16} pending destruction until {until}"
            )

        self.step("7. the rules: disconnecting a keystore that active keys target is refused")
        try:
            await keystores.disconnect_keystore(self.ctx, "aws_kms")
        except Exception as exc:  # the rule's refusal is what this step shows
            self.console.print(f"[red]refused:[/] {escape(getattr(exc, 'message', str(exc)))}")
        self.console.print()
        self.console.print("done; the database and credentials were in a temporary directory, now removed.")
        return 0

    async def close(self) -> None:
        await self.pool.aclose()
        if self.cluster is not None:
            await self.cluster.stop()
        await self.store.close()


async def run_demo(console: Console) -> int:
    with tempfile.TemporaryDirectory(prefix="keyorch-demo-") as tmp:
        demo = Demo(console, Path(tmp))
        try:
            return await demo.run()
        finally:
            await demo.close()
