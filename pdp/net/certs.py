"""Certificates for local use: a CA, serving certificates for the webhook and extender, and
client certificates (e.g. an admin in system:masters for a local kube-apiserver).

    python -m pdp.net.certs --out deploy/certs --dns pdp.gpupaas-system.svc \
        --extra bundles=pdp-bundles.gpupaas-system.svc

Production clusters should issue these from their own PKI (cert-manager or similar).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pdp.net.pem import write_private_key


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path

    def ca_bundle(self) -> str:
        """The certificate as a base64 caBundle, as webhook configurations want it."""
        return base64.b64encode(self.cert.read_bytes()).decode()


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def make_ca(directory: Path, common_name: str = "gpupaas-local-ca", days: int = 365) -> CertPair:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pair = CertPair(directory / "ca.crt", directory / "ca.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private_key(pair.key, key)
    return pair


def _load_ca(ca: CertPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not the EC key make_ca writes")
    return cert, key


def _issue(
    ca: CertPair,
    path: Path,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    days: int,
) -> CertPair:
    ca_cert, ca_key = _load_ca(ca)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = CertPair(path.with_suffix(".crt"), path.with_suffix(".key"))
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private_key(pair.key, key)
    return pair


def issue_server_cert(ca: CertPair, path: Path, hosts: list[str], days: int = 365) -> CertPair:
    """A serving certificate for `hosts` (DNS names or IP addresses); `path` without suffix."""
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _issue(ca, path, _name(hosts[0]), ExtendedKeyUsageOID.SERVER_AUTH, sans, days)


def issue_client_cert(
    ca: CertPair, path: Path, user: str, groups: tuple[str, ...] = (), days: int = 30
) -> CertPair:
    """A client certificate: Kubernetes reads the user from CN and the groups from O."""
    return _issue(ca, path, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH, [], days)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Make a local CA and the PDP's serving certificate.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dns", action="append", default=[], help="DNS name or IP (repeatable)")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=HOST[,HOST]",
        help="one more serving certificate from the same CA, written to <out>/NAME.crt (repeatable)",
    )
    p.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME=CN[@CA]",
        help="a client certificate for CN (e.g. kube-apiserver to the webhook), written to <out>/NAME.crt, "
        "from a client CA of its own, <out>/CA.crt (default client-ca): a CA that signs one client alone "
        "lets a listener accept that client without checking names (repeatable)",
    )
    args = p.parse_args(argv)
    clients: dict[str, tuple[str, str]] = {}
    for item in args.client:
        name, sep, rest = item.partition("=")
        cn, _, ca_name = rest.partition("@")
        ca_name = ca_name or "client-ca"
        if not sep or not name or not cn or "/" in name or "/" in ca_name:
            p.error(f"--client {item!r}: expected NAME=CN or NAME=CN@CA")
        clients[name] = (cn, ca_name)
    extra: dict[str, list[str]] = {}
    for item in args.extra:
        name, sep, hosts_text = item.partition("=")
        if not sep or not name or not hosts_text or "/" in name:
            p.error(f"--extra {item!r}: expected NAME=HOST[,HOST]")
        extra[name] = hosts_text.split(",")
    hosts = args.dns or ["pdp.gpupaas-system.svc", "pdp.gpupaas-system.svc.cluster.local"]
    ca = make_ca(args.out)
    serving = issue_server_cert(ca, args.out / "tls", hosts)
    print(f"CA {ca.cert}\nserving certificate {serving.cert} (key {serving.key}) for {', '.join(hosts)}")
    for name, names in extra.items():
        pair = issue_server_cert(ca, args.out / name, names)
        print(f"serving certificate {pair.cert} (key {pair.key}) for {', '.join(names)}")
    # Client CAs of their own: only the certificates issued for these clients are client
    # certificates the webhook and the extender accept, whatever else the platform CA signs.
    client_cas: dict[str, CertPair] = {}
    for name, (cn, ca_name) in clients.items():
        if ca_name not in client_cas:
            client_cas[ca_name] = make_ca(args.out / ca_name, f"gpupaas-{ca_name}")
        pair = issue_client_cert(client_cas[ca_name], args.out / name, cn, days=365)
        print(f"client certificate {pair.cert} (key {pair.key}) for {cn}, from {ca_name}")
    for ca_name, client_ca in client_cas.items():
        (args.out / f"{ca_name}.crt").write_bytes(client_ca.cert.read_bytes())
        print(f"client CA {args.out / f'{ca_name}.crt'}")
    print(f"caBundle: {ca.ca_bundle()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
