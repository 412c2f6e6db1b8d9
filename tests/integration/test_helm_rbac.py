"""A chart install grants each account exactly what a kustomize install does.

Every test of test_install_rbac.py (what each task needs, nothing more, no Secrets, the
recycle bin only where tasks delete, ...) runs again here, against `helm install`: only
the ``installed`` fixture differs. Taking them all by name prefix keeps a test added there
running here too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.localenv.controlplane import ControlPlane
from tests import helm_chart
from tests.integration import test_install_rbac as _kustomize_matrix

globals().update({name: test for name, test in vars(_kustomize_matrix).items()
                  if name.startswith("test_")})


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> Iterator[list[dict]]:
    helm_chart.run_helm(control_plane, "install", helm_chart.RELEASE, str(helm_chart.CHART))
    try:
        yield helm_chart.template()
    finally:
        helm_chart.uninstall(control_plane)
