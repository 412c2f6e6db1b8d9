"""A throwaway PKI for the test control plane, made with the openssl CLI.

openssl ships with Debian, which spares the project a crypto dependency. The CA
and TLS keys are P-256 (quick to generate); the service-account key is RSA, as
kube-apiserver's token signer expects by default.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

_DAYS = "3650"

# DNS names and IPs clients may use for the API server: loopback for tests, the
# in-cluster names and the first service IP (10.0.0.0/24) for pods' clients.
_SERVING_NAMES = (
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1"
)


@dataclass(frozen=True)
class Pki:
    """Paths of the files `create` writes; all PEM."""

    directory: Path

    def cert(self, name: str) -> Path:
        """Certificate `name`: ca, apiserver, admin, controller-manager, scheduler,
        kubelet-client, front-proxy-ca or front-proxy-client (and a node's, once `client`
        made it)."""
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        """Private key `name`: as `cert`, or service-account."""
        return self.directory / f"{name}.key"

    @property
    def service_account_public_key(self) -> Path:
        """What kube-apiserver verifies service-account tokens with."""
        return self.directory / "service-account.pub"


FRONT_PROXY_CLIENT = "front-proxy-client"
"""The CN the API server shows aggregated API servers (metrics-server) when it proxies."""


def create(directory: Path, address: str = "127.0.0.1") -> Pki:
    """Generate a CA, the API server's serving cert, four client certs, an SA key pair, and
    the aggregation layer's own CA and proxy client.

    The admin client is in group system:masters; the controller manager and the
    scheduler have the identities the bootstrap RBAC policy grants their permissions
    to (kube-proxy's is made by the local node). The API server serves on loopback and
    on `address` too when another is given. kubelet-client is what the API server shows
    a kubelet for `logs` and `exec`:
    the kubelet's webhook authorizer asks the API server about it, and system:masters
    may do anything. The front proxy has a CA of its own, as kubeadm's: an aggregated
    API server trusts the user named in the proxy's headers only from certificates of that
    CA, so no ordinary client certificate can claim to be the proxy.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = Pki(directory)
    _self_signed_ca(pki, "ca", "kubekeeper-test-ca")
    _self_signed_ca(pki, "front-proxy-ca", "kubekeeper-test-front-proxy-ca")
    _signed(pki, FRONT_PROXY_CLIENT, f"CN = {FRONT_PROXY_CLIENT}", "clientAuth",
            ca="front-proxy-ca")
    serving = _SERVING_NAMES if address == "127.0.0.1" else f"{_SERVING_NAMES},IP:{address}"
    _signed(pki, "apiserver", "CN = kube-apiserver", "serverAuth", serving)
    _signed(pki, "admin", "O = system:masters\nCN = kubekeeper-admin", "clientAuth")
    _signed(pki, "controller-manager", "CN = system:kube-controller-manager", "clientAuth")
    _signed(pki, "scheduler", "CN = system:kube-scheduler", "clientAuth")
    _signed(pki, "kubelet-client", "O = system:masters\nCN = kube-apiserver-kubelet-client",
            "clientAuth")
    _openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pki.key("service-account"),
    )
    _openssl(
        "pkey", "-in", pki.key("service-account"), "-pubout", "-out", pki.service_account_public_key
    )
    return pki


def client(pki: Pki, name: str, subject: str) -> None:
    """Sign one more client certificate `name` with `subject` (openssl's `O = ...\nCN = ...`)."""
    _signed(pki, name, subject, "clientAuth")


def serving(pki: Pki, name: str, subject: str, alt_names: str) -> None:
    """Sign a serving certificate `name` for `alt_names` (`DNS:...,IP:...`), e.g. for an
    aggregated API server the API server verifies with the CA."""
    _signed(pki, name, subject, "serverAuth", alt_names)


def _self_signed_ca(pki: Pki, name: str, common_name: str) -> None:
    config = _config(
        pki,
        name,
        f"CN = {common_name}",
        "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign",
    )
    _openssl(
        "req",
        "-x509",
        "-new",
        "-nodes",
        *_ec_key(),
        "-keyout",
        pki.key(name),
        "-out",
        pki.cert(name),
        "-days",
        _DAYS,
        "-config",
        config,
        "-extensions",
        "ext",
    )


def _signed(pki: Pki, name: str, subject: str, usage: str, alt_names: str = "",
            ca: str = "ca") -> None:
    """A leaf certificate for `name`, signed by `ca`, for `usage` (extendedKeyUsage)."""
    extensions = (
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        f"extendedKeyUsage = {usage}"
    )
    if alt_names:
        extensions += f"\nsubjectAltName = {alt_names}"
    config = _config(pki, name, subject, extensions)
    request = pki.directory / f"{name}.csr"
    _openssl(
        "req",
        "-new",
        "-nodes",
        *_ec_key(),
        "-keyout",
        pki.key(name),
        "-out",
        request,
        "-config",
        config,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        request,
        "-CA",
        pki.cert(ca),
        "-CAkey",
        pki.key(ca),
        "-set_serial",
        str(secrets.randbits(63)),
        "-days",
        _DAYS,
        "-out",
        pki.cert(name),
        "-extfile",
        config,
        "-extensions",
        "ext",
    )


def _config(pki: Pki, name: str, subject: str, extensions: str) -> Path:
    path = pki.directory / f"{name}.cnf"
    path.write_text(
        f"[req]\nprompt = no\ndistinguished_name = dn\n[dn]\n{subject}\n[ext]\n{extensions}\n"
    )
    return path


def _ec_key() -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")
