"""Prometheus metrics of the daemon, in a registry of keyorch's own (not the process-global one).

Call the ``record_*`` / ``set_*`` functions where things happen; ``render()`` gives the text
exposition format served at ``/metrics``. Label values are bounded by design: outcomes and
statuses are short fixed vocabularies, keystores are the configured ones.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# No `*_created` series: they double the output and say only when the process started.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

RECONCILES = Counter(
    "keyorch_reconciles_total",
    "Reconciles of a managed key, by outcome (e.g. converged, requeued, failed).",
    ["outcome"],
    registry=REGISTRY,
)
PROVIDER_CALLS = Counter(
    "keyorch_provider_calls_total",
    "Calls to a keystore's provider API, by keystore, operation and status (ok or an error kind).",
    ["keystore", "operation", "status"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "keyorch_provider_retries_total",
    "Provider calls retried after a transient error, by keystore and operation.",
    ["keystore", "operation"],
    registry=REGISTRY,
)
THROTTLES = Counter(
    "keyorch_provider_throttles_total",
    "Provider answers that asked keyorch to slow down (rate limited), by keystore.",
    ["keystore"],
    registry=REGISTRY,
)
KEYS_RECONCILED = Counter(
    "keyorch_keys_reconciled",
    "Managed keys this replica reconciled (a run that decided something), for the share of each replica.",
    registry=REGISTRY,
)
CLUSTER_MEMBERS = Gauge(
    "keyorch_cluster_members",
    "Replicas sharing the database, as this replica last saw them (1 on SQLite).",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "keyorch_queue_depth",
    "Managed keys waiting in the reconcile work queue.",
    registry=REGISTRY,
)
OUT_OF_SYNC = Gauge(
    "keyorch_out_of_sync_keys",
    "Managed keys flagged out of sync, by keystore.",
    ["keystore"],
    registry=REGISTRY,
)
KEYSTORE_UP = Gauge(
    "keyorch_keystore_up",
    "1 when the keystore answered its last health check and listing in time, 0 when it did not "
    "(its keys are flagged connection_error until it answers again), by keystore.",
    ["keystore"],
    registry=REGISTRY,
)
ROTATIONS = Counter(
    "keyorch_rotations_total",
    "Attempts of the reconciler to make a keystore serve a key's current version, by keystore and outcome: "
    "rotated (a rotation sent and answered), recognised (found already made: after a lost answer or a crash, "
    "or by the provider's own rotation; nothing sent), in_doubt (sent, not answered: recognised or sent again "
    "after a read), failed (nothing sent; retried), refused (the provider said no, e.g. its own rotation limit, "
    "or the adapter refused before sending; retried on the long backoff).",
    ["keystore", "outcome"],
    registry=REGISTRY,
)
#: the outcomes of ``keyorch_rotations_total``
ROTATION_OUTCOMES = ("rotated", "recognised", "in_doubt", "failed", "refused")
KEYS_OVERDUE_FOR_ROTATION = Gauge(
    "keyorch_keys_overdue_for_rotation",
    "Active managed keys whose scheduled rotation is due and not made, as the scheduler's last pass left them.",
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "keyorch_reconcile_duration_seconds",
    "Time taken by one reconcile of one managed key.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)


def record_reconcile(outcome: str, duration_seconds: float | None = None) -> None:
    RECONCILES.labels(outcome=outcome).inc()
    if duration_seconds is not None:
        RECONCILE_DURATION.observe(max(0.0, duration_seconds))


def record_provider_call(keystore: str, operation: str, status: str) -> None:
    PROVIDER_CALLS.labels(keystore=keystore, operation=operation, status=status).inc()


def record_retry(keystore: str, operation: str) -> None:
    RETRIES.labels(keystore=keystore, operation=operation).inc()


def record_throttle(keystore: str) -> None:
    THROTTLES.labels(keystore=keystore).inc()


def record_rotation(keystore: str, outcome: str) -> None:
    """One rotation attempt in one keystore; ``outcome`` is one of :data:`ROTATION_OUTCOMES`."""
    ROTATIONS.labels(keystore=keystore, outcome=outcome).inc()


def record_key_reconciled() -> None:
    KEYS_RECONCILED.inc()


def set_cluster_members(count: int) -> None:
    CLUSTER_MEMBERS.set(count)


def set_queue_depth(depth: int) -> None:
    QUEUE_DEPTH.set(depth)


def set_out_of_sync(counts: dict[str, int]) -> None:
    """The out-of-sync count of every keystore; keystores no longer listed are dropped."""
    OUT_OF_SYNC.clear()
    for keystore, count in counts.items():
        OUT_OF_SYNC.labels(keystore=keystore).set(count)


def set_keystores_up(up: dict[str, bool]) -> None:
    """Whether each keystore answers; keystores no longer listed are dropped."""
    KEYSTORE_UP.clear()
    for keystore, answering in up.items():
        KEYSTORE_UP.labels(keystore=keystore).set(1 if answering else 0)


def set_keys_overdue_for_rotation(count: int) -> None:
    KEYS_OVERDUE_FOR_ROTATION.set(count)


def render() -> bytes:
    """The metrics in the Prometheus text exposition format (``CONTENT_TYPE``)."""
    return generate_latest(REGISTRY)
