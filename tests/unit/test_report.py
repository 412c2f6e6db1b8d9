"""The report: one parseable JSON line per action, one summary that adds up."""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace
from types import MappingProxyType

from agents.actions import Action, Outcome, Result, Verb, dry_run, over_cap, refused
from agents.report import RawJSON, Reporter, as_text, plan_table

ACTION_FIELDS = {"ts", "level", "event", "agent", "task", "node", "dry_run", "run", "op", "kind",
                 "id", "name", "namespace", "action", "reason", "result", "bytes", "error"}
SUMMARY_FIELDS = {"ts", "level", "event", "agent", "task", "node", "dry_run", "run", "actions",
                  "results", "counts", "bytes_reclaimed", "duration_s", "errors", "aborted",
                  "error"}


def image(name: str, size: int = 100) -> Action:
    return Action("image", name, Verb.DELETE, "images.unused", "unused for 9d > 7d",
                  id=f"sha256:{name}", bytes=size)


def run(outcomes, **summary) -> list[dict]:
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", dry_run=False, node="n1", stream=out)
    for outcome in outcomes:
        reporter.action(outcome)
    reporter.summary(**summary)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_every_line_is_json_with_the_documented_fields():
    lines = run([Outcome(image("a"), Result.DONE),
                 Outcome(image("b"), Result.FAILED, error="boom"),
                 Outcome(image("c"), Result.SKIPPED, error="conflict: image is in use")])
    *actions, summary = lines
    for line in actions:
        assert set(line) >= ACTION_FIELDS
        assert line["event"] == "action"
        assert line["ts"].endswith("Z") and "T" in line["ts"]
        assert line["reason"] == "images.unused: unused for 9d > 7d"
    assert [a["level"] for a in actions] == ["info", "error", "warning"]
    assert set(summary) == SUMMARY_FIELDS
    assert summary["event"] == "run.summary"


def test_summary_counts_equal_line_counts_and_bytes_count_only_done():
    lines = run([Outcome(image("a", 10), Result.DONE), Outcome(image("b", 20), Result.DONE),
                 Outcome(image("c", 40), Result.FAILED, error="x"),
                 Outcome(Action("log", "c1", Verb.REPORT, "logs.requireRotation", "no max-size"),
                         Result.DONE)])
    summary = lines[-1]
    assert summary["counts"] == {"image": {"done": 2, "failed": 1}, "log": {"done": 1}}
    assert summary["actions"] == len(lines) - 1
    assert summary["results"] == {"done": 3, "failed": 1}
    assert summary["bytes_reclaimed"] == 30
    assert summary["errors"] == 1
    assert summary["level"] == "error"


def test_details_are_added_but_never_override_standard_fields():
    action = Action("log", "c1", Verb.REPORT, "logs.maxFileSize", "2Gi > 100Mi",
                    details={"path": "/var/lib/docker/x.log", "result": "sneaky"})
    line = run([Outcome(action, Result.DONE)])[0]
    assert line["path"] == "/var/lib/docker/x.log"
    assert line["result"] == "done"


def test_cap_refuses_the_whole_plan_and_says_why():
    plan = [image(str(i)) for i in range(3)] + [
        Action("log", "c", Verb.REPORT, "logs.requireRotation", "no max-size")]
    reason = over_cap(plan, 2)
    assert reason.startswith("plan has 3 destructive actions (deletions and truncations), "
                             "more than maxDeletionsPerRun=2")
    assert over_cap(plan, 3) is None
    outcomes = [refused(a, reason) for a in plan]
    assert [o.result for o in outcomes] == [Result.SKIPPED] * 3 + [Result.DONE]
    summary = run(outcomes, aborted=reason)[-1]
    assert summary["aborted"] == reason
    assert summary["bytes_reclaimed"] == 0


def test_text_format_is_readable():
    out = io.StringIO()
    reporter = Reporter("cluster", "jobs", dry_run=True, stream=out, fmt="text", run_id="r1")
    reporter.action(Outcome(Action("job", "old", Verb.DELETE, "completedJobs.succeededTTL",
                                   "finished 3d ago > 1d", namespace="batch"), Result.PLANNED))
    reporter.summary()
    first, summary = out.getvalue().splitlines()
    assert "PLANNED  delete   job batch/old" in first
    assert "[completedJobs.succeededTTL: finished 3d ago > 1d]" in first
    assert summary.startswith("== cluster jobs summary (dry-run, run r1): 1 planned")


