"""The seeds' console procedures in a real browser (headless Chromium through selenium) against `keyorch serve` as
a subprocess with the four fakes: deleting a managed key through each confirmation (without JavaScript), Sync key
after a change made in AWS behind keyorch's back (with JavaScript, htmx boosting the pages), and a reader who sees
no action and whose forged POST is refused. Every page is screenshotted (under the test's tmp dir) and checked
with axe-core (no serious or critical violation)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from keyorch.fakes.aws_input import Members
from keyorch.fakes.aws_ops import OPERATIONS as AWS_OPERATIONS
from tests.daemon.harness import ADMIN_TOKEN, eventually
from tests.e2e.harness import EXPECTED, KINDS, aws_keys, provider_states
from tests.web.browser import Browser, chromium_paths
from tests.web.harness import READER_TOKEN, ConsoleWorld, console_world

DAY = 86_400.0


def _let_key_protect_act(cw: ConsoleWorld) -> None:
    """Key Protect takes a key's next action only 30 s after its last one (REQ_TOO_EARLY_ERR): let that pass."""
    cw.world.cluster["ibm_key_protect"].fake.clock.advance(31)


async def _menu(b: Browser) -> list[str]:
    return await b.run(
        lambda: [str(a.get_attribute("data-action")) for a in b.driver.find_elements(By.CSS_SELECTOR, "#actions a")]
    )


async def _choose(b: Browser, action: str) -> None:
    await b.click("#actions summary")
    await b.click(f'#actions a[data-action="{action}"]')


async def _plan_rows(b: Browser) -> dict[str, str]:
    def rows() -> dict[str, str] | None:
        found = b.driver.find_elements(By.CSS_SELECTOR, "#plan tbody tr")
        return {str(r.get_attribute("data-keystore")): str(r.text) for r in found} or None

    return await b.wait(rows, "the per-keystore plan")


def _pass_every_destruction_window(cw: ConsoleWorld) -> None:
    """Each fake's clock moves past its longest pending-destruction window (Azure's 90 days), so each finishes the
    destruction. Google's is then set back once its versions have settled: its token endpoint judges the client's
    JWT (signed on this machine's clock) by the fake's clock."""
    for kind in KINDS:
        cw.world.cluster[kind].fake.clock.advance(91 * DAY)
    google = cw.world.cluster["google_kms"].fake
    google.state_snapshot()  # settles each version whose destroyTime has come
    google.clock.set(datetime.now(UTC))


async def _providers_show(cw: ConsoleWorld, key_id: str, state: str) -> None:
    async def shown() -> bool | None:
        return True if provider_states(cw.world.cluster, key_id) == EXPECTED[state] else None

    await eventually(shown, 40, f"every fake shows the key {state}")


async def test_deleting_a_managed_key_through_each_confirmation_without_javascript(tmp_path: Path) -> None:
    chromium_paths()
    async with console_world(tmp_path) as cw:
        key = await cw.active_key("payroll")
        await cw.active_key("ledger")  # a second key, so the list is a list
        b = Browser(cw.url, tmp_path / "screens", javascript=False)
        b.checker = Browser(cw.url, tmp_path / "screens-axe")
        try:
            await b.checker.sign_in(ADMIN_TOKEN)
            await b.sign_in(ADMIN_TOKEN)
            await b.look("keys-list")
            await b.click(f'#keys a[href="/ui/keys/{key["id"]}"]')
            await b.heading("payroll")
            await b.look("key-details-active")
            assert await _menu(b) == ["rotate", "deactivate", "compromise"], "the state table's actions from active"

            # 1. Active -> Deactivated: the confirmation says each keystore disables it, and that it can be undone
            _let_key_protect_act(cw)
            await _choose(b, "deactivate")
            await b.heading("Deactivate key: payroll")
            plan = await _plan_rows(b)
            assert set(plan) == set(KINDS), plan
            assert all("disable the key" in row and "yes: enable it again" in row for row in plan.values()), plan
            await b.look("confirm-deactivate")
            await b.click("#confirm")
            await b.heading("payroll")
            assert "Done: deactivate" in await b.text(".notice")
            await cw.wait_in_sync(key["id"])
            await _providers_show(cw, key["id"], "deactivated")
            await b.open(f"/ui/keys/{key['id']}")
            assert await _menu(b) == ["reactivate", "compromise", "destroy"], "the state table's actions, deactivated"

            # 2. Deactivated -> Destroyed: scheduled everywhere, undone only in the provider, and until when
            _let_key_protect_act(cw)
            await _choose(b, "destroy")
            await b.heading("Destroy key: payroll")
            plan = await _plan_rows(b)
            assert all("schedule the key's destruction" in row for row in plan.values()), plan
            assert all("not by keyorch" in row and "Until about 20" in row for row in plan.values()), plan
            await b.look("confirm-destroy")
            await b.click("#confirm")
            await b.heading("payroll")
            await cw.wait_in_sync(key["id"])
            await _providers_show(cw, key["id"], "destroyed")
            await b.open(f"/ui/keys/{key['id']}")
            await b.look("key-details-destroyed")
            assert await _menu(b) == ["compromise", "remove"], "the state table's actions, destroyed"
            await b.open("/ui/keys?pending_destruction=1")
            listed = await b.text("#keys tbody")
            assert "payroll" in listed and "ledger" not in listed and "20" in listed, listed
            await b.look("keys-pending-destruction")

            # 3. Remove from vault: refused while the providers keep it pending destruction, naming them ...
            await b.open(f"/ui/keys/{key['id']}")
            await _choose(b, "remove")
            await b.heading("Remove key: payroll")
            blockers = await b.text("#blockers")
            assert all(kind in blockers for kind in KINDS) and "pending destruction until" in blockers, blockers
            assert not await b.has("#confirm"), "a removal that would be refused is offered"
            await b.look("confirm-remove-blocked")

            # ... and done once each provider's window has passed and Sync key saw the keys gone
            _pass_every_destruction_window(cw)
            await b.open(f"/ui/keys/{key['id']}")
            await b.click("#sync-key")
            await b.heading("payroll")
            assert "Sync key done" in await b.text(".notice")
            await _choose(b, "remove")
            await b.heading("Remove key: payroll")
            assert "nothing is done in any keystore" in await b.text("#plan")
            await b.look("confirm-remove")
            await b.click("#confirm")
            await b.heading("Managed keys")
            assert "removed from its vault" in await b.text(".notice")
            assert (await cw.api.api("GET", f"/managed_keys/{key['id']}")).status == 404
            assert "payroll" not in await b.text("#keys tbody")
            trail = (await cw.api.api("GET", f"/audit_records?object={key['id']}")).ok()["audit_records"]
            accepted = [r["action"] for r in trail if r["outcome"] == "accepted" and r["source"] == "console"]
            assert accepted == ["key.deactivate", "key.destroy", "key.remove"], accepted
            assert b.checked, "no page was checked with axe-core"
        finally:
            await b.close()
            await b.checker.close()


