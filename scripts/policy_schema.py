"""Write schemas/policies.schema.json and the chart's values.schema.json from the declarations.

tests/unit/test_policy_schema.py fails when either committed file differs from what
this prints, so neither can fall behind the code.
Usage: python -m scripts.policy_schema          (print the policy schema)
       python -m scripts.policy_schema --write  (rewrite both files)
"""

from __future__ import annotations

import sys
from pathlib import Path

from agents.policy_schema import schema_text
from scripts.chart_values import values_schema_text, values_text

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {
    "schemas/policies.schema.json": schema_text,
    "charts/kubekeeper/values.schema.json": values_schema_text,
    "charts/kubekeeper/values.yaml": values_text,
}
"""Each generated file and the function that makes it."""


def write() -> None:
    for name, make in GENERATED.items():
        (ROOT / name).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / name).write_text(make())


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.stdout.write(schema_text())
