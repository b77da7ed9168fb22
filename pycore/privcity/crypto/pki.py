"""Device PKI: a city CA (Ed25519) certifies devices, gateways and aggregators (X.509 + CRL).

Security: never derive keys from, or trust, a certificate that did not come out of
:func:`verify_certificate` (it checks the CA signature, the validity window and a fresh CRL
signed by the same CA). Private keys are never logged, printed or pickled: the holders here
refuse pickling and show no key material in their repr.

Certificate layout (part of the wire format)
--------------------------------------------
* Subject: ``CN`` = the subject id (1 to 64 characters, compared byte for byte, no Unicode
  normalisation), ``OU`` = the role, one of ``device``, ``gateway``, ``aggregator``.
* SubjectPublicKeyInfo: the subject's Ed25519 identity key (RFC 8410), so the certificate is an
  ordinary Ed25519 certificate for any X.509 tool.
* The X25519 key-agreement public key is carried, signed by the CA with the rest of the
  certificate, in a non-critical private extension :data:`AGREEMENT_KEY_OID`
  (``2.25.<uuid>``, an OID that needs no registration, ITU-T X.667) whose value is the DER
  SubjectPublicKeyInfo of the X25519 key (RFC 8410 ``id-X25519``). One certificate therefore
  binds both keys to one identity; the alternative (a second certificate with an X25519
  SubjectPublicKeyInfo and keyUsage keyAgreement) would need two certificates kept in step.
* Extensions: BasicConstraints CA=false (critical), KeyUsage digitalSignature (critical),
  SubjectKeyIdentifier, AuthorityKeyIdentifier. The CA certificate is self-signed with
  BasicConstraints CA=true, pathlen 0 and KeyUsage keyCertSign + cRLSign.
* Serial numbers are 158 random bits under a top bit set (``_serial_number``): always 20
  bytes in DER, so every certificate of a kind has one size (the bytes a device sends do not
  vary with its serial); the CRL carries a CRLNumber that grows with each publication.

Times are timezone-aware; naive datetimes are refused. X.509 stores whole seconds, so the times
given when issuing are truncated to the second. ``not_after`` and ``next_update`` are inclusive.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import weakref
from dataclasses import dataclass
from typing import Any, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.x509.oid import NameOID

from ..errors import CertificateError

__all__ = [
    "AGREEMENT_KEY_OID",
    "ROLES",
    "CertificateAuthority",
    "CertificateError",
    "IdentityKeys",
    "VerifiedCertificate",
    "load_certificate",
    "load_crl",
    "load_private_key",
    "save_certificate",
    "save_crl",
    "save_private_key",
    "verify_certificate",
]

#: Private extension holding the subject's X25519 SubjectPublicKeyInfo (DER).
AGREEMENT_KEY_OID = x509.ObjectIdentifier("2.25.302920651395498116881991909799741682996")
#: Roles a certificate can carry (in the subject's OU).
ROLES = ("device", "gateway", "aggregator")

PathLike = Union[str, "os.PathLike[str]"]
Passphrase = Union[bytes, str, None]
PrivateKey = Union[ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey]


# --- helpers ----------------------------------------------------------------------------------


def _serial_number() -> int:
    """A random serial of exactly 159 bits (the top one set, 158 from the OS): 20 DER bytes,
    positive, under RFC 5280's 20-octet limit."""
    return (1 << 158) | (x509.random_serial_number() >> 1)

