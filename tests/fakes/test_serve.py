"""`keyorch fakes serve` as a product: a real subprocess, its JSON line, real clients against it.

Most tests start ``python -m keyorch fakes serve`` and talk to it over loopback exactly as a
user's CI would: the credentials file it wrote, the provider's token endpoint, then a provider
call; SIGTERM/SIGINT end it with exit 0. A few in-process tests cover the registry and TLS
helpers directly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyorch.cli.fakes import fakes as fakes_group
from keyorch.fakes import registry
from keyorch.fakes.base import ProviderFake, RunningFake, read_json_object
from keyorch.fakes.faults import FaultsFile
from keyorch.fakes.registry import FAKE_KINDS, FakeStartError, FakeUnavailableError, connect_args, start_fakes
from keyorch.fakes.tls import generate_tls, server_names

STARTUP_TIMEOUT = 30.0
AWS_CONTENT_TYPE = "application/x-amz-json-1.1"
AZURE_API = "api-version=7.4"
GOOGLE_RING_PATH = "/v1/projects/keyorch-fake/locations/us-east1/keyRings/keyorch"
IBM_APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


# -- running the command --------------------------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    doc: dict[str, dict[str, Any]]
    stderr_path: Path

    def url(self, kind: str) -> str:
        return str(self.doc[kind]["endpoint"])

    def option(self, kind: str, name: str) -> str:
        connect: list[str] = self.doc[kind]["connect"]
        return connect[connect.index(name) + 1]

    def credentials(self, kind: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(Path(self.option(kind, "--credentials-file")).read_text())
        return doc

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text()


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "keyorch", "fakes", "serve", *args]


def start_serve(tmp: Path, *args: str) -> Served:
    """Start the command, wait for its one JSON line, and return it parsed."""
    return wait_ready(*spawn_serve(tmp, *args))


def spawn_serve(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    stderr_path = tmp / "serve.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(serve_command(*args), stdout=subprocess.PIPE, stderr=stderr, cwd=tmp)
    return proc, stderr_path


def wait_ready(proc: subprocess.Popen[bytes], stderr_path: Path) -> Served:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise AssertionError(f"no JSON line from fakes serve; stderr: {stderr_path.read_text()}")
    return Served(proc, json.loads(line), stderr_path)


def run_failing(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(serve_command(*args), capture_output=True, text=True, timeout=STARTUP_TIMEOUT, cwd=tmp)


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    running = start_serve(tmp, "--credentials-dir", str(tmp / "creds"))
    yield running
    assert running.stop() == 0


# -- provider clients (the real credential flows) ----------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def google_assertion(account: dict[str, Any]) -> str:
    key = serialization.load_pem_private_key(account["private_key"].encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": account["private_key_id"]}
    claims = {
        "iss": account["client_email"],
        "scope": "https://www.googleapis.com/auth/cloudkms",
        "aud": account["token_uri"],
        "iat": now,
        "exp": now + 3600,
    }
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


async def bearer_token(
    session: aiohttp.ClientSession, kind: str, creds: dict[str, Any], tls: ssl.SSLContext | None = None
) -> str:
    """Run the provider's own token flow with the credentials file's contents."""
    if kind == "azure_key_vault":
        url = f"{creds['authority_host']}/{creds['tenant_id']}/oauth2/v2.0/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "scope": "https://vault.azure.net/.default",
        }
    elif kind == "google_kms":
        url = creds["token_uri"]
        form = {"grant_type": JWT_BEARER, "assertion": google_assertion(creds)}
    else:
        url = creds["iam_url"]
        form = {"grant_type": IBM_APIKEY_GRANT, "apikey": creds["apikey"]}
    async with session.post(url, data=form, ssl=tls if tls is not None else True) as response:
        body = await response.json()
        assert response.status == 200, body
    return str(body["access_token"])


def list_request(served: Served, kind: str) -> tuple[str, str, dict[str, str]]:
    """A harmless provider read: method, URL and the non-auth headers it needs."""
    base = served.url(kind)
    if kind == "aws_kms":
        return "POST", base + "/", {"Content-Type": AWS_CONTENT_TYPE, "X-Amz-Target": "TrentService.ListKeys"}
    if kind == "azure_key_vault":
        return "GET", f"{base}/keys?{AZURE_API}", {}
    if kind == "google_kms":
        return "GET", base + GOOGLE_RING_PATH + "/cryptoKeys", {}
    return "GET", base + "/api/v2/keys", {"bluemix-instance": served.option(kind, "--instance-id")}


def sigv4_headers(url: str, creds: dict[str, Any], target: str, body: bytes) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": AWS_CONTENT_TYPE, "X-Amz-Target": f"TrentService.{target}"},
    )
    SigV4Auth(Credentials(creds["access_key_id"], creds["secret_access_key"]), "kms", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def assert_provider_error_form(kind: str, status: int, headers: Any, body: dict[str, Any]) -> None:
    assert 400 <= status < 500, (status, body)
    if kind == "aws_kms":
        assert isinstance(body["__type"], str) and body["__type"] == headers["X-Amzn-ErrorType"]
        assert isinstance(body["message"], str)
    elif kind == "azure_key_vault":
        assert status == 401 and isinstance(body["error"]["code"], str)
        assert headers["WWW-Authenticate"].startswith("Bearer ")
    elif kind == "google_kms":
        assert status == 401
        assert body["error"]["code"] == 401 and body["error"]["status"] == "UNAUTHENTICATED"
    else:
        assert status == 401
        assert body["metadata"]["collectionType"] == "application/vnd.ibm.kms.error+json"
        assert body["resources"][0]["errorMsg"].startswith("Unauthorized")  # no reasons (docs/providers.md §4.5)


# -- the JSON line and the credentials files ----------------------------------------------------

EXPECTED_OPTIONS: dict[str, dict[str, str]] = {
    "aws_kms": {"--region": "us-east-1"},
    "azure_key_vault": {},
    "google_kms": {"--project": "keyorch-fake", "--location": "us-east1", "--key-ring": "keyorch"},
    "ibm_key_protect": {"--region": "us-south"},
}


def parse_options(connect: list[str]) -> tuple[dict[str, str], set[str]]:
    values: dict[str, str] = {}
    flags: set[str] = set()
    index = 0
    while index < len(connect):
        name = connect[index]
        assert name.startswith("--"), connect
        if name in ("--allow-insecure-http", "--credentials-from-environment", "--no-provider-quotas"):
            flags.add(name)
            index += 1
        else:
            assert name not in values, connect
            values[name] = connect[index + 1]
            index += 2
    return values, flags


async def test_json_line_describes_every_fake(served: Served) -> None:
    assert list(served.doc) == list(FAKE_KINDS)
    ports = set()
    async with aiohttp.ClientSession() as session:
        for kind, entry in served.doc.items():
            assert set(entry) == {"endpoint", "connect", "admin"}
            endpoint = entry["endpoint"]
            assert endpoint.startswith("http://127.0.0.1:")
            ports.add(int(endpoint.rsplit(":", 1)[1]))
            assert entry["admin"] == endpoint + "/_fake/"
            values, flags = parse_options(entry["connect"])
            assert flags == {"--allow-insecure-http", "--no-provider-quotas"}
            assert values.pop("--type") == kind and values.pop("--endpoint") == endpoint
            assert values.pop("--rate-per-second") == "0"  # the fakes enforce no quotas
            credentials_file = Path(values.pop("--credentials-file"))
            assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600
            async with session.get(entry["admin"] + "credentials") as response:
                served_credentials = await response.json()
            assert json.loads(credentials_file.read_text()) == served_credentials
            expected = dict(EXPECTED_OPTIONS[kind])
            if kind == "ibm_key_protect":
                expected["--instance-id"] = served_credentials["instance_id"]
            assert values == expected
    assert len(ports) == len(FAKE_KINDS) and 0 not in ports


@pytest.mark.parametrize("kind", FAKE_KINDS)
async def test_unauthenticated_call_gets_the_provider_error_form(served: Served, kind: str) -> None:
    method, url, headers = list_request(served, kind)
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers, data=b"{}") as r:
        assert_provider_error_form(kind, r.status, r.headers, await r.json(content_type=None))


@pytest.mark.parametrize("kind", ["azure_key_vault", "google_kms", "ibm_key_protect"])
async def test_token_flow_from_credentials_file_then_provider_call_works(served: Served, kind: str) -> None:
    method, url, headers = list_request(served, kind)
    admin = served.doc[kind]["admin"]
    async with aiohttp.ClientSession() as session:
        await session.delete(admin + "requests")
        token = await bearer_token(session, kind, served.credentials(kind))
        async with session.request(method, url, headers={**headers, "Authorization": f"Bearer {token}"}) as r:
            body = await r.json()
            assert r.status == 200, body
        async with session.get(admin + "requests", params={"entries": "false"}) as r:
            log = await r.json()
    assert log["total"] == 2 and log["by_operation"].get("Token") == 1
    if kind == "azure_key_vault":
        assert isinstance(body["value"], list)
    elif kind == "google_kms":
        assert body.get("cryptoKeys", []) == []
    else:
        assert body["metadata"]["collectionType"] == "application/vnd.ibm.kms.key+json"


def test_boto3_with_endpoint_url_and_credentials_file(served: Served) -> None:
    creds = served.credentials("aws_kms")
    kms = boto3.client(
        "kms",
        endpoint_url=served.url("aws_kms"),
        region_name=served.option("aws_kms", "--region"),
        aws_access_key_id=creds["access_key_id"],
        aws_secret_access_key=creds["secret_access_key"],
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        key_id = kms.create_key(Description="made by test_serve")["KeyMetadata"]["KeyId"]
        assert key_id in [k["KeyId"] for k in kms.list_keys()["Keys"]]
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    finally:
        kms.close()


# -- shutdown -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_removes_default_credentials_dir(tmp_path: Path, signum: int) -> None:
    served = start_serve(tmp_path, "--providers", "ibm_key_protect")
    credentials_file = Path(served.option("ibm_key_protect", "--credentials-file"))
    assert credentials_file.exists()
    port = int(served.url("ibm_key_protect").rsplit(":", 1)[1])
    assert served.stop(signum) == 0
    assert "Traceback" not in served.stderr()
    assert not credentials_file.parent.exists()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


async def test_hanging_request_does_not_block_shutdown(tmp_path: Path) -> None:
    faults = tmp_path / "hang.yaml"
    faults.write_text("providers:\n  google_kms:\n    - operation: ListCryptoKeys\n      sequence: [hang]\n")
    served = start_serve(tmp_path, "--providers", "google_kms", "--faults", str(faults))
    method, url, headers = list_request(served, "google_kms")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        pending = asyncio.ensure_future(session.request(method, url, headers=headers))
        await asyncio.sleep(0.3)
        assert await asyncio.to_thread(served.stop) == 0  # stop() fails if the process outlives its own wait
        with pytest.raises(aiohttp.ClientError):
            response = await pending
            response.release()


# -- TLS ----------------------------------------------------------------------------------------


async def test_tls_trusting_the_ca_works_and_without_it_fails(tmp_path: Path) -> None:
    ca_path = tmp_path / "out" / "ca.pem"
    served = start_serve(tmp_path, "--tls", "--ca-out", str(ca_path))
    try:
        trusting = ssl.create_default_context(cafile=str(ca_path))
        async with aiohttp.ClientSession() as session:
            for kind, entry in served.doc.items():
                assert entry["endpoint"].startswith("https://127.0.0.1:")
                values, flags = parse_options(entry["connect"])
                assert values["--ca-file"] == str(ca_path) and flags == {"--no-provider-quotas"}
                port = entry["endpoint"].rsplit(":", 1)[1]
                for host in ("127.0.0.1", "localhost"):
                    async with session.get(f"https://{host}:{port}/_fake/credentials", ssl=trusting) as r:
                        assert r.status == 200
                        creds = await r.json()
                    assert all(not str(v).startswith("http://") for v in creds.values()), kind
                method, url, headers = list_request(served, kind)
                async with session.request(method, url, headers=headers, data=b"{}", ssl=trusting) as r:
                    assert_provider_error_form(kind, r.status, r.headers, await r.json(content_type=None))
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    async with session.get(entry["admin"] + "credentials", ssl=ssl.create_default_context()):
                        pass
            token = await bearer_token(session, "ibm_key_protect", served.credentials("ibm_key_protect"), trusting)
            method, url, headers = list_request(served, "ibm_key_protect")
            headers["Authorization"] = f"Bearer {token}"
            async with session.request(method, url, headers=headers, ssl=trusting) as r:
                assert r.status == 200
        creds = served.credentials("aws_kms")
        kms = boto3.client(
            "kms",
            endpoint_url=served.url("aws_kms"),
            region_name="us-east-1",
            aws_access_key_id=creds["access_key_id"],
            aws_secret_access_key=creds["secret_access_key"],
            verify=str(ca_path),
        )
        try:
            assert (await asyncio.to_thread(kms.list_keys))["Keys"] == []
        finally:
            kms.close()
    finally:
        assert served.stop() == 0


# -- faults -------------------------------------------------------------------------------------

SEQUENCE_PLAN: dict[str, Any] = {
    "seed": 3,
    "providers": {"aws_kms": [{"operation": "ListKeys", "sequence": ["error_503", "throttle", "error_500", "ok"]}]},
}


@pytest.mark.parametrize("suffix", ["yaml", "json"])
async def test_faults_file_sequence_is_served_in_order_and_counted(tmp_path: Path, suffix: str) -> None:
    import yaml

    plan = tmp_path / f"faults.{suffix}"
    plan.write_text(yaml.safe_dump(SEQUENCE_PLAN) if suffix == "yaml" else json.dumps(SEQUENCE_PLAN))
    served = start_serve(tmp_path, "--providers", "aws_kms", "--faults", str(plan))
    try:
        url = served.url("aws_kms") + "/"
        creds = served.credentials("aws_kms")
        statuses, types = [], []
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                headers = sigv4_headers(url, creds, "ListKeys", b"{}")
                async with session.post(url, data=b"{}", headers=headers) as r:
                    statuses.append(r.status)
                    types.append((await r.json(content_type=None) or {}).get("__type"))
            async with session.get(served.doc["aws_kms"]["admin"] + "requests") as r:
                log = await r.json()
            async with session.get(served.doc["aws_kms"]["admin"] + "faults") as r:
                described = await r.json()
    finally:
        assert served.stop() == 0
    assert statuses == [503, 400, 500, 200, 200]
    assert types[1] == "ThrottlingException" and types[3:] == [None, None]
    assert log["by_operation"] == {"ListKeys": 5}
    assert log["faults"] == {"error_503": 1, "throttle": 1, "error_500": 1}
    assert [e["fault"] for e in log["entries"]] == ["error_503", "throttle", "error_500", None, None]
    assert described["seed"] == 3 and described["rules"][0]["served"] == 4


async def fault_pattern(served: Served, kind: str, count: int) -> tuple[list[int], list[str | None]]:
    method, url, headers = list_request(served, kind)
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.request(method, url, headers=headers) as r:
                statuses.append(r.status)
                await r.read()
        async with session.get(served.doc[kind]["admin"] + "requests") as r:
            log = await r.json()
    return statuses, [entry["fault"] for entry in log["entries"]]


async def test_seeded_rate_file_gives_the_same_pattern_twice(tmp_path: Path) -> None:
    rule = {"operation": "*", "rate": 0.5, "faults": ["error_500", "error_503", "throttle"]}
    spawned = {}
    for name, seed in (("first", 11), ("again", 11), ("other", 12)):  # three servers side by side
        plan = tmp_path / f"{name}.json"
        plan.write_text(json.dumps({"seed": seed, "providers": {"azure_key_vault": [rule]}}))
        spawned[name] = spawn_serve(tmp_path / name, "--providers", "azure_key_vault", "--faults", str(plan))
    runs = {}
    for name, (proc, stderr_path) in spawned.items():
        served = wait_ready(proc, stderr_path)
        try:
            runs[name] = await fault_pattern(served, "azure_key_vault", 40)
        finally:
            assert served.stop() == 0
    statuses, faults = runs["first"]
    assert runs["again"] == runs["first"]
    assert runs["other"][1] != faults
    assert 5 < sum(f is not None for f in faults) < 35
    assert set(faults) == {None, "error_500", "error_503", "throttle"}
    expected_status = {None: 401, "error_500": 500, "error_503": 503, "throttle": 429}
    assert statuses == [expected_status[f] for f in faults]


# -- refusing bad input -------------------------------------------------------------------------

BAD_FAULTS_FILES: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "bad.yaml",
        "providers:\n  aws_kms:\n    - operation: CreateKey\n      sequence: [error_503, explode]\n",
        ("providers.aws_kms[0].sequence[1].kind", "'error_500'"),
    ),
    (
        "rate.yaml",
        "providers:\n  azure_key_vault:\n    - rate: 1.5\n      faults: [drop]\n",
        ("providers.azure_key_vault[0].rate", "less than or equal to 1"),
    ),
    (
        "mode.yaml",
        "providers:\n  google_kms:\n    - operation: Token\n",
        ("providers.google_kms[0]", "exactly one of 'sequence' or 'rate'"),
    ),
    ("provider.yaml", "providers:\n  aws: []\n", ("providers.aws", "unknown provider", "aws_kms, azure_key_vault")),
    ("field.json", '{"seeds": 1}', ("field seeds", "Extra inputs")),
    ("syntax.yaml", "providers: [\n", ("not valid YAML", "line 2")),
    ("syntax.json", '{"seed": 1,', ("not valid JSON",)),
    ("list.yaml", "- 1\n- 2\n", ("top level must be a mapping",)),
]


BAD_ARGUMENTS: list[tuple[list[str], tuple[str, ...]]] = [
    (["--providers", "aws_kms,gcp"], ("'gcp'", "aws_kms, azure_key_vault, google_kms, ibm_key_protect")),
    (["--providers", ","], ("allowed values",)),
    (["--faults", "missing.yaml"], ("Cannot read faults file missing.yaml",)),
    (["--ca-out", "ca.pem"], ("--tls",)),
]


def test_bad_faults_file_and_bad_provider_exit_2_from_the_real_command(tmp_path: Path) -> None:
    name, content, fragments = BAD_FAULTS_FILES[0]
    (tmp_path / name).write_text(content)
    assert name in assert_one_error_line(run_failing(tmp_path, "--faults", name), *fragments)
    args, fragments = BAD_ARGUMENTS[0]
    assert_one_error_line(run_failing(tmp_path, *args), *fragments)


# The whole table in process (the same click command, without a Python start-up per row).


def invoke_in_process(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    previous = Path.cwd()
    os.chdir(tmp)
    try:
        result = CliRunner().invoke(fakes_group, ["serve", *args])
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize(("name", "content", "fragments"), BAD_FAULTS_FILES, ids=[b[0] for b in BAD_FAULTS_FILES])
def test_bad_faults_file_exits_2_with_one_sentence(
    tmp_path: Path, name: str, content: str, fragments: tuple[str]
) -> None:
    (tmp_path / name).write_text(content)
    line = assert_one_error_line(invoke_in_process(tmp_path, "--faults", name), *fragments)
    assert name in line


@pytest.mark.parametrize(("args", "fragments"), BAD_ARGUMENTS)
def test_bad_arguments_exit_2_with_one_sentence(tmp_path: Path, args: list[str], fragments: tuple[str]) -> None:
    assert_one_error_line(invoke_in_process(tmp_path, *args), *fragments)


def test_port_in_use_exits_2_with_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_failing(tmp_path, "--providers", "aws_kms", "--port-base", str(port))
    assert_one_error_line(result, f"port {port}", "already in use", "aws_kms")


def test_port_base_gives_fixed_offsets_per_provider(tmp_path: Path) -> None:
    for _ in range(20):
        base = free_port()
        if base + 3 < 65536 and all(_port_free(base + i) for i in range(4)):
            break
    else:
        pytest.skip("no four consecutive free ports")
    served = start_serve(tmp_path, "--providers", "ibm_key_protect,aws_kms", "--port-base", str(base))
    try:
        assert list(served.doc) == ["ibm_key_protect", "aws_kms"]
        assert served.url("aws_kms") == f"http://127.0.0.1:{base}"
        assert served.url("ibm_key_protect") == f"http://127.0.0.1:{base + 3}"
    finally:
        assert served.stop() == 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# -- in process: registry and TLS helpers -------------------------------------------------------


class _Fake(ProviderFake):
    """A minimal fake for the registry's own tests: POST /echo answers its JSON body."""

    def add_routes(self, app: web.Application) -> None:
        async def echo(request: web.Request) -> web.Response:
            return web.json_response(await read_json_object(request))

        app.router.add_post("/echo", echo)

    def operation_for(self, request: web.Request) -> str:
        return "Echo" if request.path == "/echo" else "unknown"

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status)

    def credentials(self, base_url: str) -> dict[str, Any]:
        return {"instance_id": "instance-1", "token": base_url + "/token"}

    def state_snapshot(self) -> dict[str, Any]:
        return {}


