"""A chart install grants each account exactly what a kustomize install does.

The same matrix as test_install_rbac.py (what each task needs, nothing more, no Secrets,
the recycle bin only where tasks delete), run against `helm install` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.localenv.controlplane import ControlPlane
from tests import helm_chart
from tests.integration.test_install_rbac import (  # noqa: F401  (collected here too)
    test_node_account_holds_no_api_permission_at_all,
    test_only_deleting_tasks_keep_a_recycle_bin_and_only_in_their_namespace,
    test_task_account_holds_nothing_beyond_its_needs,
    test_task_account_is_denied_secrets_and_destructive_verbs,
    test_task_account_may_do_what_its_task_needs,
)


@pytest.fixture(scope="module")
def installed(control_plane: ControlPlane) -> Iterator[list[dict]]:
    helm_chart.run_helm(control_plane, "install", helm_chart.RELEASE, str(helm_chart.CHART))
    try:
        yield helm_chart.template()
    finally:
        helm_chart.uninstall(control_plane)