def _utc(when: dt.datetime | None, name: str) -> dt.datetime:
    if when is None:
        return dt.datetime.now(dt.timezone.utc)
    if not isinstance(when, dt.datetime):
        raise TypeError(f"{name} must be a datetime, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return when.astimezone(dt.timezone.utc)


def _second(when: dt.datetime) -> dt.datetime:
    return when.replace(microsecond=0)


def _passphrase(passphrase: Passphrase) -> bytes | None:
    if passphrase is None:
        return None
    if isinstance(passphrase, str):
        passphrase = passphrase.encode("utf-8")
    if not isinstance(passphrase, (bytes, bytearray)) or len(passphrase) == 0:
        raise ValueError("passphrase must be a non-empty str or bytes, or None")
    return bytes(passphrase)


def _check_subject_id(subject_id: str) -> None:
    if not isinstance(subject_id, str):
        raise TypeError(f"subject_id must be a str, not {type(subject_id).__name__}")
    if not 1 <= len(subject_id) <= 64:
        raise ValueError("subject_id must have 1 to 64 characters (X.509 CN upper bound)")


def _fingerprint(public_key: Any) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _write_private(path: PathLike, data: bytes) -> None:
    # 0o600 from creation, so the file is never readable by others even for a moment.
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _private_pem(key: PrivateKey, passphrase: Passphrase) -> bytes:
    pw = _passphrase(passphrase)
    enc: serialization.KeySerializationEncryption = (
        serialization.NoEncryption() if pw is None else serialization.BestAvailableEncryption(pw))
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _load_private_pem(data: bytes, passphrase: Passphrase) -> Any:
    pw = _passphrase(passphrase)
    try:
        return serialization.load_pem_private_key(data, password=pw)
    except TypeError:
        # cryptography: a password for a clear key, or no password for an encrypted one.
        if pw is None:
            raise CertificateError("the private key is encrypted: a passphrase is required",
                                   kind="passphrase_required") from None
        raise CertificateError("the private key is not encrypted but a passphrase was given",
                               kind="bad_passphrase") from None
    except ValueError:
        if pw is not None and b"ENCRYPTED" in data:
            raise CertificateError("cannot decrypt the private key: wrong passphrase",
                                   kind="bad_passphrase") from None
        raise CertificateError("the private key file is not a valid PEM private key",
                               kind="malformed") from None


# --- PEM files --------------------------------------------------------------------------------

def save_private_key(path: PathLike, key: PrivateKey, *, passphrase: Passphrase = None) -> None:
    """Write an Ed25519 or X25519 private key as PKCS#8 PEM (mode 0600).

    With a passphrase the key is encrypted (``BestAvailableEncryption``); without, it is clear.
    """
    if not isinstance(key, (ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey)):
        raise TypeError("key must be an Ed25519 or X25519 private key")
    _write_private(path, _private_pem(key, passphrase))


def load_private_key(path: PathLike, *, passphrase: Passphrase = None) -> PrivateKey:
    """Read a PEM private key written by :func:`save_private_key`.

    Raises ``CertificateError`` of kind ``bad_passphrase`` (wrong passphrase, or one given for
    a clear key), ``passphrase_required``, ``malformed`` or ``wrong_key_type``.
    """
    with open(path, "rb") as f:
        key = _load_private_pem(f.read(), passphrase)
    if not isinstance(key, (ed25519.Ed25519PrivateKey, x25519.X25519PrivateKey)):
        raise CertificateError("expected an Ed25519 or X25519 private key", kind="wrong_key_type")
    return key


def save_certificate(path: PathLike, certificate: x509.Certificate) -> None:
    """Write a certificate as PEM."""
    with open(path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))


def load_certificate(path: PathLike) -> x509.Certificate:
    """Read a PEM certificate; ``CertificateError(kind="malformed")`` if it does not parse."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(f"{os.fspath(path)} is not a PEM certificate",
                               kind="malformed") from None


def save_crl(path: PathLike, crl: x509.CertificateRevocationList) -> None:
    """Write a CRL as PEM."""
    with open(path, "wb") as f:
        f.write(crl.public_bytes(serialization.Encoding.PEM))


def load_crl(path: PathLike) -> x509.CertificateRevocationList:
    """Read a PEM CRL; ``CertificateError(kind="malformed")`` if it does not parse."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError:
        raise CertificateError(f"{os.fspath(path)} is not a PEM CRL", kind="malformed") from None


# --- subject keys -----------------------------------------------------------------------------