def _running(url: str) -> RunningFake:
    return RunningFake(_Fake(), runner=None, url=url)  # type: ignore[arg-type]


def test_connect_args_per_type_plain_and_tls() -> None:
    plain, secure = _running("http://127.0.0.1:1000"), _running("https://127.0.0.1:1000")
    assert connect_args("azure_key_vault", plain, "/c/a.json") == [
        "--type", "azure_key_vault", "--endpoint", "http://127.0.0.1:1000",
        "--credentials-file", "/c/a.json", "--allow-insecure-http",
        "--no-provider-quotas", "--rate-per-second", "0",
    ]  # fmt: skip
    assert connect_args("ibm_key_protect", secure, Path("/c/i.json"), Path("/c/ca.pem")) == [
        "--type", "ibm_key_protect", "--endpoint", "https://127.0.0.1:1000",
        "--region", "us-south", "--instance-id", "instance-1",
        "--credentials-file", "/c/i.json", "--ca-file", "/c/ca.pem",
        "--no-provider-quotas", "--rate-per-second", "0",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="CA certificate"):
        connect_args("aws_kms", secure, "/c/a.json")
    with pytest.raises(ValueError, match="allowed values"):
        connect_args("vault", plain, "/c/a.json")


def test_missing_fake_module_fails_with_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._LOCATIONS, "aws_kms", ("keyorch.fakes.no_such_module", "AwsKmsFake"))
    with pytest.raises(FakeUnavailableError, match=r"aws_kms fake is not available: module keyorch\.fakes\.no_such"):
        registry._lazy_factory("aws_kms")()
    monkeypatch.setitem(registry._LOCATIONS, "aws_kms", ("keyorch.fakes.base", "RunningFake"))
    with pytest.raises(FakeUnavailableError, match="no ProviderFake class RunningFake"):
        registry._lazy_factory("aws_kms")()


