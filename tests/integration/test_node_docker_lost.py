"""Docker stops in the middle of a run: the rest fail with the error, the report is complete.

The engine that gets stopped is a second private dockerd started for this test
alone, so the session's engine stays up for the other tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from scripts.localenv import dockerd
from scripts.localenv import testimages as ti
from tests import report_lines
from tests.node_runs import AgentProcess, policy_text


def test_docker_stopped_mid_run_fails_the_rest_and_still_writes_the_summary(tmp_path):
    state_dir = Path(tempfile.mkdtemp(prefix="kk-lost-", dir="/tmp"))
    engine = dockerd.start(state_dir)
    try:
        client = engine.client()
        ti.many_containers(client, ti.base_image(client).id, 300, "doomed")
        client.close()
        policy = tmp_path / "policy.yaml"
        policy.write_text(policy_text(parallelism=1))
        agent = AgentProcess("--once", "--policy", str(policy), "--docker-host",
                             engine.base_url, "--job", "cleanup")
        lines = list(agent.lines_until(lambda x: x["event"] == "action"
                                       and x["action"] == "delete" and x["result"] == "done"))
        dockerd.stop(state_dir)
        code = agent.wait(timeout=120)
    finally:
        dockerd.stop(state_dir)
    lines += agent.drain()
    [summary] = report_lines.summaries(lines)
    actions = [x for x in report_lines.outcomes(lines) if x["action"] != "report"]
    assert code == 1, "".join(agent.stderr)
    assert lines[-1] is summary
    assert summary["actions"] == len(actions) + 1 == 302  # 300 containers, the image, the record
    assert len(report_lines.intents(lines)) <= len(actions), "an intent left without outcome"
    failed = [line for line in actions if line["result"] == "failed"]
    # The item in flight may see another error; every later one fails fast as unreachable.
    unreachable = [line for line in failed if "Docker unreachable" in line["error"]]
    assert unreachable and len(unreachable) >= len(failed) - 1
    assert summary["results"]["failed"] == len(failed)
    assert summary["results"].get("done", 0) >= 1
    assert "Docker stopped answering" in summary["error"]
    assert summary["errors"] == len(failed) + 1
