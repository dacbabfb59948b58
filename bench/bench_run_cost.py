"""Fixed cost of a run: a sensor-size batch through ``ingest_job``, its seconds per step and
its Spark actions (the calls that make Spark run something and wait), by kind.

A champion is trained first on ``--train`` events; then ``--runs`` batches of ``--batch``
events each go through ``ingest_job`` (bronze → silver → gold → enrichment → evaluation,
with the checks), each on the history of the ones before. Classic Spark in this process,
or a warm Spark Connect server with ``--remote sc://127.0.0.1:15002``.
Targets: ≤ 80 Spark actions and ≤ 8 s for a 1,000-event batch on a warm server.

``python bench/bench_run_cost.py [--batch 1000] [--runs 3] [--remote URL]``
"""

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import throwaway_services
from bench_history import _ranges, busy_stream
from dagster import DagsterEventType, DagsterInstance

from anomaly_assets.core import spark_actions
from anomaly_assets.definitions import build_resources, make_definitions
from anomaly_assets.devtools.generator import produce
from anomaly_assets.ingestion.kafka import KafkaResource
from anomaly_assets.ingestion.offsets import fetch_offsets
from anomaly_assets.resources.lakehouse import LakehouseResource
from anomaly_assets.resources.spark import SparkResource


def run_batch(defs, instance, job, ranges, extra_ops=None) -> dict:
    """One run of ``ranges``: wall seconds, seconds and Spark actions per step."""
    ops = {"bronze": {"config": {"ranges": ranges}}, **(extra_ops or {})}
    before, before_s = spark_actions.snapshot(), spark_actions.seconds()
    t0 = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(
        run_config={"ops": ops}, instance=instance, raise_on_error=True
    )
    wall = time.perf_counter() - t0
    calls = spark_actions.since(before)
    secs = spark_actions.seconds()
    secs.subtract(before_s)
    steps = {
        s.step_key: s.end_time - s.start_time
        for s in instance.get_run_step_stats(result.run_id)
        if s.end_time and s.start_time
    }
    writes = []
    for record in instance.all_logs(
        result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
    ):
        mat = record.dagster_event.event_specific_data.materialization
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        if "delta_operation" in meta:
            writes.append(
                f"{mat.asset_key.to_user_string()}: {meta['delta_operation']} "
                f"(+{meta['rows_written']} ~{meta['rows_updated']} "
                f"copied {meta['rows_copied']})"
            )
    return {
        "writes": writes,
        "wall": wall,
        "steps": steps,
        "calls": calls,
        "seconds": secs,
        "per_step": spark_actions.by_step(instance, result.run_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--remote", default="")
    args = parser.parse_args()
    spark = SparkResource(driver_memory="4g", log_level="ERROR", remote=args.remote)
    spark_actions.install()
    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        DagsterInstance.ephemeral() as instance,
        throwaway_services(Path(tmp)) as (bs, mlflow),
    ):
        kafka = KafkaResource(bootstrap_servers=bs, topic="cost")
        lake = LakehouseResource(root=str(Path(tmp) / "lake"), spark=spark)
        defs = make_definitions(
            build_resources(spark, kafka=kafka, lakehouse=lake, mlflow_settings=mlflow)
        )
        gen = busy_stream(3, args.train + args.runs * args.batch)
        train = {"anomaly_model": {"config": {"labels_path": "/nonexistent"}}}
        done: dict[int, int] = {}
        for i in range(args.runs + 1):
            n = args.train if i == 0 else args.batch
            produce(bs, "cost", n, gen, None, 3, log=lambda *_: None)
            ends = fetch_offsets({"bootstrap.servers": bs}, "cost", 10)[1]
            job = "ingest_and_train_job" if i == 0 else "ingest_job"
            out = run_batch(
                defs, instance, job, _ranges(ends, done), None if i else train
            )
            done = dict(ends)
            print(
                f"{'training batch' if i == 0 else f'batch {i}'}: {n:,} events in "
                f"{out['wall']:.1f} s, {sum(out['calls'].values())} Spark actions; steps "
                + ", ".join(
                    f"{k} {v:.1f} s / {out['per_step'].get(k, '-')}"
                    for k, v in out["steps"].items()
                ),
                flush=True,
            )
            print("  writes: " + "; ".join(out["writes"]), flush=True)
            if i:
                results.append(out)
    calls = sum((r["calls"] for r in results), Counter())
    print(
        f"\nSpark actions per {args.batch:,}-event run, by kind (mean of {len(results)}):"
    )
    for kind, n in spark_actions.by_kind(calls).most_common():
        print(f"  {n / len(results):6.1f}  {kind}")
    secs = sum((r["seconds"] for r in results), Counter())
    print(
        f"\n... and by the line that asked (actions, seconds in them; "
        f"{sum(secs.values()) / len(results):.1f} s of Spark actions per run):"
    )
    sites = spark_actions.by_site(calls)
    time_by_site = spark_actions.by_site(secs)
    for site, s in time_by_site.most_common():
        print(f"  {sites[site] / len(results):6.1f}  {s / len(results):6.2f} s  {site}")
    walls = [r["wall"] for r in results]
    actions = [sum(r["calls"].values()) for r in results]
    print(
        f"\n{args.batch:,}-event batch through ingest_job: median {statistics.median(walls):.1f} s "
        f"(target ≤ 8 s on a warm server), {statistics.median(actions):.0f} Spark actions "
        "(target ≤ 80)"
    )


if __name__ == "__main__":
    main()
