"""Checks the city-PKI certificates and Ed25519 signatures of the devices of a secure-aggregation
round, remembering what it verified.

A device (or the server) keeps one :class:`DeviceVerifier` across rounds: a certificate is
checked in full (CA signature, validity, CRL, role, agreement key: ``verify_certificate``) the
first time its exact DER bytes are seen under the CRL in force, then only its validity window,
the CRL's freshness and the subject it must name. A signature is checked by OpenSSL once per
(identity key, message, signature); the memo matters where several parties share one verifier in
one process (a simulation), never across devices.
"""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from ..crypto.pki import ROLES, VerifiedCertificate, verify_certificate
from ..errors import CertificateError

__all__ = ["DeviceVerifier", "device_subject"]

_MAX_DER = 16_384


def device_subject(client: int) -> str:
    """The certificate subject (CN) a device of secure aggregation must carry: ``dev-<id>``, as
    the simulator's aggregator issues them."""
    return f"dev-{client}"


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


class DeviceVerifier:
    """Verifies device certificates against a trust anchor and its CRL, and signatures under the
    keys they certify; caches both. Threads may share one (a lock guards the caches).

    Parameters
    ----------
    trust_anchor : x509.Certificate
        The city CA's certificate.
    crl : x509.CertificateRevocationList
        A CRL signed by that CA; refused certificates include every serial it lists. A stale
        CRL (past its next update) makes every check fail until :meth:`set_crl` installs a
        fresh one.
    subject_of : callable, optional
        Maps a client id of the round to the subject id (CN) its certificate must name;
        default :func:`device_subject` (``dev-<id>``). A valid certificate for another subject
        is refused, so no device can speak for another id.
    role : str
        The role the certificates must carry (default "device").
    clock : callable, optional
        Returns the time (timezone-aware) at which validity is judged; default now (UTC).
    max_entries : int
        Certificates and signatures remembered (each; the oldest are forgotten first).
    """

    def __init__(self, *, trust_anchor: x509.Certificate, crl: x509.CertificateRevocationList,
                 subject_of: Callable[[int], str] | None = None, role: str = "device",
                 clock: Callable[[], dt.datetime] | None = None,
                 max_entries: int = 65_536) -> None:
        if not isinstance(trust_anchor, x509.Certificate):
            raise TypeError("trust_anchor must be an x509.Certificate")
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("max_entries must be a positive int")
        self._anchor = trust_anchor
        self._subject_of = subject_of if subject_of is not None else device_subject
        self._role = role
        self._clock = clock if clock is not None else (lambda: dt.datetime.now(dt.timezone.utc))
        self._max = max_entries
        self._lock = threading.Lock()
        self._certificates: dict[tuple[bytes, bytes], VerifiedCertificate] = {}
        self._raw_keys: dict[VerifiedCertificate, bytes] = {}  # identity keys of those
        self._signatures: dict[tuple[bytes, bytes, bytes], None] = {}
        self._anchor_window = (trust_anchor.not_valid_before_utc, trust_anchor.not_valid_after_utc)
        self._crl_window: tuple[dt.datetime, dt.datetime | None] = (self._anchor_window[0], None)
        self.stats = {"certificate_hits": 0, "certificate_checks": 0, "signature_hits": 0,
                      "signature_checks": 0}
        self._crl: x509.CertificateRevocationList | None = None
        self._crl_der = b""
        self.set_crl(crl)

    def set_crl(self, crl: x509.CertificateRevocationList) -> None:
        """Install a CRL signed by the trust anchor, not older than the one in force (a lower
        CRL number would un-revoke). Certificates verified under the old CRL are checked anew."""
        if not isinstance(crl, x509.CertificateRevocationList):
            raise TypeError("crl must be an x509.CertificateRevocationList")
        if crl.issuer != self._anchor.subject or not crl.is_signature_valid(
                self._anchor.public_key()):  # type: ignore[arg-type]
            raise ValueError("CRL is not issued and signed by the trust anchor")
        if self._crl is not None and _crl_number(crl) < _crl_number(self._crl):
            raise ValueError("CRL is older than the one installed (lower CRL number)")
        with self._lock:
            self._crl = crl
            self._crl_der = crl.public_bytes(serialization.Encoding.DER)
            self._crl_window = (crl.last_update_utc, crl.next_update_utc)
            self._certificates.clear()  # keyed by the old CRL: never hit again
            self._raw_keys.clear()

    def subject_of(self, client: int) -> str:
        """The subject id the certificate of `client` must name."""
        return self._subject_of(client)

    def certificate(self, certificate: Any, client: int) -> VerifiedCertificate:
        """The verified certificate of `client` from its DER bytes: chain to the trust anchor,
        validity now, not revoked by the CRL in force (itself fresh), the role, and the subject
        ``subject_of(client)``. Raises ``CertificateError`` naming the first failed check."""
        if not isinstance(certificate, (bytes, bytearray)) or not 0 < len(certificate) <= _MAX_DER:
            raise CertificateError(f"the certificate of client {client} must be 1 to {_MAX_DER} "
                                   "bytes of DER", kind="malformed")
        der = bytes(certificate)
        now = self._clock()
        with self._lock:
            crl, key = self._crl, (der, self._crl_der)
            verified = self._certificates.get(key)
        assert crl is not None
        if verified is None:
            try:
                verified = verify_certificate(der, trust_anchor=self._anchor, crl=crl, at=now,
                                              role=self._role)
            except (ValueError, TypeError) as exc:  # DER that parses but breaks an accessor
                raise CertificateError(f"the certificate of client {client} is malformed: "
                                       f"{exc}", kind="malformed") from None
            raw = verified.identity_key.public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw)
            with self._lock:
                self.stats["certificate_checks"] += 1
                self._remember(self._certificates, key, verified)
                self._raw_keys[verified] = raw
        else:
            self._still_valid(verified, now)
            with self._lock:
                self.stats["certificate_hits"] += 1
        expected = self._subject_of(client)
        if verified.subject_id != expected:
            raise CertificateError(f"the certificate is for {verified.subject_id!r}, but client "
                                   f"{client} must present one for {expected!r}",
                                   kind="wrong_subject")
        return verified

    def verify(self, certificate: VerifiedCertificate, signature: Any, message: bytes) -> bool:
        """Whether `signature` is the Ed25519 signature of `message` under the identity key of
        `certificate` (a result of :meth:`certificate`)."""
        if not isinstance(certificate, VerifiedCertificate):
            raise TypeError("certificate must be a VerifiedCertificate (see certificate())")
        if not isinstance(signature, (bytes, bytearray)) or len(signature) != 64:
            return False
        raw = self._raw_keys.get(certificate)
        if raw is None:
            raw = certificate.identity_key.public_bytes(serialization.Encoding.Raw,
                                                        serialization.PublicFormat.Raw)
        key = (raw, bytes(message), bytes(signature))
        with self._lock:
            if key in self._signatures:
                self.stats["signature_hits"] += 1
                return True
        try:
            certificate.identity_key.verify(bytes(signature), bytes(message))
        except InvalidSignature:
            return False
        with self._lock:
            self.stats["signature_checks"] += 1
            self._remember(self._signatures, key, None)  # only successes: no memory for junk
        return True

    def _still_valid(self, verified: VerifiedCertificate, now: dt.datetime) -> None:
        """What a cached verification does not settle: the time is inside the certificate's,
        the anchor's and the CRL's windows."""
        if now < verified.not_before:
            raise CertificateError("certificate is not valid yet", kind="not_yet_valid")
        if now > verified.not_after:
            raise CertificateError("certificate expired", kind="expired")
        if not self._anchor_window[0] <= now <= self._anchor_window[1]:
            raise CertificateError("CA certificate is not valid now", kind="expired")
        last, nxt = self._crl_window
        if now < last:
            raise CertificateError("CRL is not valid yet", kind="crl_not_yet_valid")
        if nxt is None or now > nxt:
            raise CertificateError("CRL is stale (past its next_update); fetch a fresh one",
                                   kind="crl_stale")

    def _remember(self, cache: dict, key: Any, value: Any) -> None:
        if len(cache) >= self._max:
            old = cache.pop(next(iter(cache)))
            if cache is self._certificates:
                self._raw_keys.pop(old, None)
        cache[key] = value

    def __repr__(self) -> str:
        return (f"DeviceVerifier(anchor={self._anchor.subject.rfc4514_string()!r}, "
                f"crl_number={_crl_number(self._crl) if self._crl is not None else None}, "
                f"certificates={len(self._certificates)})")
