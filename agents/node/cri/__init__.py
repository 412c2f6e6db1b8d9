"""CRI v1 stubs generated from api.proto of k8s.io/cri-api v0.37.2 (scripts/gen-cri-stubs).

Generated files; never edit them by hand. They are committed so that installing
kubekeeper needs neither grpcio-tools nor the network.
"""
