"""Command line: ``kubekeeper policy|node|cluster ...``; returns documented exit codes.

0 success, 1 the run finished with failed actions (or the deletion cap aborted
it), 2 bad usage or an invalid policy, 3 Docker or the API server unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import yaml
from loguru import logger

from agents import errors
from agents.policy import Policy, to_plain
from agents.policy_loader import PolicyInvalid, load_policy
from agents.units import parse_duration

CLUSTER_TASKS = ("requests", "revisions", "jobs", "all")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` owns every exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for the console script and for tests (``main([...])``)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{exc}\n(see kubekeeper --help)", file=sys.stderr)
        return errors.EXIT_USAGE
    except SystemExit as exc:  # --help and --version exit through argparse
        return int(exc.code or 0)
    _configure_logging(getattr(args, "verbose", False))
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return errors.EXIT_USAGE
    try:
        return args.handler(args)
    except PolicyInvalid as exc:
        print(f"invalid policy ({len(exc.errors)} problems, nothing was changed):\n{exc}",
              file=sys.stderr)
        return errors.EXIT_USAGE
    except errors.Unreachable as exc:
        logger.error("{}", exc)
        return errors.EXIT_UNREACHABLE


def _build_parser() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--policy", default=os.environ.get("KUBEKEEPER_POLICY", "policies.yaml"),
                        help="policy file (default: $KUBEKEEPER_POLICY or ./policies.yaml)")
    common.add_argument("--log-format", choices=("auto", "json", "text"), default="auto",
                        help="report format; auto is text on a terminal, JSON lines otherwise")
    common.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=None,
                        help="override the policy's dryRun for this run")
    common.add_argument("-v", "--verbose", action="store_true", help="debug diagnostics on stderr")

    parser = _Parser(prog="kubekeeper", description="Kubernetes node and cluster maintenance.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_policy_commands(commands, common)
    _add_node_commands(commands, common)
    _add_cluster_commands(commands, common)
    return parser


def _add_policy_commands(commands: argparse._SubParsersAction, common: _Parser) -> None:
    policy = commands.add_parser("policy", help="check or show the policy").add_subparsers(
        dest="policy_command", parser_class=_Parser)
    check = policy.add_parser("check", parents=[common], help="validate a policy file")
    check.add_argument("file", nargs="?", help="policy file (default: --policy)")
    check.set_defaults(handler=_policy_check)
    show = policy.add_parser("show", parents=[common], help="print the effective policy")
    show.add_argument("--namespace", help="apply the overrides matching this namespace")
    show.set_defaults(handler=_policy_show)


def _add_node_commands(commands: argparse._SubParsersAction, common: _Parser) -> None:
    node = commands.add_parser("node", help="the node agent (Docker cleanup, log audit)")
    sub = node.add_subparsers(dest="node_command", parser_class=_Parser)
    for name, helptext in (("run", "clean up, once or as a daemon"), ("plan", "show the plan")):
        cmd = sub.add_parser(name, parents=[common], help=helptext)
        cmd.add_argument("--docker-host", default=None,
                         help="Docker endpoint (default: $DOCKER_HOST, else "
                              "unix:///var/run/docker.sock)")
        cmd.add_argument("--host-root", default="/",
                         help="where the host's filesystem is mounted (e.g. /host in a pod)")
        cmd.add_argument("--node-name", default=os.environ.get("NODE_NAME"),
                         help="node name for the report (default: $NODE_NAME)")
        cmd.add_argument("--job", choices=("all", "cleanup", "logs"), default="all",
                         help="which node job to run (default: both)")
        cmd.add_argument("--state-dir",
                         default=os.environ.get("KUBEKEEPER_STATE_DIR", "/var/lib/kubekeeper"),
                         help="where the node's first-seen record is kept (default: "
                              "$KUBEKEEPER_STATE_DIR or /var/lib/kubekeeper)")
        cmd.add_argument("--runtime-timeout", type=_duration, default=timedelta(seconds=30),
                         help="how long one Docker call may take before it is checked "
                              "(default 30s)")
        if name == "run":
            cmd.add_argument("--deadline", type=_duration, default=None,
                             help="each run's budget (e.g. 20m): no action starts after it")
            cmd.add_argument("--once", action="store_true", help="one run, then exit")
            cmd.add_argument("--health-port", type=int, default=None,
                             help="serve /healthz and /metrics on this port (daemon mode)")
            cmd.add_argument("--metrics-port", type=int, default=None,
                             help="serve /metrics (and /healthz) on this port too "
                                  "(daemon mode)")
        cmd.set_defaults(handler=_node, plan_only=name == "plan")


def _add_cluster_commands(commands: argparse._SubParsersAction, common: _Parser) -> None:
    cluster = commands.add_parser("cluster", help="the cluster tasks (run as CronJobs)")
    sub = cluster.add_subparsers(dest="cluster_command", parser_class=_Parser)
    for name, helptext in (("run", "run a task once"), ("plan", "show a task's plan")):
        cmd = sub.add_parser(name, parents=[common], help=helptext)
        cmd.add_argument("task", choices=CLUSTER_TASKS)
        cmd.add_argument("--kubeconfig", default=None,
                         help="kubeconfig (default: in-cluster, else $KUBECONFIG, "
                              "else ~/.kube/config)")
        cmd.add_argument("--context", default=None, help="kubeconfig context")
        cmd.add_argument("--once", action="store_true",
                         help="accepted for symmetry: a cluster task always runs once")
        cmd.add_argument("--deadline", type=_duration, default=None,
                         help="the run's budget (e.g. 25m): then it stops as on SIGTERM, "
                              "skips what has not started and writes its summary")
        cmd.set_defaults(handler=_cluster, plan_only=name == "plan")


def _policy_check(args: argparse.Namespace) -> int:
    path = args.file or args.policy
    load_policy(path)
    print(f"{path}: ok", file=sys.stderr)
    return errors.EXIT_OK


def _policy_show(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    plain = to_plain(policy)
    if args.namespace:
        plain["cluster"] = to_plain(policy.for_namespace(args.namespace))
        plain["cluster"]["namespaces"]["inScope"] = policy.cluster.namespaces.covers(args.namespace)
        plain.pop("overrides")
    sys.stdout.write(yaml.safe_dump(plain, sort_keys=False))
    return errors.EXIT_OK


def _node(args: argparse.Namespace) -> int:
    policy = _with_dry_run(load_policy(args.policy), args.dry_run)
    # Imported here so `policy check` never pays for the Docker and Kubernetes SDKs.
    from agents.node.agent import NodeOptions, run_node

    options = NodeOptions(
        docker_host=args.docker_host or os.environ.get("DOCKER_HOST")
        or "unix:///var/run/docker.sock",
        host_root=args.host_root, node_name=args.node_name, log_format=args.log_format,
        job=args.job, plan_only=args.plan_only, once=getattr(args, "once", True),
        health_port=getattr(args, "health_port", None),
        metrics_port=getattr(args, "metrics_port", None), policy_path=args.policy,
        dry_run_override=args.dry_run, state_dir=args.state_dir,
        deadline=getattr(args, "deadline", None),
        runtime_timeout=args.runtime_timeout.total_seconds())
    return run_node(policy, options)


def _cluster(args: argparse.Namespace) -> int:
    policy = _with_dry_run(load_policy(args.policy), args.dry_run)
    from agents.cluster.tasks import ClusterOptions, run_cluster

    options = ClusterOptions(task=args.task, kubeconfig=args.kubeconfig, context=args.context,
                             log_format=args.log_format, plan_only=args.plan_only,
                             deadline=getattr(args, "deadline", None))
    return run_cluster(policy, options)


def _duration(text: str) -> timedelta:
    """An option's duration, checked like the policy's (``argparse`` turns errors into exit 2)."""
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0s")
    return value


def _with_dry_run(policy: Policy, override: bool | None) -> Policy:
    """``--dry-run``/``--no-dry-run`` beat the file for one run; the file stays the default."""
    return policy if override is None else replace(policy, dryRun=override)


def _configure_logging(verbose: bool) -> None:
    """Diagnostics go to stderr with their bound object; stdout is the report's alone."""
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO", format=_diagnostic_format)


def _diagnostic_format(record: dict) -> str:
    bound = " ".join(f"{k}={v}" for k, v in record["extra"].items())
    return ("{time:YYYY-MM-DDTHH:mm:ss.SSS!UTC}Z {level: <7} {message}"
            + (f" [{bound}]" if bound else "").replace("{", "{{").replace("}", "}}")
            + "\n{exception}")