def test_a_text_line_names_the_runtime_it_is_about():
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", dry_run=True, stream=out, fmt="text", run_id="r1")
    action = replace(image("old"), details=MappingProxyType({"runtime": "containerd"}))
    reporter.action(Outcome(action, Result.PLANNED))
    assert "image old (sha256:old) on containerd 100B  [images.unused" in out.getvalue()


def test_a_json_log_reads_back_as_the_text_format_wrote_it():
    def lines(fmt: str) -> list[str]:
        out = io.StringIO()
        reporter = Reporter("node", "cleanup", dry_run=False, node="n1", stream=out, fmt=fmt,
                            run_id="r1")
        action = image("old")
        op = reporter.intent(action)
        reporter.action(Outcome(action, Result.DONE), op=op)
        reporter.note("containers", "left to the kubelet")
        reporter.summary()
        return out.getvalue().splitlines()

    def timeless(text: list[str]) -> list[str]:  # two runs differ in their clocks only
        return [re.sub(r"; [0-9.]+s$", "", x[8:]) for x in text]

    json_lines, text_lines = lines("json"), lines("text")
    rendered = [as_text(json.loads(line)) for line in json_lines]
    assert timeless(rendered) == timeless(text_lines)
    assert as_text({"event": "something.new", "x": 1}) == '{"event": "something.new", "x": 1}'


def test_plan_table_totals_bytes():
    table = plan_table([image("a", 2**20), image("b", 2**20)])
    assert table.splitlines()[0].split() == ["ACTION", "KIND", "NAME", "BYTES", "REASON"]
    assert table.splitlines()[-1] == "2 actions, 2.0Mi would be reclaimed"


def test_raw_json_details_are_embedded_as_objects_without_re_encoding():
    manifest = RawJSON('{"kind":"Job","metadata":{"name":"old","uid":"u1"}}')
    action = Action("job", "old", Verb.DELETE, "completedJobs.succeededTTL", "3d > 1d",
                    namespace="batch", details={"manifest": manifest})
    line = run([Outcome(action, Result.DONE)])[0]
    assert line["manifest"] == {"kind": "Job", "metadata": {"name": "old", "uid": "u1"}}
    assert line["name"] == "old"


def test_an_intent_line_is_flushed_before_the_change_and_pairs_with_its_outcome():
    out = io.StringIO()
    reporter = Reporter("cluster", "jobs", dry_run=False, stream=out)
    action = Action("job", "j", Verb.DELETE, "completedJobs.succeededTTL", "Complete 2d ago > 1d",
                    details={"manifest": RawJSON('{"kind":"Job"}')})
    op = reporter.intent(action)
    written = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(w["event"], w["result"], w["op"]) for w in written] == [
        ("action.intent", "pending", op)]
    assert written[0]["manifest"] == {"kind": "Job"}
    reporter.action(Outcome(action, Result.DONE), op=op)
    reporter.summary()
    intent, outcome, summary = (json.loads(line) for line in out.getvalue().splitlines())
    assert (outcome["event"], outcome["op"], outcome["run"]) == ("action", op, intent["run"])
    assert "manifest" not in outcome, "the manifest is written once, ahead of the change"
    assert summary["actions"] == 1 and summary["run"] == intent["run"]


def test_every_line_of_a_run_carries_one_run_id_and_distinct_ops():
    lines = run([Outcome(image("a"), Result.DONE), Outcome(image("b"), Result.DONE)])
    assert len({line["run"] for line in lines}) == 1
    assert [line["op"] for line in lines[:-1]] == [1, 2]


def test_text_output_escapes_control_characters_from_untrusted_names():
    out = io.StringIO()
    reporter = Reporter("node", "cleanup", dry_run=False, stream=out, fmt="text")
    hostile = "web\x1b]0;owned\x07\nfake line"
    reporter.action(Outcome(image(hostile), Result.FAILED, error="bad\x1b[2J"))
    reporter.summary(error="lost \x1b[31mred")
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "web\\x1b]0;owned\\x07\\x0afake line" in text
    assert text.count("\n") == 3  # the action line, the summary head and its ERROR line
    assert "\x1b" not in plan_table([image(hostile)])


def test_a_planner_decision_to_keep_is_skipped_and_not_counted_by_the_cap():
    keep = Action("image", "x", Verb.DELETE, "images.unused", "unused", skip="age unknown")
    assert not keep.mutates and not keep.destructive
    assert over_cap([keep, keep], 1) is None
    assert refused(keep, "cap").error == "age unknown"
    assert dry_run(keep).result is Result.SKIPPED


def test_truncations_count_against_the_cap_like_deletions():
    truncate = Action("log", "c", Verb.TRUNCATE, "logs.maxFileSize", "2Gi > 100Mi")
    assert over_cap([truncate, image("a")], 1) is not None
