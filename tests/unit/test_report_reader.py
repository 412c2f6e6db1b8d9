"""``kubekeeper report`` on lines the real ``Reporter`` wrote: prefixes, torn and foreign
lines, filters, and intents that never got their outcome."""

from __future__ import annotations

import io
import json

from agents.actions import Action, Outcome, Result, Verb
from agents.cli import main
from agents.report import Reporter
from agents.report_reader import Digest, Filters, render_text


def image(name: str, size: int = 100) -> Action:
    return Action(kind="image", name=name, verb=Verb.DELETE, rule="node.images.unused",
                  why="unused for 9d > 7d", id=f"sha256:{name}", bytes=size)


def job(name: str, namespace: str = "batch") -> Action:
    return Action(kind="job", name=name, namespace=namespace, verb=Verb.DELETE,
                  rule="completedJobs.successfulTTL", why="Complete 3d ago > 1d", id=name)


def node_run(node: str, dry_run: bool = False) -> str:
    """A node's run: two images removed, one failed; one intent left without outcome."""
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", dry_run, node=node, stream=out)
    for action, result, error in ((image("a"), Result.DONE, None),
                                  (image("b", 50), Result.DONE, None),
                                  (image("c"), Result.FAILED, "409: image is in use")):
        op = None if dry_run else reporter.intent(action)
        reporter.action(Outcome(action, result, error=error), op=op)
    if not dry_run:
        reporter.intent(image("killed-here", 7))
    reporter.summary()
    return out.getvalue()


def cluster_run(aborted: str | None = None) -> str:
    out = io.StringIO()
    reporter = Reporter("cluster", "jobs", False, stream=out)
    for name, namespace in (("j1", "batch"), ("j2", "batch"), ("j3", "web")):
        action = job(name, namespace)
        if aborted:
            reporter.action(Outcome(action, Result.SKIPPED, error=aborted))
        else:
            reporter.action(Outcome(action, Result.DONE), op=reporter.intent(action))
    reporter.summary(aborted=aborted)
    return out.getvalue()


def digest(text: str, filters: Filters | None = None) -> dict:
    return Digest(filters).read(io.StringIO(text)).as_json()


def test_failures_deletions_bytes_and_unfinished_intents():
    d = digest(node_run("n1") + node_run("n2") + cluster_run())

    [problem] = d["problems"]
    assert (problem["result"], problem["count"], problem["places"], problem["error"],
            problem["rule"], problem["examples"]) == (
        "failed", 2, 2, "409: image is in use", "node.images.unused", ["n1/c", "n2/c"])
    assert d["reclaimed_by_node"] == {"n1": {"done": 150}, "n2": {"done": 150}}
    deleted = {(g["kind"], g["where"]): (g["count"], g["rule"]) for g in d["groups"]}
    assert deleted == {("image", "n1"): (3, "node.images.unused"),
                       ("image", "n2"): (3, "node.images.unused"),
                       ("job", "batch"): (2, "completedJobs.successfulTTL"),
                       ("job", "web"): (1, "completedJobs.successfulTTL")}
    assert [(u["node"], u["name"], u["action"]) for u in d["unfinished"]] == [
        ("n1", "killed-here", "delete"), ("n2", "killed-here", "delete")]
    assert d["results"] == {"done": 7, "failed": 2}
    assert d["runs"]["runs"] == 3


def test_kubectl_prefixes_are_stripped_and_torn_or_foreign_lines_counted():
    prefixed = "".join(f"[pod/kubekeeper-node-x7k2p/agent] {line}\n"
                       for line in node_run("n1").splitlines())
    text = (prefixed + "[pod/kubekeeper-node-x7k2p/agent] 2026-12-02T01:00:00.000Z INFO  "
            "daemon started\n" + '{"ts": "2026-12-02T01:0\n' + '{"not": "ours"}\n'
            + '{"event": "action"}{"ts"\n' + "\n" + "[1, 2]\n" + cluster_run())

    d = digest(text)

    assert (d["input"]["torn"], d["input"]["foreign"]) == (2, 3)
    assert d["results"] == {"done": 5, "failed": 1}
    assert d["runs"]["runs"] == 2


def test_an_outcome_closes_its_intent_only_within_its_own_run():
    first, second = node_run("n1"), node_run("n1")
    d = digest(first + second)
    assert len(d["unfinished"]) == 2
    assert len({u["run"] for u in d["unfinished"]}) == 2


def test_filters_by_kind_namespace_node_result_task_and_time():
    text = node_run("n1") + node_run("n2") + cluster_run()
    lines = [json.loads(x) for x in text.splitlines()]
    middle = sorted(x["ts"] for x in lines)[len(lines) // 2]

    assert digest(text, Filters(kinds=frozenset({"job"})))["results"] == {"done": 3}
    assert {g["where"] for g in digest(text, Filters(namespaces=frozenset({"web"})))["groups"]
            } == {"web"}
    by_node = digest(text, Filters(nodes=frozenset({"n2"})))
    assert set(by_node["reclaimed_by_node"]) == {"n2"} and len(by_node["unfinished"]) == 1
    failed = digest(text, Filters(results=frozenset({"failed"})))
    assert failed["results"] == {"failed": 2} and failed["unfinished"] == []
    assert digest(text, Filters(tasks=frozenset({"jobs"})))["runs"]["runs"] == 1
    early, late = digest(text, Filters(until=middle)), digest(text, Filters(since=middle))
    assert (early["input"]["filtered_out"] + late["input"]["filtered_out"]
            == len(lines))


def test_runs_aborted_by_the_cap_are_listed_with_why():
    why = "plan has 3 destructive actions, more than maxDeletionsPerRun=2; nothing was changed"
    d = digest(cluster_run(aborted=why))

    assert [(r["task"], r["aborted"]) for r in d["aborted_runs"]] == [("jobs", why)]
    assert d["runs"]["aborted"] == 1
    [problem] = d["problems"]
    assert (problem["result"], problem["count"], problem["places"], problem["error"]) == (
        "skipped", 3, 2, why)
    assert problem["examples"] == ["batch/j1", "batch/j2", "web/j3"]


def test_the_text_view_puts_problems_first_and_escapes_control_characters():
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", False, node="n1", stream=out)
    evil = image("evil\x1b]0;owned\x07")
    reporter.action(Outcome(evil, Result.FAILED, error="boom"))
    reporter.summary()

    text = render_text(digest(out.getvalue() + node_run("n1")))

    assert "\x1b" not in text and "\\x1b" in text
    assert text.index("FAILED AND SKIPPED") < text.index("UNFINISHED") < text.index("DELETED")
    assert "n1: 157B reclaimed" not in text and "n1: 150B reclaimed" in text


def test_cli_reads_files_and_stdin_and_writes_json(tmp_path, capsys, monkeypatch):
    report = tmp_path / "run.jsonl"
    report.write_text(node_run("n1") + '{"torn')
    monkeypatch.setattr("sys.stdin", io.StringIO(cluster_run()))

    assert main(["report", str(report), "-", "-o", "json", "--kind", "image"]) == 0

    d = json.loads(capsys.readouterr().out)
    assert (d["input"]["torn"], d["results"]) == (1, {"done": 2, "failed": 1})
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", "--since", "yesterday"]) == 2
