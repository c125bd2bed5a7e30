"""The console's guards over HTTP, without a browser (so they run wherever the daemon runs): `keyorch serve` as a
subprocess with the four fakes. Sign-in with the API's tokens, the session cookie's attributes, the security
headers, CSRF, a reader's forged POST, sign-out."""

from __future__ import annotations

from pathlib import Path

from yarl import URL

from tests.daemon.harness import ADMIN_TOKEN
from tests.web.harness import READER_TOKEN, ConsoleClient, console_world


async def test_sign_in_csrf_roles_and_sign_out_guard_every_change(tmp_path: Path) -> None:
    async with console_world(tmp_path) as cw:
        key = await cw.active_key("guarded")
        admin, reader, stranger = ConsoleClient(cw.url), ConsoleClient(cw.url), ConsoleClient(cw.url)
        try:
            # signed out: every page leads to the sign-in page, which names what it wants
            page = await stranger.get(f"/ui/keys/{key['id']}")
            assert page.status == 200 and "/ui/sign-in" in page.url and "API token" in page.text, page.url
            assert (await stranger.get("/ui")).url.endswith("/ui/sign-in?next=/ui/keys"), "/ui leads in"
            csp = page.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
            assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
            form = await stranger.get("/ui/sign-in")
            refused = await stranger.post("/ui/sign-in", {"csrf": form.csrf, "token": "not-a-token", "next": ""})
            assert refused.status == 401 and "not valid" in refused.text, refused.text[:300]
            no_csrf = await stranger.post("/ui/sign-in", {"token": ADMIN_TOKEN})
            assert no_csrf.status == 403, no_csrf.status

            # signed in with the admin's API token: a session cookie, HttpOnly and SameSite=Strict, of /ui only
            async with admin.session.get(cw.url + "/ui/sign-in") as resp:
                nonce = await resp.text()
            csrf = nonce.split('name="csrf" value="')[1].split('"')[0]
            async with admin.session.post(
                cw.url + "/ui/sign-in",
                data={"csrf": csrf, "token": ADMIN_TOKEN, "next": "/ui/keys"},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/ui/keys", resp.status
                cookie = resp.cookies["keyorch_console"]
                assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui", cookie
                assert ADMIN_TOKEN not in resp.headers.getall("Set-Cookie")[0]
            keys = await admin.get("/ui/keys")
            assert keys.status == 200 and "guarded" in keys.text, keys.text[:500]
            details = await admin.get(f"/ui/keys/{key['id']}")
            assert 'data-action="deactivate"' in details.text and "Sync key" in details.text

            # a changing form without its CSRF token: 403, nothing done
            forged = await admin.post(f"/ui/keys/{key['id']}/deactivate", {"version": str(key["version"])})
            assert forged.status == 403 and "CSRF" in forged.text, forged.text[:500]
            wrong = await admin.post(f"/ui/keys/{key['id']}/deactivate", {"csrf": "x" * 43, "version": "1"})
            assert wrong.status == 403
            assert (await cw.api.api("GET", f"/managed_keys/{key['id']}")).ok()["state"] == "active"

            # a reader sees no action, and a POST forged from the reader's own session (valid CSRF) is refused 403
            await reader.sign_in(READER_TOKEN)
            seen = await reader.get(f"/ui/keys/{key['id']}")
            assert seen.status == 200 and "guarded" in seen.text
            assert "data-action=" not in seen.text and "Sync key" not in seen.text, "a reader is offered actions"
            confirm = await reader.get(f"/ui/keys/{key['id']}/deactivate")
            assert confirm.status == 403, confirm.status
            for action in ("deactivate", "sync"):
                posted = await reader.post(
                    f"/ui/keys/{key['id']}/{action}", {"csrf": seen.csrf, "version": str(key["version"])}
                )
                assert posted.status == 403 and "reader" in posted.text, (action, posted.status, posted.text[:500])
            assert (await cw.api.api("GET", f"/managed_keys/{key['id']}")).ok()["state"] == "active"
            trail = (await cw.api.api("GET", f"/audit_records?object={key['id']}")).ok()["audit_records"]
            refusals = [r for r in trail if r["outcome"] == "refused" and r["user"] == "rita"]
            assert {(r["action"], r["source"]) for r in refusals} == {
                ("key.deactivate", "console"),
                ("key.sync", "console"),
            }, refusals

            # stale confirmation: the key changed since the page was shown -> 412, nothing done
            stale = await admin.post(f"/ui/keys/{key['id']}/deactivate", {"csrf": details.csrf, "version": "999"})
            assert stale.status == 412 and "changed since" in stale.text, stale.text[:500]

            # the admin deactivates through the confirmation: the API's own operation, audited as the console's
            confirm = await admin.get(f"/ui/keys/{key['id']}/deactivate")
            assert confirm.status == 200 and "yes: enable it again" in confirm.text, confirm.text[:3000]
            done = await admin.post(
                f"/ui/keys/{key['id']}/deactivate", {"csrf": confirm.csrf, "version": str(key["version"])}
            )
            assert done.status == 200 and done.url.endswith(f"/ui/keys/{key['id']}?done=deactivate"), done.url
            assert (await cw.api.api("GET", f"/managed_keys/{key['id']}")).ok()["state"] == "deactivated"
            trail = (await cw.api.api("GET", f"/audit_records?object={key['id']}")).ok()["audit_records"]
            assert any(
                r["action"] == "key.deactivate" and r["outcome"] == "accepted" and r["source"] == "console"
                for r in trail
            ), trail

            # signed out: the session is over, also for its old cookie
            old = admin.session.cookie_jar.filter_cookies(URL(cw.url + "/ui/"))["keyorch_console"].value
            out = await admin.post("/ui/sign-out", {"csrf": done.csrf})
            assert out.status == 200 and "/ui/sign-in" in out.url
            assert "/ui/sign-in" in (await admin.get("/ui/keys")).url
            replay = await stranger.get("/ui/keys", cookies={"keyorch_console": old})
            assert "/ui/sign-in" in replay.url, "a signed-out session's cookie still works"
            forged_cookie = await stranger.get("/ui/keys", cookies={"keyorch_console": old[:-4] + "AAAA"})
            assert "/ui/sign-in" in forged_cookie.url

            # the static files are there, htmx among them
            htmx = await stranger.get("/ui/static/htmx.min.js")
            assert htmx.status == 200 and 'version:"2.0.11"' in htmx.text
        finally:
            for client in (admin, reader, stranger):
                await client.close()
