"""The cost model: arithmetic on a tiny price file, counts from template.yaml and from the code."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bench import cost
from bench.cost import Sizing, Workload

pytestmark = pytest.mark.unit

SIZING = Sizing(
    emit_memory_mb=1024,
    get_memory_mb=256,
    worker_vcpu=0.25,
    worker_memory_gb=0.5,
    worker_min_tasks=1,
    worker_concurrency=4,
    aurora_min_acu=0.5,
    state_machine_type="EXPRESS",
    happy_path_states=1,
    alarms=3,
    autoscaling_alarm_metrics=4,
    kms_keys=1,
    dynamodb_tables=4,
    log_groups=6,
)


def tiny_prices() -> dict[str, Any]:
    """Round numbers, so each line item can be checked by hand."""
    return {
        "region": "test-1",
        "as_of": "2000-01-01",
        "api_gateway": {
            "rest_per_million_tiers": [[1_000_000, 1.0], [None, 0.5]],
            "http_per_million_tiers": [[None, 0.1]],
        },
        "lambda": {"arm64_per_gb_second": 1.0, "per_million_requests": 1.0},
        "dynamodb": {
            "on_demand_per_million_write_units": 1.0,
            "on_demand_per_million_read_units": 1.0,
            "storage_per_gb_month": 0.0,
        },
        "s3": {"put_per_1000": 1.0, "get_per_1000": 1.0, "standard_storage_per_gb_month": 0.0},
        "step_functions": {
            "standard_per_1000_transitions": 1.0,
            "express_per_million_requests": 1.0,
            "express_per_gb_second": 1.0,
        },
        "sqs": {"standard_per_million_requests": 1.0},
        "fargate": {"arm64_per_vcpu_hour": 4.0, "arm64_per_gb_hour": 2.0},
        "aurora": {
            "serverless_v2_per_acu_hour": 2.0,
            "storage_per_gb_month": 0.0,
            "per_million_io_requests": 0.0,
            "data_api_per_million_requests": 1.0,
        },
        "secrets_manager": {"per_secret_month": 1.0, "per_10k_api_calls": 0.0},
        "kms": {"per_key_month": 1.0, "per_10k_requests": 0.0},
        "cloudwatch": {
            "logs_ingestion_per_gb": 0.0,
            "logs_storage_per_gb_month": 0.0,
            "custom_metric_month": 1.0,
            "standard_alarm_metric_month": 1.0,
        },
        "xray": {"per_million_traces_recorded": 1.0},
        "cloudfront": {
            "per_10k_https_requests": 1.0,
            "data_out_per_gb": 0.0,
            "data_to_origin_per_gb": 0.0,
        },
        "waf": {"per_web_acl_month": 1.0, "per_rule_month": 1.0, "per_million_requests": 1.0},
    }


def lines_by_item(volume: int, workload: Workload) -> dict[str, cost.Line]:
    return {
        f"{line.service}: {line.item}": line
        for line in cost.model(volume, tiny_prices(), SIZING, workload)
    }


def test_tiers_charge_each_band_at_its_price() -> None:
    tiers: list[list[float | None]] = [[1_000_000, 1.0], [2_000_000, 0.5], [None, 0.25]]
    assert cost.tiered(500_000, tiers) == pytest.approx(0.5)
    assert cost.tiered(4_000_000, tiers) == pytest.approx(1.0 + 1.0 + 0.25)


def test_per_request_lines_on_the_tiny_price_file() -> None:
    w = Workload(xray=False)
    lines = lines_by_item(1_000_000, w)
    # One POST and one GET per invoice: 2 M requests; first million at $1, the rest at $0.50.
    assert lines["API Gateway: REST requests"].variable == pytest.approx(1.5)
    assert lines["CloudFront: HTTPS requests"].variable == pytest.approx(200.0)  # $1 per 10k
    assert lines["WAF: requests"].variable == pytest.approx(2.0)
    assert lines["Lambda: EmitFn requests"].variable == pytest.approx(1.0)
    assert lines["S3: 3 PUT per invoice"].variable == pytest.approx(3000.0)  # $1 per 1000
    assert lines["S3: 1 GET/HEAD per invoice"].variable == pytest.approx(1000.0)
    # Express: $1 per million + 0.1 s x 64 MB at $1 per GB-s.
    assert lines["Step Functions: Express requests + GB-s"].variable == pytest.approx(
        1.0 + 1e6 * 0.1 * 64 / 1024
    )
    assert lines["SQS: 3.05 requests per invoice"].variable == pytest.approx(3.05)
    assert lines["Aurora: Data API requests"].variable == pytest.approx(1.0)
    assert all(
        line.per_request
        for line in lines.values()
        if "requests" in line.item.lower() and line.service not in ("Secrets Manager",)
    )


def test_dynamodb_units_are_counted_from_the_calls() -> None:
    sizes = cost.item_sizes()
    assert all(size < 1024 for size in sizes.values())  # every item fits one write unit today
    units = cost.ddb_units(Workload(), sizes)
    # emit: counter + idempotency put + invoice put (and its PendingIndex entry) + idempotency
    # update; the key's invoice and the tenant read
    assert units["emit"] == (5, 2)
    # worker: processing + signed key + issued (and the PendingIndex entry it removes); two
    # consistent gets
    assert units["worker"] == (4, 2)
    assert units["get"] == (0, 1)
    assert cost.ddb_units(Workload(get_consistent=False), sizes)["get"] == (0, 0.5)
    assert cost.ddb_units(Workload(idempotency_share=0.0), sizes)["emit"] == (3, 1)
    bigger = cost.ddb_units(Workload(issued_item_extra_bytes=2048), sizes)["worker"]
    assert bigger[0] == 3 + math.ceil((sizes["invoice"] + 2048) / 1024)


def test_dynamodb_item_size_rules() -> None:
    assert cost.ddb_size({"ab": {"S": "xyz"}}) == 5
    assert cost.ddb_size({"n": {"N": "123"}}) == 1 + 3
    assert cost.ddb_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)


def test_fixed_baseline_and_worker_scaling() -> None:
    w = Workload(xray=False, worker_invoices_per_second=1.0, worker_target_utilization=1.0)
    task_hour = 0.25 * 4.0 + 0.5 * 2.0  # $2 per task-hour
    low = lines_by_item(1000, w)
    assert low["Fargate: 1 task always on"].fixed == pytest.approx(730 * task_hour)
    assert low["Fargate: tasks above the minimum"].variable == 0
    assert low["Aurora: 0.5 ACU minimum"].fixed == pytest.approx(0.5 * 730 * 2.0)
    assert low["WAF: web ACL + rules"].fixed == pytest.approx(1.0 + w.waf_rules)
    # 3,600,000 invoices at 1/s need 1,000 task-hours: 270 above the always-on task.
    high = lines_by_item(3_600_000, w)
    assert high["Fargate: tasks above the minimum"].variable == pytest.approx(270 * task_hour)


def test_summary_splits_fixed_variable_and_floor() -> None:
    lines = [
        cost.Line("A", "fixed", fixed=10.0),
        cost.Line("A", "requests", variable=2.0, per_request=True),
        cost.Line("B", "duration", variable=3.0),
    ]
    s = cost.summarize(1_000_000, lines)
    assert (s.fixed, s.variable, s.floor, s.total) == (10.0, 5.0, 2.0, 15.0)
    assert s.variable_per_million == pytest.approx(5.0)
    assert s.per_invoice == pytest.approx(15.0 / 1e6)
    ((name, per_million),) = s.dominant(1)
    assert name == "B" and per_million == pytest.approx(3.0)


def test_express_and_standard_prices() -> None:
    prices = tiny_prices()
    assert cost.standard_cost(prices, 1000, 3) == pytest.approx(3.0)
    w = Workload(express_duration_ms=150, express_memory_mb=65)
    # 150 ms bills as 200 ms, 65 MB as 128 MB.
    assert cost.express_cost(prices, 1, w) == pytest.approx(1e-6 + 0.2 * 0.125)


def test_lambda_duration_scales_cpu_only() -> None:
    assert cost.lambda_duration_ms(50, 10, 1769) == pytest.approx(60)
    assert cost.lambda_duration_ms(50, 10, 3538) == pytest.approx(60)  # no faster past 1 vCPU
    assert cost.lambda_duration_ms(50, 10, 442) == pytest.approx(50 + 10 * 1769 / 442)
    requests, gbs = cost.lambda_cost(tiny_prices(), 1000, 512, 99.2)
    assert requests == pytest.approx(0.001)
    assert gbs == pytest.approx(1000 * 0.1 * 0.5)  # 100 ms (1 ms steps, rounded up) x 0.5 GB


def test_xray_sampling() -> None:
    seconds = cost.SECONDS_PER_MONTH
    assert cost.xray_traces(seconds * 0.5, Workload()) == pytest.approx(seconds * 0.5)
    assert cost.xray_traces(seconds * 11, Workload()) == pytest.approx(seconds * (1 + 0.5))
    assert cost.xray_traces(seconds * 11, Workload(xray=False)) == 0


def test_sizing_from_the_template() -> None:
    sizing = Sizing.from_files()
    assert sizing.state_machine_type == "EXPRESS"
    assert sizing.happy_path_states == 1  # EnqueueRequest, End
    assert sizing.emit_memory_mb >= 128 and sizing.get_memory_mb >= 128
    assert sizing.worker_vcpu > 0 and sizing.worker_memory_gb > 0
    assert sizing.aurora_min_acu == 0.5  # the prod branch of !If [IsProd, 0.5, 0]
    assert sizing.kms_keys == 1
    assert sizing.alarms >= 1


def test_happy_path_follows_next_until_end() -> None:
    asl = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Task", "Next": "B"},
            "B": {"Type": "Pass", "Next": "C"},
            "C": {"Type": "Succeed"},
        },
    }
    assert cost.happy_path_states(asl) == 3


def test_shipped_price_file_is_complete(tmp_path: Path) -> None:
    shipped = cost.load_prices()
    assert shipped["region"] == "us-east-1" and shipped["as_of"]
    for service, table in tiny_prices().items():
        if isinstance(table, dict):
            assert set(table) <= set(shipped[service]), service
    copy = tmp_path / "prices.json"
    copy.write_text(json.dumps(tiny_prices()), encoding="utf-8")
    assert cost.load_prices(copy)["region"] == "test-1"


def test_design_changes_only_lower_the_variable_cost() -> None:
    prices, w = cost.load_prices(), Workload()
    base = cost.summarize(10**6, cost.model(10**6, prices, SIZING, w)).variable
    for _, changes in cost.SCENARIOS:
        after = cost.summarize(10**6, cost.model(10**6, prices, SIZING, cost.apply(w, changes)))
        assert after.variable <= base
    best = cost.summarize(10**6, cost.model(10**6, prices, SIZING, cost.combined(w)))
    assert best.variable < base
    assert cost.combined(w).s3_puts_per_invoice == 1


def test_cli_prints_every_volume(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--volume", "10000", "--volume", "1000000"]) == 0
    out = capsys.readouterr().out
    assert "== 10,000 invoices / month" in out and "== 1,000,000 invoices / month" in out
    assert "fixed baseline" in out and "floor" in out and "Express" in out


def test_measurements_feed_the_workload() -> None:
    w = cost.workload_from_measurements(
        Workload(),
        {
            "emit_path_seconds": 100e-6,
            "botocore_call_seconds": 200e-6,
            "cold_start_emit_seconds": 0.4,
            "worker_invoices_per_second": 9.0,
        },
    )
    factor = cost.LAMBDA_CPU_FACTOR
    calls = cost.EMIT_AWS_CALLS * 0.2  # each botocore call at the measured 0.2 ms
    assert w.emit_cpu_ms == pytest.approx((0.1 + calls + cost.POWERTOOLS_MS) * factor, abs=0.01)
    assert w.init_cpu_ms == pytest.approx(400 * factor, abs=1)
    assert w.worker_invoices_per_second == 9.0
    assert replace(w, companies=1).companies == 1


def test_the_template_decides_tracing_logging_and_certificate_caching() -> None:
    """The model prices what the template deploys, not the AWS defaults it replaced."""
    sizing = cost.Sizing.from_files()
    assert sizing.express_log_level == "ERROR"
    assert sizing.trace_fixed_rate == pytest.approx(0.01)
    assert sizing.trace_reservoir_per_second == 0
    assert sizing.certificate_cache_seconds == pytest.approx(21_600)
    w = sizing.applied_to(Workload())
    assert (w.express_log_all, w.xray_rate, w.xray_reservoir_per_second) == (False, 0.01, 0.0)
    assert w.certificate_cache_seconds == pytest.approx(21_600)


# ------------------------------------------------------------------------- network ----
NETWORK_PRICES = {
    "network": {
        "region": "test-1",
        "nat_gateway_per_hour": 1.0,
        "nat_gateway_per_gb_processed": 10.0,
        "public_ipv4_per_hour": 0.5,
    }
}


def test_public_mode_pays_one_address_per_running_task() -> None:
    w = replace(Workload(), worker_invoices_per_second=1.0, worker_target_utilization=1.0)
    traffic = cost.NetworkTraffic()
    quiet = cost.network_cost(1000, NETWORK_PRICES, SIZING, w, traffic)
    assert quiet.public == pytest.approx(cost.HOURS_PER_MONTH * 0.5)  # the one task always on
    busy = cost.network_cost(3600 * 2000, NETWORK_PRICES, SIZING, w, traffic)
    assert busy.public == pytest.approx(2000 * 0.5)  # 2,000 task-hours


def test_nat_mode_pays_hours_address_and_every_byte() -> None:
    w = replace(Workload(), worker_invoices_per_second=1.0, worker_target_utilization=1.0)
    traffic = cost.NetworkTraffic(
        bytes_per_invoice=1024**2, idle_bytes_per_task_hour=0, image_mb=0, task_starts_per_month=0
    )
    c = cost.network_cost(1024, NETWORK_PRICES, SIZING, w, traffic)
    assert c.nat_hours == pytest.approx(cost.HOURS_PER_MONTH * (1.0 + 0.5))
    assert c.nat_processed_gb == pytest.approx(1.0)  # 1,024 invoices x 1 MB
    assert c.nat == pytest.approx(c.nat_hours + 10.0)
    idle = cost.NetworkTraffic(
        bytes_per_invoice=0,
        idle_bytes_per_task_hour=1024**3,
        image_mb=1024,
        task_starts_per_month=2,
    )
    assert cost.network_cost(0, NETWORK_PRICES, SIZING, w, idle).nat_processed_gb == pytest.approx(
        cost.HOURS_PER_MONTH + 2
    )


def test_shipped_network_prices_are_sao_paulo_and_public_is_cheaper_for_small_volumes() -> None:
    prices = cost.load_prices()
    network = prices["network"]
    assert network["region"] == "sa-east-1" and "aws.amazon.com/vpc/pricing" in network["_about"]
    assert set(NETWORK_PRICES["network"]) <= set(network)
    c = cost.network_cost(10_000, prices, SIZING, Workload(), cost.NetworkTraffic())
    assert c.public < c.nat


def test_make_cost_prints_both_network_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--volume", "10000"]) == 0
    out = capsys.readouterr().out
    table = out[out.index("== Network") :]
    assert "sa-east-1" in table and "public" in table and "nat" in table
    assert "NAT gateway 0.093/h + 0.093/GB" in table and "public IPv4 0.005/h" in table
