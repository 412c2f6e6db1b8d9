"""Command line: ``kubekeeper policy|node|cluster|report|restore ...``; documented exit codes.

0 success, 1 the run finished with failed actions (or the deletion cap aborted
it), 2 bad usage or an invalid policy, 3 Docker or the API server unreachable,
4 the runtime named by ``--runtime`` is not a CRI v1 runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import yaml
from loguru import logger

from agents import errors
from agents.node.kubelet_config import KUBELET_CONFIG
from agents.node.runtimes import check_spec
from agents.policy import Policy, to_plain
from agents.policy_loader import PolicyInvalid, load_policy, parse_policy
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
    except errors.BadOption as exc:
        print(f"kubekeeper: {exc}\n(see kubekeeper --help)", file=sys.stderr)
        return errors.EXIT_USAGE
    except errors.Unreachable as exc:
        logger.error("{}", exc)
        return errors.EXIT_UNREACHABLE
    except errors.UnsupportedRuntime as exc:
        logger.error("{}", exc)
        return errors.EXIT_UNSUPPORTED


def _build_parser() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--policy", default=_default_policy(),
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
    _add_report_command(commands)
    _add_restore_command(commands, common)
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
    schema = policy.add_parser("schema", help="print the JSON Schema of policies.yaml")
    schema.set_defaults(handler=_policy_schema)


def _add_node_commands(commands: argparse._SubParsersAction, common: _Parser) -> None:
    node = commands.add_parser("node", help="the node agent (Docker cleanup, log audit)")
    sub = node.add_subparsers(dest="node_command", parser_class=_Parser)
    for name, helptext in (("run", "clean up, once or as a daemon"), ("plan", "show the plan")):
        cmd = sub.add_parser(name, parents=[common], help=helptext)
        cmd.add_argument("--runtime", type=_runtime, default=None,
                         help="auto, docker, containerd, crio or cri:<socket> (default: "
                              "docker when --docker-host or $DOCKER_HOST is given, else auto: "
                              "every runtime socket found under --host-root)")
        cmd.add_argument("--docker-host", default=None,
                         help="Docker endpoint (default: $DOCKER_HOST, else the socket "
                              "/var/run/docker.sock under --host-root)")
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
                         help="how long one runtime call may take before it is checked "
                              "(default 30s)")
        cmd.add_argument("--kubelet-config", type=_host_path, default=KUBELET_CONFIG,
                         help="the kubelet's config file on the host, read under --host-root "
                              f"for its log rotation on CRI nodes (default {KUBELET_CONFIG})")
        if name == "run":
            cmd.add_argument("--deadline", type=_duration, default=None,
                             help="each run's budget (e.g. 20m): no action starts after it")
            cmd.add_argument("--once", action="store_true", help="one run, then exit")
            cmd.add_argument("--health-port", type=_port, default=None,
                             help="serve /healthz and /metrics on this port (daemon mode)")
            cmd.add_argument("--metrics-port", type=_port, default=None,
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


def _add_report_command(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="summarize report lines: failures first, then what was done",
        description="Reads report lines (JSON) from files or stdin, also `kubectl logs -l "
        "app.kubernetes.io/name=kubekeeper --prefix --all-containers` output, and prints "
        "failures and skips, unfinished intents (killed runs), runs aborted by the cap, "
        "deletions by namespace and kind or by node, and bytes reclaimed per node.")
    report.add_argument("files", nargs="*", default=["-"], metavar="FILE",
                        help="report files; - or none reads stdin")
    report.add_argument("-o", "--output", choices=("text", "json"), default="text")
    for name, helptext in (("since", "only lines at or after T (RFC 3339, or a duration "
                                     "ago: 2h)"),
                           ("until", "only lines before T (RFC 3339, or a duration ago)")):
        report.add_argument(f"--{name}", type=_moment, default=None, metavar="T", help=helptext)
    for name in ("kind", "namespace", "node", "result", "task"):
        report.add_argument(f"--{name}", action="append", default=[], metavar=name.upper(),
                            help=f"only lines of this {name} (repeatable)")
    report.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    report.set_defaults(handler=_report)


def _add_restore_command(commands: argparse._SubParsersAction, common: _Parser) -> None:
    restore = commands.add_parser(
        "restore", parents=[common], help="re-create deleted Kubernetes objects",
        description="Re-creates deleted objects from the recycle bin (the default) or from "
        "report lines (complete only with cluster.redactManifests: false). Runs with YOUR "
        "kubeconfig credentials (--kubeconfig, else $KUBECONFIG, else ~/.kube/config), never "
        "a pod's service account: the CronJobs' accounts cannot create Jobs. Jobs come back "
        "suspended; an object that exists is skipped, never overwritten. --dry-run only "
        "asks the API server (server-side dry run); the policy's dryRun does not apply.")
    source = restore.add_mutually_exclusive_group()
    source.add_argument("--from-bin", action="store_true",
                        help="read cluster.recycleBin.namespace's Secrets (the default)")
    source.add_argument("files", nargs="*", default=[], metavar="FILE",
                        help="report files instead of the bin; - reads stdin")
    restore.add_argument("--run", help="only what this run (its id) deleted")
    restore.add_argument("--kind", help="only this kind (job, replicaset)")
    restore.add_argument("--namespace", help="only this namespace")
    restore.add_argument("--name", help="only objects of this name")
    restore.add_argument("--since", type=_moment, default=None, metavar="T",
                         help="only what was deleted at or after T (RFC 3339, or 2h ago)")
    restore.add_argument("--kubeconfig", default=None,
                         help="your kubeconfig (default: $KUBECONFIG, else ~/.kube/config)")
    restore.add_argument("--context", default=None, help="kubeconfig context")
    restore.set_defaults(handler=_restore)


def _report(args: argparse.Namespace) -> int:
    from agents.report_lines import opened
    from agents.report_reader import Digest, Filters, render_text

    filters = Filters(since=_rfc3339(args.since), until=_rfc3339(args.until),
                      kinds=frozenset(args.kind), namespaces=frozenset(args.namespace),
                      nodes=frozenset(args.node), results=frozenset(args.result),
                      tasks=frozenset(args.task))
    if "-" in args.files and sys.stdin.isatty():
        print("reading report lines from stdin (end with Ctrl-D)", file=sys.stderr)
    try:
        digest = Digest(filters).read(opened(args.files)).as_json()
    except OSError as exc:
        print(f"kubekeeper report: {exc}", file=sys.stderr)
        return errors.EXIT_USAGE
    if args.output == "json":
        sys.stdout.write(json.dumps(digest, indent=1, default=str) + "\n")
    else:
        sys.stdout.write(render_text(digest))
    return errors.EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    policy = _restore_policy(args.policy)
    from agents.cluster.restore import RestoreOptions, run_restore_cli
    from agents.cluster.restore_plan import Selection

    selection = Selection(run=args.run, kind=args.kind, namespace=args.namespace,
                          name=args.name, since=args.since)
    options = RestoreOptions(selection=selection, sources=tuple(args.files),
                             kubeconfig=args.kubeconfig, context=args.context,
                             log_format=args.log_format, dry_run=bool(args.dry_run))
    try:
        return run_restore_cli(policy, options)
    except OSError as exc:
        print(f"kubekeeper restore: {exc}", file=sys.stderr)
        return errors.EXIT_USAGE


def _default_policy() -> str:
    return os.environ.get("KUBEKEEPER_POLICY", "policies.yaml")


def _restore_policy(path: str) -> Policy:
    """The policy, for the bin's namespace and ``redactManifests``; on an admin's machine
    without a policy file at the default path, the defaults (``kubekeeper-system``)."""
    if path == _default_policy() and not os.path.exists(path):
        print(f"no {path}: using the default policy (recycle bin in kubekeeper-system)",
              file=sys.stderr)
        return parse_policy("apiVersion: kubekeeper/v1\n")
    return load_policy(path)


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


def _policy_schema(args: argparse.Namespace) -> int:
    """Print the schema editors and the Helm chart validate policies.yaml with."""
    from agents.policy_schema import schema_text

    sys.stdout.write(schema_text())
    return errors.EXIT_OK


def _node(args: argparse.Namespace) -> int:
    policy = _with_dry_run(load_policy(args.policy), args.dry_run)
    # Imported here so `policy check` never pays for the Docker and Kubernetes SDKs.
    from agents.node.agent import NodeOptions, run_node
    from agents.node.docker_port import check_endpoint

    docker_host = args.docker_host or os.environ.get("DOCKER_HOST") or None
    if docker_host:
        try:
            check_endpoint(docker_host)
        except ValueError as exc:
            raise errors.BadOption(f"--docker-host (or $DOCKER_HOST): {exc}") from None
    runtime = args.runtime or ("docker" if docker_host else "auto")
    options = NodeOptions(
        docker_host=docker_host, runtime=runtime, host_root=args.host_root,
        node_name=args.node_name, log_format=args.log_format,
        job=args.job, plan_only=args.plan_only, once=getattr(args, "once", True),
        health_port=getattr(args, "health_port", None),
        metrics_port=getattr(args, "metrics_port", None), policy_path=args.policy,
        dry_run_override=args.dry_run, state_dir=args.state_dir,
        deadline=getattr(args, "deadline", None),
        runtime_timeout=args.runtime_timeout.total_seconds(),
        kubelet_config=args.kubelet_config)
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


def _runtime(text: str) -> str:
    try:
        return check_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _host_path(text: str) -> str:
    """A path on the host: absolute, since it is read under --host-root."""
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not an absolute path on the host")
    return text


def _port(text: str) -> int:
    """A TCP port to listen on: 1 to 65535."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a port (1 to 65535)")
    return int(text)


def _moment(text: str) -> datetime:
    """An RFC 3339 time, or a duration meaning that long ago (``2h``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.now(UTC) - parse_duration(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is neither an RFC 3339 time nor a duration (2h, 7d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rfc3339(moment: datetime | None) -> str | None:
    from agents.report import rfc3339

    return rfc3339(moment) if moment else None


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
