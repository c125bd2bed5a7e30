"""keyorch.metrics: a registry of its own, rendered in the text format and parsed back."""

from __future__ import annotations

from prometheus_client import REGISTRY as GLOBAL_REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from keyorch import metrics


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode("utf-8")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(name: str, **labels: str) -> float:
    return samples().get((name, tuple(sorted(labels.items()))), 0.0)


def test_recorded_values_render_and_parse() -> None:
    before_converged = value("keyorch_reconciles_total", outcome="converged")
    before_count = value("keyorch_reconcile_duration_seconds_count")
    before_calls = value("keyorch_provider_calls_total", keystore="ks-aws", operation="disable", status="ok")
    before_retries = value("keyorch_provider_retries_total", keystore="ks-aws", operation="disable")
    before_throttles = value("keyorch_provider_throttles_total", keystore="ks-ibm")

    metrics.record_reconcile("converged", 0.2)
    metrics.record_reconcile("converged", 3.0)
    metrics.record_reconcile("failed")
    metrics.record_provider_call("ks-aws", "disable", "ok")
    metrics.record_provider_call("ks-aws", "disable", "throttled")
    metrics.record_retry("ks-aws", "disable")
    metrics.record_throttle("ks-ibm")
    metrics.set_queue_depth(17)
    metrics.set_out_of_sync({"ks-aws": 2, "ks-ibm": 0})

    assert value("keyorch_reconciles_total", outcome="converged") == before_converged + 2
    assert value("keyorch_reconciles_total", outcome="failed") >= 1
    assert value("keyorch_reconcile_duration_seconds_count") == before_count + 2
    assert value("keyorch_reconcile_duration_seconds_bucket", le="0.25") >= 1
    assert value("keyorch_provider_calls_total", keystore="ks-aws", operation="disable", status="ok") == (
        before_calls + 1
    )
    assert value("keyorch_provider_calls_total", keystore="ks-aws", operation="disable", status="throttled") >= 1
    assert value("keyorch_provider_retries_total", keystore="ks-aws", operation="disable") == before_retries + 1
    assert value("keyorch_provider_throttles_total", keystore="ks-ibm") == before_throttles + 1
    assert value("keyorch_queue_depth") == 17
    assert value("keyorch_out_of_sync_keys", keystore="ks-aws") == 2
    assert value("keyorch_out_of_sync_keys", keystore="ks-ibm") == 0

    metrics.set_out_of_sync({"ks-aws": 1})
    assert ("keyorch_out_of_sync_keys", (("keystore", "ks-ibm"),)) not in samples()

    metrics.set_keystores_up({"ks-aws": True, "ks-ibm": False})
    assert value("keyorch_keystore_up", keystore="ks-aws") == 1
    assert value("keyorch_keystore_up", keystore="ks-ibm") == 0
    metrics.set_keystores_up({"ks-aws": True})
    assert ("keyorch_keystore_up", (("keystore", "ks-ibm"),)) not in samples()

    metrics.set_keys_overdue_for_rotation(3)
    assert value("keyorch_keys_overdue_for_rotation") == 3


def test_families_and_types() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(metrics.render().decode())}
    assert families == {
        "keyorch_reconciles": "counter",
        "keyorch_provider_calls": "counter",
        "keyorch_provider_retries": "counter",
        "keyorch_provider_throttles": "counter",
        "keyorch_queue_depth": "gauge",
        "keyorch_out_of_sync_keys": "gauge",
        "keyorch_keystore_up": "gauge",
        "keyorch_reconcile_duration_seconds": "histogram",
        "keyorch_keys_reconciled": "counter",
        "keyorch_cluster_members": "gauge",
        "keyorch_rotations": "counter",
        "keyorch_keys_overdue_for_rotation": "gauge",
    }
    assert metrics.CONTENT_TYPE.startswith("text/plain")


def test_the_global_registry_is_untouched() -> None:
    metrics.record_reconcile("converged", 0.1)
    assert GLOBAL_REGISTRY.get_sample_value("keyorch_reconciles_total", {"outcome": "converged"}) is None


def test_rotations_are_counted_by_keystore_and_outcome() -> None:
    before = {o: value("keyorch_rotations_total", keystore="ks-gcp", outcome=o) for o in metrics.ROTATION_OUTCOMES}
    for outcome in ("in_doubt", "recognised", "rotated", "rotated"):
        metrics.record_rotation("ks-gcp", outcome)
    after = {o: value("keyorch_rotations_total", keystore="ks-gcp", outcome=o) for o in metrics.ROTATION_OUTCOMES}
    assert {o: after[o] - before[o] for o in after} == {
        "rotated": 2,
        "recognised": 1,
        "in_doubt": 1,
        "failed": 0,
        "refused": 0,
    }
