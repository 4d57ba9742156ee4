"""``python -m infra.soak``: see ``infra/soak/__init__.py``."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .canonical import canonical, compare, report
from .chaos import ChaosResult, run_chaos
from .reference import ReferenceResult, run_reference
from .scenario import OPTIONAL, SENDER_KINDS, Scenario, generate

DEFAULT_SEED = 20261202
DEFAULT_SENDERS = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.soak",
        description="Soak: a scenario applied once in order (in-process) and delivered with duplicates "
        "and reorderings to a local stack over HTTP must end in the same state.",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"scenario seed ({DEFAULT_SEED})")
    parser.add_argument("--senders", type=int, default=DEFAULT_SENDERS, help=f"senders ({DEFAULT_SENDERS})")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=sorted(OPTIONAL),
        metavar="KIND",
        help="leave an event kind out of the scenario (repeatable): "
        + "; ".join(f"{k}: {v}" for k, v in sorted(OPTIONAL.items())),
    )
    parser.add_argument("--concurrency", type=int, default=4, help="CROSSROUTE_CONCURRENCY of the stack (4)")
    parser.add_argument(
        "--pollers",
        type=int,
        help="SQS pollers on the inbound queue: batches ingested at once, as Lambda does for a FIFO queue "
        "(default: --concurrency; the local stack alone runs 1)",
    )
    parser.add_argument("--workers", type=int, default=8, help="threads posting webhooks (8)")
    parser.add_argument(
        "--drain-timeout", type=float, default=900, help="seconds to wait for the queue (900)"
    )
    parser.add_argument(
        "--stock-emulator",
        action="store_true",
        help="run the stack exactly as `make run` does: moto as it comes (no atomic requests, "
        "whole-table copies per transaction: only practical for small --senders), one inbound poller",
    )
    parser.add_argument("--keep-log", action="store_true", help="keep the stack's log (kept anyway on FAIL)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    if args.senders < 1:
        parser.error("--senders must be at least 1")
    if args.pollers is None:
        args.pollers = args.concurrency

    began = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", flush=True)

    scenario = generate(args.seed, args.senders, frozenset(args.without))
    progress(
        f"scenario seed {args.seed}: {len(scenario.senders)} senders, {len(scenario.events)} events, "
        f"{len(scenario.deliveries)} deliveries"
        + (f" (without {', '.join(sorted(args.without))})" if args.without else "")
    )
    reference = run_reference(scenario)
    progress(
        f"reference: {len(scenario.events)} events applied in order and read in {reference.seconds:.1f} s"
    )
    try:
        chaos = run_chaos(
            scenario,
            concurrency=args.concurrency,
            pollers=1 if args.stock_emulator else args.pollers,
            workers=args.workers,
            stock_emulator=args.stock_emulator,
            drain_timeout=args.drain_timeout,
            progress=progress,
        )
    except Exception:  # the stack did not start or died: nothing to compare
        traceback.print_exc()
        print("RESULT: FAIL (the chaos run did not complete)")
        return 1
    wall = time.monotonic() - began

    ref_state, chaos_state = canonical(reference.state), canonical(chaos.state)
    differences = compare(ref_state, chaos_state)
    failures = _failures(reference, chaos, len(differences))
    figures = _figures(
        args, scenario, reference, chaos, ref_state.total(), chaos_state.total(), differences, failures, wall
    )

    print()
    if differences:
        print(f"DIFFERENCES ({len(differences)} group(s) of customers; identifiers as fingerprints):")
        for line in report(differences, scenario):
            print("  " + line)
        print()
    for line in _summary(figures):
        print(line)
    if chaos.log_path is not None:
        if failures or args.keep_log:
            print(f"the local stack's log: {chaos.log_path}")
        else:
            chaos.log_path.unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if not failures else 1


def _failures(reference: ReferenceResult, chaos: ChaosResult, differences: int) -> list[str]:
    failures = []
    if reference.problems:
        failures.append(
            f"{len(reference.problems)} generated payload(s) not parsed cleanly: {reference.problems[:3]}"
        )
    unknown = [v for v, cid in reference.state.found_by.items() if cid is None]
    if unknown:
        failures.append(f"{len(unknown)} identifier(s) of the scenario unknown even in the reference")
    if differences:
        failures.append(f"{differences} group(s) of customers differ between the reference and the chaos run")
    if not chaos.drained:
        failures.append("the inbound queue was not drained in time")
    server_errors = sum(n for status, n in chaos.answers.items() if status >= 500)
    if server_errors:
        failures.append(f"{server_errors} webhook answer(s) were 5xx")
    if chaos.transport_errors:
        failures.append(f"{len(chaos.transport_errors)} webhook call(s) got no answer")
    refused = sum(n for status, n in chaos.answers.items() if 400 <= status < 500)
    if refused:
        failures.append(f"{refused} webhook call(s) were refused (4xx): the scenario is signed and valid")
    if chaos.read_errors:
        failures.append(f"{len(chaos.read_errors)} read(s) over HTTP failed: {chaos.read_errors[:3]}")
    dead = {lid: n for lid, n in chaos.dead_letters.items() if n}
    if dead:
        failures.append(f"messages on dead-letter queues: {dead}")
    if chaos.stack_exit not in (0, None):
        failures.append(f"the local stack exited with {chaos.stack_exit}")
    return failures


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _figures(
    args: argparse.Namespace,
    scenario: Scenario,
    reference: ReferenceResult,
    chaos: ChaosResult,
    ref_customers: int,
    chaos_customers: int,
    differences: list[Any],
    failures: list[str],
    wall: float,
) -> dict[str, Any]:
    latencies = chaos.latencies_ms
    through = chaos.drain_seconds or float("nan")
    return {
        "result": "FAIL" if failures else "PASS",
        "failures": failures,
        "seed": args.seed,
        "senders": len(scenario.senders),
        "senders_by_kind": {k: scenario.sender_counts().get(k, 0) for k in SENDER_KINDS},
        "without": sorted(args.without),
        "events": len(scenario.events),
        "events_by_kind": dict(sorted(scenario.counts().items())),
        "deliveries": len(scenario.deliveries),
        "late_redeliveries": scenario.late,
        "overtaken_events": scenario.overtaken(),
        "webhook_calls": sum(chaos.answers.values()),
        "answers": {str(k): v for k, v in sorted(chaos.answers.items())},
        "concurrency": args.concurrency,
        "inbound_pollers": 1 if args.stock_emulator else args.pollers,
        "workers": args.workers,
        "emulator": "moto (stock)"
        if args.stock_emulator
        else "moto with atomic DynamoDB requests and SQS receives, journaled transactions",
        "reference_seconds": round(reference.seconds, 1),
        "post_seconds": round(chaos.post_seconds, 1),
        "through_seconds": round(chaos.drain_seconds, 1),
        "read_seconds": round(chaos.read_seconds, 1),
        "wall_seconds": round(wall, 1),
        "events_per_second": round(len(scenario.events) / through, 1),
        "deliveries_per_second": round(len(scenario.deliveries) / through, 1),
        "latency_ms": {
            "p50": round(_percentile(latencies, 50), 1),
            "p90": round(_percentile(latencies, 90), 1),
            "p99": round(_percentile(latencies, 99), 1),
            "max": round(max(latencies, default=0.0), 1),
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        },
        "stack_peak_rss_mb": round(chaos.peak_rss_kb / 1024, 1) if chaos.peak_rss_kb else None,
        "consumers": chaos.log_figures,
        "dead_letters": chaos.dead_letters,
        "customers": {"reference": ref_customers, "chaos": chaos_customers},
        "customers_with_merged_from": {
            "reference": sum(bool(v["merged_from"]) for v in reference.state.contacts.values()),
            "chaos": sum(bool(v["merged_from"]) for v in chaos.state.contacts.values()),
        },
        "differing_groups": len(differences),
        "stack_exit": chaos.stack_exit,
    }


def _summary(f: dict[str, Any]) -> list[str]:
    lat, consumers = f["latency_ms"], f["consumers"]
    kinds = ", ".join(f"{k} {n}" for k, n in f["events_by_kind"].items())
    senders = ", ".join(f"{k} {n}" for k, n in f["senders_by_kind"].items())
    answers = ", ".join(f"{k}: {n}" for k, n in f["answers"].items())
    lines = [
        "soak summary",
        f"  seed {f['seed']}, {f['senders']} senders ({senders})"
        + (f", without {', '.join(f['without'])}" if f["without"] else ""),
        f"  events       {f['events']} ({kinds})",
        f"  deliveries   {f['deliveries']} (each event 1-3 times in a random order from {f['workers']} "
        f"threads, {f['late_redeliveries']} of the copies in a second wave after the queue drained); "
        f"webhook calls {f['webhook_calls']} ({answers}); {f['overtaken_events']} events first delivered "
        "after a later event of their sender",
        f"  stack        CROSSROUTE_CONCURRENCY={f['concurrency']}, {f['inbound_pollers']} SQS pollers on "
        f"the inbound queue, {f['emulator']}",
        f"  wall time    {f['wall_seconds']} s (reference in-process {f['reference_seconds']} s, "
        f"posting {f['post_seconds']} s, through until drained {f['through_seconds']} s, "
        f"reads {f['read_seconds']} s)",
        f"  throughput   {f['events_per_second']} events/s, {f['deliveries_per_second']} deliveries/s "
        "(webhooks until the inbound queue was drained)",
        f"  webhook latency ms  p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}",
        f"  stack peak RSS      {f['stack_peak_rss_mb']} MB (VmHWM of the stack process: moto, the gateway, "
        "the webhook handlers and the SQS consumers all run in it)",
        f"  consumers           {consumers.get('records', 0)} records ingested, at most "
        f"{consumers.get('peak_batches_in_flight', 0) or '?'} batches at once, "
        f"{consumers.get('duplicates', 0)} already stored (redeliveries), "
        f"{consumers.get('conflict_retries', 0)} transaction conflicts retried, "
        f"{consumers.get('failed_batches', 0)} batches with failed records, "
        f"{consumers.get('dead_lettered', 0)} dead-lettered, {consumers.get('errors', 0)} error log lines",
        f"  dead-letter queues  {f['dead_letters']}",
        f"  customers           reference {f['customers']['reference']}, chaos {f['customers']['chaos']}, "
        f"differing groups {f['differing_groups']} (with merged_from, not compared: reference "
        f"{f['customers_with_merged_from']['reference']}, chaos {f['customers_with_merged_from']['chaos']})",
    ]
    lines += [f"  FAIL: {reason}" for reason in f["failures"]]
    lines.append(f"RESULT: {f['result']}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