class IdentityKeys:
    """The private keys of one subject: an Ed25519 identity key and an X25519 agreement key.

    Not picklable or copyable; the repr shows only public-key fingerprints.
    """

    __slots__ = ("_signing", "_agreement")

    def __init__(self, signing_key: ed25519.Ed25519PrivateKey,
                 agreement_key: x25519.X25519PrivateKey) -> None:
        if not isinstance(signing_key, ed25519.Ed25519PrivateKey):
            raise TypeError("signing_key must be an Ed25519PrivateKey")
        if not isinstance(agreement_key, x25519.X25519PrivateKey):
            raise TypeError("agreement_key must be an X25519PrivateKey")
        self._signing = signing_key
        self._agreement = agreement_key

    @classmethod
    def generate(cls) -> IdentityKeys:
        """Fresh keys from the OS CSPRNG (through OpenSSL)."""
        return cls(ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    @property
    def signing_key(self) -> ed25519.Ed25519PrivateKey:
        return self._signing

    @property
    def agreement_key(self) -> x25519.X25519PrivateKey:
        return self._agreement

    @property
    def identity_public_key(self) -> ed25519.Ed25519PublicKey:
        return self._signing.public_key()

    @property
    def agreement_public_key(self) -> x25519.X25519PublicKey:
        return self._agreement.public_key()

    def save(self, path: PathLike, *, passphrase: Passphrase = None) -> None:
        """Write both keys to one PEM file (Ed25519 block, then X25519 block), mode 0600."""
        _write_private(path, _private_pem(self._signing, passphrase)
                       + _private_pem(self._agreement, passphrase))

    @classmethod
    def load(cls, path: PathLike, *, passphrase: Passphrase = None) -> IdentityKeys:
        """Read a file written by :meth:`save`; errors as :func:`load_private_key`."""
        with open(path, "rb") as f:
            data = f.read()
        marker = b"-----BEGIN "
        blocks = [marker + b for b in data.split(marker)[1:]]
        if len(blocks) != 2:
            raise CertificateError("an identity key file holds exactly two PEM private keys",
                                   kind="malformed")
        signing, agreement = (_load_private_pem(b, passphrase) for b in blocks)
        if not (isinstance(signing, ed25519.Ed25519PrivateKey)
                and isinstance(agreement, x25519.X25519PrivateKey)):
            raise CertificateError("expected an Ed25519 key then an X25519 key",
                                   kind="wrong_key_type")
        return cls(signing, agreement)

    def __repr__(self) -> str:
        return (f"IdentityKeys(identity={_fingerprint(self.identity_public_key)}, "
                f"agreement={_fingerprint(self.agreement_public_key)})")

    def __reduce__(self) -> Any:
        raise TypeError("IdentityKeys holds private keys and cannot be pickled or copied")


# --- verified certificates --------------------------------------------------------------------

_TOKEN = object()


@dataclass(frozen=True, eq=False)
class VerifiedCertificate:
    """A certificate that passed :func:`verify_certificate`, with its parsed contents.

    Only :func:`verify_certificate` makes these; key agreement accepts nothing else.
    """

    certificate: x509.Certificate
    subject_id: str
    role: str
    serial_number: int
    not_before: dt.datetime
    not_after: dt.datetime
    identity_key: ed25519.Ed25519PublicKey
    agreement_key: x25519.X25519PublicKey
    # The raw Ed25519 key of the CA whose signature was checked (or that issued it): passed to
    # verify_certificate again with that CA as anchor, the signature need not be checked again.
    issuer_key: bytes = b""
    _token: object = None

    def __post_init__(self) -> None:
        if self._token is not _TOKEN:
            raise TypeError("VerifiedCertificate is made by verify_certificate only")
        object.__setattr__(self, "_token", None)  # so dataclasses.replace cannot forge one
        # Key derivation looks the raw key up for every envelope: encode it once.
        object.__setattr__(self, "_agreement_raw", self.agreement_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))
        _GENUINE[self] = _fields_of(self)

    def __copy__(self) -> VerifiedCertificate:
        return self  # (immutable; a copy would not be one verify_certificate made)

    def __deepcopy__(self, memo: Any) -> VerifiedCertificate:
        return self

    @property
    def agreement_key_bytes(self) -> bytes:
        """The 32 raw bytes of :attr:`agreement_key`."""
        return self._agreement_raw  # type: ignore[attr-defined, no-any-return]

    def __repr__(self) -> str:
        return (f"VerifiedCertificate(subject_id={self.subject_id!r}, role={self.role!r}, "
                f"serial_number={self.serial_number:#x})")


# Every VerifiedCertificate this module made, with its fields as made: verify_certificate takes
# its fast path (no second signature check) only for one of these, unchanged. An object built
# around __init__ (object.__new__, copy, a subclass) or edited since is verified from scratch.
_GENUINE: weakref.WeakKeyDictionary[VerifiedCertificate, tuple[Any, ...]] = \
    weakref.WeakKeyDictionary()


def _fields_of(v: VerifiedCertificate) -> tuple[Any, ...]:
    # (the objects themselves, held: an equal certificate or key is the same one)
    return (v.certificate, v.subject_id, v.role, v.serial_number, v.not_before, v.not_after,
            v.identity_key, v.agreement_key_bytes, v.agreement_key, v.issuer_key)


