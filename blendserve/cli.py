"""`blendserve` command line: serve, migrate, openapi, bench."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from blendserve import logs
from blendserve.config import Settings


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """The Settings fields given on the command line (they win over the environment)."""
    fields = ("database_url", "data_dir", "runtime", "model_path", "workers", "log_level")
    return {k: v for k in fields if (v := getattr(args, k, None)) is not None}


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(**_overrides(args))  # type: ignore[arg-type]  # validated by pydantic


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logs.configure(settings.log_format, settings.log_level.upper())  # first: importing the app already logs

    from blendserve.api.workers import serve

    serve(settings, _overrides(args), args.host, args.port)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from blendserve.store.migrate import upgrade

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url())
    print("database at head:", settings.resolved_database_url().split("@")[-1])
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from blendserve.api.app import create_app

    spec = create_app(Settings(dispatcher=False), None, prepare=False).openapi()
    text = json.dumps(spec, indent=2, sort_keys=True) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from blendserve.core.sim.bench import run_schedule_bench

    return run_schedule_bench(args)


def cmd_bench_tree(args: argparse.Namespace) -> int:
    from blendserve.core.sim.tree_bench import run_tree_bench

    return run_tree_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendserve", description="OpenAI-compatible Batch API server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API server and the dispatcher")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--database-url")
    serve.add_argument("--data-dir", type=Path)
    serve.add_argument("--runtime", choices=["local", "simulated", "sglang-http", "sglang-engine", "none"])
    serve.add_argument("--model-path")
    serve.add_argument("--log-level", help="default: BLENDSERVE_LOG_LEVEL or info")
    serve.add_argument("--workers", type=int, help="API worker processes, one of them dispatches (default 1)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    migrate.add_argument("--database-url")
    migrate.add_argument("--data-dir", type=Path)
    migrate.set_defaults(func=cmd_migrate)

    openapi = sub.add_parser("openapi", help="write the app's OpenAPI schema")
    openapi.add_argument("--out", default="openapi/openapi.json")
    openapi.set_defaults(func=cmd_openapi)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    sched = bench_sub.add_parser(
        "schedule", help="BlendServe vs fcfs/dfs/shuffled in the simulator (docs/SCHEDULER.md)"
    )
    source = sched.add_mutually_exclusive_group()
    source.add_argument("--suite", default="multibatch", choices=["multibatch", "paper", "all"])
    source.add_argument("--trace-file", help="replay a JSONL trace (format in docs/SCHEDULER.md)")
    sched.add_argument("--mode", default="sglang,sglang-mixed,overlapped", help="comma-separated engine modes")
    sched.add_argument("--policies", default="fcfs,dfs,shuffled,blendserve,blendserve-oracle")
    sched.add_argument("--seeds", type=int, default=3, help="seeds seed, seed+1, ...: workloads and shuffles")
    sched.add_argument("--seed", type=int, default=0)
    sched.add_argument("--requests", type=int, default=12_000, help="requests per workload (suites)")
    sched.add_argument("--json", help="write {'rows': [...]} here")
    sched.add_argument("--gpu", default="h100")
    sched.add_argument("--model", default="llama-3.1-8b")
    sched.add_argument("--calibration", help="engine constants fitted by bench/gpu_calibrate.py (its JSON)")
    sched.set_defaults(func=cmd_bench)
    tree = bench_sub.add_parser("tree", help="scheduler cost at scale (build, sort, memory, per-admit cost)")
    tree.add_argument("--requests", type=int, default=1_000_000)
    tree.add_argument("--trace-number", type=int, default=1, help="paper trace 1..4 (job mix, weights unsolved)")
    tree.add_argument("--gpu", default="h100")
    tree.add_argument("--model", default="llama-3.1-8b")
    tree.add_argument("--seed", type=int, default=0)
    tree.add_argument("--admit", type=int, default=0, help="admissions to time (0: every request, a full drain)")
    tree.set_defaults(func=cmd_bench_tree)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.func is not cmd_serve:  # serve configures its own (format from Settings, level from --log-level)
        logs.configure("text", logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