def _echo_types() -> dict[str, Any]:
    return {kind: type(kind, (_Fake,), {"kind": kind}) for kind in ("aws_kms", "azure_key_vault")}


async def test_start_fakes_applies_faults_and_stops_what_it_started_on_failure() -> None:
    plan = FaultsFile.model_validate({"providers": {"azure_key_vault": [{"sequence": ["error_503"]}]}})
    cluster = await start_fakes(["aws_kms", "azure_key_vault"], faults_file=plan, types=_echo_types())
    try:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for kind in ("aws_kms", "azure_key_vault", "azure_key_vault"):
                async with session.post(cluster[kind].url + "/echo", json={}) as r:
                    statuses.append(r.status)
        assert statuses == [200, 503, 200]
        port = int(cluster["aws_kms"].url.rsplit(":", 1)[1])
    finally:
        await cluster.stop()
    assert _port_free(port)
    for _ in range(20):  # azure (offset 1) collides with `taken`; aws (offset 0) starts first on base
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            base = taken.getsockname()[1] - 1
            if base <= 1024 or not _port_free(base):
                continue
            taken.listen()
            with pytest.raises(FakeStartError, match=f"azure_key_vault fake: port {base + 1} .* already in use"):
                await start_fakes(["aws_kms", "azure_key_vault"], port_base=base, types=_echo_types())
            break
    else:
        pytest.skip("no free port below a bound one")
    assert _port_free(base)


