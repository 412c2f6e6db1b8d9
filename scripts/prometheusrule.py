"""Print monitoring/prometheusrule.yaml: monitoring/alerts.yaml's groups in a PrometheusRule.

alerts.yaml is the source (promtool reads it); run
``python -m scripts.prometheusrule > monitoring/prometheusrule.yaml`` after editing it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
HEADER = ("# Generated from alerts.yaml by `python -m scripts.prometheusrule`; edit alerts.yaml.\n")


def rule() -> dict:
    groups = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "kubekeeper", "namespace": "kubekeeper-node",
                     "labels": {"app.kubernetes.io/name": "kubekeeper"}},
        "spec": {"groups": groups},
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions stay readable blocks (``|``), as in alerts.yaml."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def text() -> str:
    return HEADER + yaml.dump(rule(), Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    print(text(), end="")
