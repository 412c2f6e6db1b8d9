"""Private, disposable services for tests: a Docker engine and a Kubernetes control plane.

Everything lives under one state directory per service, so a run never touches
the machine's own Docker or any cluster, and a crashed run can be wiped.
"""