async def test_tls_material_covers_loopback_names_and_serves() -> None:
    material = generate_tls(server_names("192.0.2.7"))
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(ip) for ip in san.get_values_for_type(x509.IPAddress)) == ["127.0.0.1", "192.0.2.7", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    ca = x509.load_pem_x509_certificate(material.ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert b"PRIVATE KEY" not in material.ca_pem
    assert server_names("0.0.0.0") == ["127.0.0.1", "localhost", "::1"]

    app = web.Application()

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hi")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=material.server_context())
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://localhost:{port}/", ssl=material.client_context()) as r:
                assert await r.text() == "hi"
            other = generate_tls()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"https://127.0.0.1:{port}/", ssl=other.client_context())
    finally:
        await runner.cleanup()


def test_credentials_file_is_private_even_when_it_existed(tmp_path: Path) -> None:
    target = tmp_path / "c.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    registry.write_private_json(target, {"a": 1})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == {"a": 1}


def test_provider_fake_classes_resolve() -> None:
    for kind, factory in registry.FAKE_TYPES.items():
        fake = factory()
        assert isinstance(fake, ProviderFake) and fake.kind == kind


async def test_wildcard_host_advertises_a_loopback_url() -> None:
    cluster = await start_fakes(["azure_key_vault"], host="0.0.0.0", types=_echo_types())
    try:
        url = cluster["azure_key_vault"].url
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        async with aiohttp.ClientSession() as session, session.post(url + "/echo", json={"x": 1}) as r:
            assert await r.json() == {"x": 1}
    finally:
        await cluster.stop()