def _genuine(v: Any) -> bool:
    try:
        return type(v) is VerifiedCertificate and _GENUINE.get(v) == _fields_of(v)
    except (AttributeError, TypeError):  # (an object missing its fields)
        return False


def _fail(message: str, kind: str) -> CertificateError:
    return CertificateError(message, kind=kind)


def _as_certificate(obj: Any, name: str) -> x509.Certificate:
    if isinstance(obj, x509.Certificate):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
        except ValueError:
            raise _fail(f"{name} is not a valid X.509 certificate", "malformed") from None
    raise TypeError(f"{name} must be an x509.Certificate or its PEM/DER bytes")


def _check_window(cert: x509.Certificate, at: dt.datetime, what: str) -> None:
    if at < cert.not_valid_before_utc:
        raise _fail(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}",
                    "not_yet_valid")
    if at > cert.not_valid_after_utc:
        raise _fail(f"{what} expired at {cert.not_valid_after_utc.isoformat()}", "expired")


def _single(name: x509.Name, oid: x509.ObjectIdentifier, what: str) -> str:
    attrs = name.get_attributes_for_oid(oid)
    if len(attrs) != 1 or not isinstance(attrs[0].value, str):
        raise _fail(f"certificate subject must hold exactly one {what}", "malformed")
    return attrs[0].value


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


@functools.lru_cache(maxsize=32)
def _crl_signature_checked(crl_der: bytes, anchor_raw: bytes) -> bool:
    crl = x509.load_der_x509_crl(crl_der)
    return crl.is_signature_valid(ed25519.Ed25519PublicKey.from_public_bytes(anchor_raw))


def _crl_signature_valid(crl: x509.CertificateRevocationList, anchor_key: Any) -> bool:
    """``crl.is_signature_valid(anchor_key)``, remembered for the exact CRL bytes and CA key:
    a receiver admitting thousands of senders checks the same CRL's signature once, not per
    certificate. The cache key is the whole DER encoding, so another CRL is checked anew."""
    if not isinstance(anchor_key, ed25519.Ed25519PublicKey):
        return crl.is_signature_valid(anchor_key)
    raw = anchor_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _crl_signature_checked(crl.public_bytes(serialization.Encoding.DER), raw)