def _disable_behind_keyorchs_back(cw: ConsoleWorld, key_id: str) -> None:
    """The AWS fake's own DisableKey run on its store: a change made in AWS outside keyorch."""
    fake = cw.world.cluster["aws_kms"].fake
    [found] = aws_keys(fake.state_snapshot(), key_id)
    AWS_OPERATIONS["DisableKey"](fake.store, Members({"KeyId": found["KeyId"]}))  # type: ignore[attr-defined]


async def _forged_post(b: Browser, path: str, fields: dict[str, str]) -> None:
    """A form the page never offered, made and sent by a script in the user's own session (its cookie and CSRF)."""
    script = (
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "for (const [k, v] of Object.entries(arguments[1])) {"
        "  const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }"
        "document.body.appendChild(f); HTMLFormElement.prototype.submit.call(f);"
    )
    await b.run(b.driver.execute_script, script, path, fields)


async def test_sync_key_after_a_change_in_aws_and_a_reader_who_may_only_look(tmp_path: Path) -> None:
    chromium_paths()
    async with console_world(tmp_path) as cw:
        key = await cw.active_key("orders")
        await cw.active_key("invoices")
        _disable_behind_keyorchs_back(cw, key["id"])
        (await cw.api.api("POST", "/reconcile")).ok()  # a pass sees it: flagged, not overwritten
        assert provider_states(cw.world.cluster, key["id"])["aws_kms"] == "Disabled"

        admin = Browser(cw.url, tmp_path / "screens-admin")
        reader = Browser(cw.url, tmp_path / "screens-reader", width=390, height=844)  # a phone's screen
        try:
            await admin.sign_in(ADMIN_TOKEN)
            assert await admin.run(admin.driver.execute_script, "return typeof htmx") == "object"
            await admin.click("input[name=out_of_sync]")
            await admin.click("form.filters button[type=submit]")
            await admin.wait(lambda: "out_of_sync=1" in admin.path or None, "the out-of-sync filter applied")
            listed = await admin.text("#keys tbody")
            assert "orders" in listed and "invoices" not in listed and "Out of sync" in listed, listed
            assert "aws_kms" in listed, listed
            await admin.look("keys-out-of-sync")
            await admin.click(f'#keys a[href="/ui/keys/{key["id"]}"]')
            await admin.heading("orders")
            aws_row = await admin.text('#targets tr[data-keystore="aws_kms"]')
            assert "Out of sync" in aws_row and "does not hold it active" in aws_row, aws_row
            assert "Key out of sync" in await admin.text(".alert")
            await admin.look("key-details-out-of-sync")

            await admin.click("#sync-key")
            await admin.wait(lambda: "Sync key done" in admin.page_text() or None, "the sync's notice")
            aws_row = await admin.text('#targets tr[data-keystore="aws_kms"]')
            assert "In sync" in aws_row and "active, and active" in aws_row, aws_row
            assert provider_states(cw.world.cluster, key["id"]) == EXPECTED["active"]
            await admin.look("key-details-synced")
            logs: list[dict[str, Any]] = await admin.run(admin.driver.get_log, "browser")
            assert not [e for e in logs if "Content Security Policy" in str(e.get("message"))], logs

            # a reader: everything to see, nothing to do; a POST forged in the reader's own session is refused
            await reader.sign_in(READER_TOKEN)
            await reader.open(f"/ui/keys/{key['id']}")
            await reader.heading("orders")
            assert not await reader.has("#actions") and not await reader.has("#sync-key")
            await reader.look("key-details-reader-phone")
            csrf = await reader.run(
                lambda: reader.driver.find_element(By.CSS_SELECTOR, "form.who input[name=csrf]").get_attribute("value")
            )
            await _forged_post(reader, f"/ui/keys/{key['id']}/deactivate", {"csrf": csrf, "version": "1"})
            await reader.heading("Forbidden")
            assert "reader" in await reader.text(".alert")
            await reader.look("forbidden")
            assert (await cw.api.api("GET", f"/managed_keys/{key['id']}")).ok()["state"] == "active"

            # signed out, the reader's session is over: the sign-in page again
            await reader.click("form.who button")
            await reader.heading("Sign in")
            await reader.open(f"/ui/keys/{key['id']}")
            await reader.heading("Sign in")
            await reader.look("sign-in")
        finally:
            await admin.close()
            await reader.close()
