"""TLS for the federation's gRPC connections: the server's certificates, the clients' root.

Flower encrypts the connection when the server is given its CA certificate, its own
certificate and its private key (PEM files) and each client the CA certificate that signed
the server's (its *root certificate*); the client then refuses a server whose certificate
that CA did not sign or whose name (or IP address) the certificate does not cover. Without
them the connection is plain gRPC (fine on one machine's loopback, not across a network).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from salesformer.errors import ConfigError

_PEM = b"-----BEGIN "


def read_pem(path: str | Path, flag: str) -> bytes:
    """The bytes of a PEM file given as ``flag``, or a :class:`ConfigError` saying why not."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{flag} {str(file)!r} is not a file; give the path of a PEM file")
    data = file.read_bytes()
    if _PEM not in data[:4096]:
        raise ConfigError(
            f"{flag} {str(file)!r} is not PEM (no '-----BEGIN' line); give a PEM-encoded "
            "certificate or key (openssl x509 -outform pem converts DER)"
        )
    return data


@dataclass(frozen=True)
class ServerCertificates:
    """What a TLS server needs: the CA certificate, its certificate and its private key."""

    ca_certificate: bytes
    certificate: bytes
    private_key: bytes

    @classmethod
    def from_files(
        cls, ca_certificate: Path | None, certificate: Path | None, private_key: Path | None
    ) -> ServerCertificates | None:
        """The three files' contents; None when none is given; all three or an error."""
        if ca_certificate is None and certificate is None and private_key is None:
            return None
        if ca_certificate is None or certificate is None or private_key is None:
            missing = [
                flag
                for flag, value in (
                    ("--ssl-ca-certfile", ca_certificate),
                    ("--ssl-certfile", certificate),
                    ("--ssl-keyfile", private_key),
                )
                if value is None
            ]
            raise ConfigError(
                "TLS needs all of --ssl-ca-certfile, --ssl-certfile and --ssl-keyfile; got no "
                f"{', '.join(missing)}; give the three PEM files, or none for plain gRPC"
            )
        return cls(
            read_pem(ca_certificate, "--ssl-ca-certfile"),
            read_pem(certificate, "--ssl-certfile"),
            read_pem(private_key, "--ssl-keyfile"),
        )

    def flower(self) -> tuple[bytes, bytes, bytes]:
        """The ``certificates`` argument of Flower's ``start_server``."""
        return (self.ca_certificate, self.certificate, self.private_key)