def verify_certificate(certificate: x509.Certificate | bytes, *,
                       trust_anchor: x509.Certificate,
                       crl: x509.CertificateRevocationList,
                       at: dt.datetime | None = None,
                       role: str | None = None,
                       subject_id: str | None = None) -> VerifiedCertificate:
    """Verify a subject certificate against a CA certificate and its CRL at time ``at``.

    Checks, in order: the trust anchor is a CA valid at ``at``; the certificate names it as
    issuer and carries its Ed25519 signature; it is a non-CA certificate valid at ``at``; the CRL
    is issued and signed by the anchor and fresh (``last_update <= at <= next_update``); the
    serial is not revoked; the subject has one CN and one OU role, an Ed25519 key and an X25519
    agreement key; ``role`` and ``subject_id`` match when given. ``at`` defaults to now (UTC).

    ``certificate`` may be a VerifiedCertificate (from an earlier call, or from
    :meth:`CertificateAuthority.issue_verified`): checked against the same CA key, its signature
    and contents are not checked again (they cannot have changed), and every other check is made
    at ``at``; verified against another CA key, it is verified from scratch.

    Raises ``CertificateError`` whose ``kind`` names the first failed check.
    """
    earlier = certificate if isinstance(certificate, VerifiedCertificate) else None
    if earlier is not None and not _genuine(earlier):
        earlier = None  # verified from scratch: its certificate only is taken
        certificate = getattr(certificate, "certificate", None)
    cert = earlier.certificate if earlier is not None \
        else _as_certificate(certificate, "certificate")
    anchor = _as_certificate(trust_anchor, "trust_anchor")
    if not isinstance(crl, x509.CertificateRevocationList):
        raise TypeError("crl must be an x509.CertificateRevocationList (see load_crl)")
    when = _utc(at, "at")
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")

    # The trust anchor.
    try:
        bc = anchor.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    anchor_key = anchor.public_key()
    if bc is None or not bc.ca or not isinstance(anchor_key, ed25519.Ed25519PublicKey):
        raise _fail("trust anchor is not an Ed25519 CA certificate", "not_a_ca")
    _check_window(anchor, when, "CA certificate")

    anchor_raw = anchor_key.public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
    if earlier is not None and earlier.issuer_key == anchor_raw and _genuine(earlier):
        _check_window(cert, when, "certificate")
        _check_revocation(cert, anchor, anchor_key, crl, when)
        _check_expected(earlier.role, earlier.subject_id, role, subject_id)
        return earlier

    # Issuer and signature.
    if cert.issuer != anchor.subject:
        raise _fail(f"certificate issued by {cert.issuer.rfc4514_string()!r}, "
                    f"not by the CA {anchor.subject.rfc4514_string()!r}", "wrong_issuer")
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        aki = None
    anchor_ski = _ski(anchor)
    if aki is not None and aki.key_identifier is not None and anchor_ski is not None \
            and aki.key_identifier != anchor_ski:
        raise _fail("certificate names another CA key (authority key identifier)",
                    "wrong_issuer")
    try:
        anchor_key.verify(cert.signature, cert.tbs_certificate_bytes)
    except InvalidSignature:
        raise _fail("certificate signature does not verify with the CA key",
                    "bad_signature") from None

    # The certificate itself.
    leaf_bc = next((e.value for e in cert.extensions if isinstance(e.value, x509.BasicConstraints)), None)
    if leaf_bc is not None and leaf_bc.ca:
        raise _fail("a CA certificate cannot be used as a subject certificate", "wrong_role")
    _check_window(cert, when, "certificate")
    _check_revocation(cert, anchor, anchor_key, crl, when)

    # Contents.
    cn = _single(cert.subject, NameOID.COMMON_NAME, "CN (subject id)")
    ou = _single(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
    if ou not in ROLES:
        raise _fail(f"unknown role {ou!r}; expected one of {ROLES}", "malformed")
    identity_key = cert.public_key()
    if not isinstance(identity_key, ed25519.Ed25519PublicKey):
        raise _fail("certificate key is not an Ed25519 identity key", "malformed")
    try:
        ext = cert.extensions.get_extension_for_oid(AGREEMENT_KEY_OID).value
        agreement_key = serialization.load_der_public_key(ext.value)  # type: ignore[attr-defined]
    except (x509.ExtensionNotFound, ValueError):
        raise _fail("certificate carries no valid X25519 agreement key", "malformed") from None
    if not isinstance(agreement_key, x25519.X25519PublicKey):
        raise _fail("agreement key extension does not hold an X25519 key", "malformed")
    _check_expected(ou, cn, role, subject_id)

    return VerifiedCertificate(
        certificate=cert, subject_id=cn, role=ou, serial_number=cert.serial_number,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        identity_key=identity_key, agreement_key=agreement_key, issuer_key=anchor_raw,
        _token=_TOKEN)


# (CRL, anchor) objects whose issuer and signature were found right, by identity: a receiver
# admitting thousands of senders against one CRL compares the names once (30 us a time), not
# per certificate. The entries hold the objects, so an id is never reused while cached; x509
# objects are immutable.
_CRL_MATCHES: dict[tuple[int, int], tuple[Any, Any]] = {}


def _crl_of_anchor(crl: x509.CertificateRevocationList, anchor: x509.Certificate,
                   anchor_key: Any) -> None:
    """Raises unless ``crl`` is issued by ``anchor`` and carries its signature."""
    slot = (id(crl), id(anchor))
    held = _CRL_MATCHES.get(slot)
    if held is not None and held[0] is crl and held[1] is anchor:
        return
    if crl.issuer != anchor.subject:
        raise _fail("CRL is not issued by the CA", "crl_wrong_issuer")
    if not _crl_signature_valid(crl, anchor_key):
        raise _fail("CRL signature does not verify with the CA key", "crl_bad_signature")
    if len(_CRL_MATCHES) >= 32:
        _CRL_MATCHES.clear()  # (one call, safe beside other threads, unlike popping one)
    _CRL_MATCHES[slot] = (crl, anchor)


def _check_revocation(cert: x509.Certificate, anchor: x509.Certificate, anchor_key: Any,
                      crl: x509.CertificateRevocationList, when: dt.datetime) -> None:
    _crl_of_anchor(crl, anchor, anchor_key)
    if when < crl.last_update_utc:
        raise _fail(f"CRL is not valid before {crl.last_update_utc.isoformat()}",
                    "crl_not_yet_valid")
    next_update = crl.next_update_utc
    if next_update is None or when > next_update:
        raise _fail("CRL is stale (past its next_update); fetch a fresh one", "crl_stale")
    revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if revoked is not None:
        raise _fail(f"certificate {cert.serial_number:#x} was revoked at "
                    f"{revoked.revocation_date_utc.isoformat()}", "revoked")


def _check_expected(ou: str, cn: str, role: str | None, subject_id: str | None) -> None:
    if role is not None and ou != role:
        raise _fail(f"certificate role is {ou!r}, expected {role!r}", "wrong_role")
    if subject_id is not None and cn != subject_id:
        raise _fail(f"certificate is for {cn!r}, expected {subject_id!r}", "wrong_subject")


# --- the CA -----------------------------------------------------------------------------------

class CertificateAuthority:
    """A city CA: an Ed25519 key and its self-signed certificate; issues, revokes, publishes.

    Revocations are held in memory (``revoked`` maps serial -> revocation time) and published
    with :meth:`publish_crl`; keep the latest CRL (or the map) to carry them across restarts.
    Not picklable or copyable; the repr shows no key material.
    """

    __slots__ = ("_key", "_certificate", "_revoked", "_crl_number")

    def __init__(self, private_key: ed25519.Ed25519PrivateKey,
                 certificate: x509.Certificate, *,
                 revoked: dict[int, dt.datetime] | None = None, crl_number: int = 0) -> None:
        if not isinstance(private_key, ed25519.Ed25519PrivateKey):
            raise TypeError("private_key must be an Ed25519PrivateKey")
        if not isinstance(certificate, x509.Certificate):
            raise TypeError("certificate must be an x509.Certificate")
        if certificate.public_key() != private_key.public_key():
            raise ValueError("certificate does not hold the public key of private_key")
        self._key = private_key
        self._certificate = certificate
        self._revoked: dict[int, dt.datetime] = dict(revoked or {})
        self._crl_number = int(crl_number)

    @classmethod
    def create(cls, name: str, *, not_before: dt.datetime | None = None,
               not_after: dt.datetime | None = None) -> CertificateAuthority:
        """A new CA named ``CN=name``; valid from ``not_before`` (default now) to
        ``not_after`` (default ten years later)."""
        _check_subject_id(name)
        start = _second(_utc(not_before, "not_before"))
        end = _second(_utc(not_after, "not_after")) if not_after is not None \
            else start + dt.timedelta(days=3650)
        if end <= start:
            raise ValueError("not_after must be later than not_before")
        key = ed25519.Ed25519PrivateKey.generate()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, None))
        return cls(key, cert)

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate: the trust anchor to hand to verifiers."""
        return self._certificate

    @property
    def revoked(self) -> dict[int, dt.datetime]:
        """A copy of the revoked serials and their revocation times."""
        return dict(self._revoked)

    def issue(self, subject_id: str, role: str, *,
              identity_key: ed25519.Ed25519PublicKey,
              agreement_key: x25519.X25519PublicKey,
              not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None) -> x509.Certificate:
        """Certify ``subject_id`` in ``role`` with its Ed25519 identity key and X25519
        agreement key, valid from ``not_before`` (default now) to ``not_after`` (default one
        year later, capped by nothing: keep it inside the CA's own validity)."""
        _check_subject_id(subject_id)
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if not isinstance(identity_key, ed25519.Ed25519PublicKey):
            raise TypeError("identity_key must be an Ed25519PublicKey")
        if not isinstance(agreement_key, x25519.X25519PublicKey):
            raise TypeError("agreement_key must be an X25519PublicKey")
        start = _second(_utc(not_before, "not_before"))
        end = _second(_utc(not_after, "not_after")) if not_after is not None \
            else start + dt.timedelta(days=365)
        if end <= start:
            raise ValueError("not_after must be later than not_before")
        spki = agreement_key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_id),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)])
        ca_ski = _ski(self._certificate)
        aki = (x509.AuthorityKeyIdentifier(ca_ski, None, None) if ca_ski is not None else
               x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()))
        return (x509.CertificateBuilder()
                .subject_name(subject).issuer_name(self._certificate.subject)
                .public_key(identity_key)
                .serial_number(_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(identity_key),
                               critical=False)
                .add_extension(aki, critical=False)
                .add_extension(x509.UnrecognizedExtension(AGREEMENT_KEY_OID, spki),
                               critical=False)
                .sign(self._key, None))

    def issue_verified(self, subject_id: str, role: str, *,
                       identity_key: ed25519.Ed25519PublicKey,
                       agreement_key: x25519.X25519PublicKey,
                       not_before: dt.datetime | None = None,
                       not_after: dt.datetime | None = None) -> VerifiedCertificate:
        """:meth:`issue`, returned as the VerifiedCertificate that :func:`verify_certificate`
        would make of it with this CA as anchor, without checking the signature just made.
        A server that runs the CA admits the devices it certifies with it (passed to
        verify_certificate, or to EnvelopeReceiver.add_sender, only the validity window and
        the CRL are checked): an Ed25519 verification and a parse saved per device."""
        cert = self.issue(subject_id, role, identity_key=identity_key,
                          agreement_key=agreement_key, not_before=not_before,
                          not_after=not_after)
        return VerifiedCertificate(
            certificate=cert, subject_id=subject_id, role=role,
            serial_number=cert.serial_number, not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, identity_key=identity_key,
            agreement_key=agreement_key, issuer_key=self._key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw),
            _token=_TOKEN)

    def revoke(self, serial_number: int | x509.Certificate, *,
               at: dt.datetime | None = None) -> None:
        """Mark a serial (or a certificate's serial) revoked as of ``at`` (default now).
        Takes effect for verifiers with the next :meth:`publish_crl`."""
        serial = serial_number.serial_number if isinstance(serial_number, x509.Certificate) \
            else int(serial_number)
        if serial <= 0:
            raise ValueError("serial_number must be > 0")
        self._revoked.setdefault(serial, _second(_utc(at, "at")))

    def publish_crl(self, *, at: dt.datetime | None = None,
                    next_update: dt.datetime | dt.timedelta = dt.timedelta(days=7),
                    ) -> x509.CertificateRevocationList:
        """A CRL signed by the CA listing every revoked serial, issued at ``at`` (default now)
        and fresh until ``next_update`` (a time, or a delay after ``at``)."""
        last = _second(_utc(at, "at"))
        nxt = last + next_update if isinstance(next_update, dt.timedelta) \
            else _second(_utc(next_update, "next_update"))
        if nxt <= last:
            raise ValueError("next_update must be later than at")
        self._crl_number += 1
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self._certificate.subject)
                   .last_update(last).next_update(nxt)
                   .add_extension(x509.CRLNumber(self._crl_number), critical=False))
        ca_ski = _ski(self._certificate)
        if ca_ski is not None:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier(ca_ski, None, None),
                                            critical=False)
        for serial, when in sorted(self._revoked.items()):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(when).build())
        return builder.sign(self._key, None)

    def save(self, key_path: PathLike, certificate_path: PathLike, *,
             passphrase: Passphrase = None) -> None:
        """Write the CA key (PKCS#8 PEM, encrypted when a passphrase is given, mode 0600) and
        certificate (PEM). Revocations are not saved here; keep the published CRL."""
        save_private_key(key_path, self._key, passphrase=passphrase)
        save_certificate(certificate_path, self._certificate)

    @classmethod
    def load(cls, key_path: PathLike, certificate_path: PathLike, *,
             passphrase: Passphrase = None,
             crl: x509.CertificateRevocationList | None = None) -> CertificateAuthority:
        """Read a CA written by :meth:`save`; with ``crl`` (one it signed) its revocations
        and CRL number carry over."""
        key = load_private_key(key_path, passphrase=passphrase)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise CertificateError("the CA key must be Ed25519", kind="wrong_key_type")
        cert = load_certificate(certificate_path)
        revoked: dict[int, dt.datetime] = {}
        number = 0
        if crl is not None:
            if crl.issuer != cert.subject or not crl.is_signature_valid(key.public_key()):
                raise CertificateError("CRL was not signed by this CA", kind="crl_bad_signature")
            revoked = {r.serial_number: r.revocation_date_utc for r in crl}
            try:
                number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            except x509.ExtensionNotFound:
                number = 0
        return cls(key, cert, revoked=revoked, crl_number=number)

    def __repr__(self) -> str:
        return (f"CertificateAuthority(subject={self._certificate.subject.rfc4514_string()!r}, "
                f"revoked={len(self._revoked)})")

    def __reduce__(self) -> Any:
        raise TypeError("CertificateAuthority holds a private key and cannot be pickled or copied")
