"""Regenerates tests/data/nist_gcm256_96.json from the NIST CAVP AES-GCM test vectors.

Source: the NIST CAVP "GCM Test Vectors" (CAVS 14.0, gcmtestvectors.zip), as redistributed in
the PyPI package cryptography-vectors 48.0.0 (the ``cryptography`` project's vector collection):

    cryptography_vectors-48.0.0-py3-none-any.whl
    sha256 b15725e63b75c31daaf9788489cc379cbc990c92fbeb37ace1008cd5c37df804
    files  cryptography_vectors/ciphers/AES/GCM/gcmEncryptExtIV256.rsp
           cryptography_vectors/ciphers/AES/GCM/gcmDecrypt256.rsp

How the JSON was made::

    pip download --no-deps -d /tmp/cv cryptography-vectors==48.0.0
    python tests/data/make_gcm_vectors.py /tmp/cv/cryptography_vectors-48.0.0-py3-none-any.whl

(the argument may also be an unpacked directory that contains ``cryptography_vectors/``; with
no argument the installed ``cryptography_vectors`` package is used).

Every entry of the two files with Keylen = 256, IVlen = 96 and Taglen = 128 is kept - privcity
supports only 96-bit nonces and 128-bit tags - which is 375 encryption entries and 375
decryption entries (about 250 KB), so no subset is taken. Each JSON object is::

    {"key", "iv", "pt", "aad", "ct", "tag": lower-case hex strings,
     "fail": bool, "source": "<file name>#Count=<n>"}

Decryption entries that NIST marks FAIL have "fail": true and no "pt". The output is
deterministic (file order, sorted keys), so re-running the script reproduces the file byte for
byte.
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

MEMBERS = ("gcmEncryptExtIV256.rsp", "gcmDecrypt256.rsp")
PREFIX = "cryptography_vectors/ciphers/AES/GCM/"
OUT = Path(__file__).with_name("nist_gcm256_96.json")


def _read(source: str | None, name: str) -> str:
    if source is None:
        import cryptography_vectors  # the installed package

        return Path(cryptography_vectors.__file__).parent.joinpath("ciphers/AES/GCM", name).read_text()
    path = Path(source)
    if path.is_dir():
        return (path / PREFIX / name).read_text()
    with zipfile.ZipFile(path) as zf:
        return zf.read(PREFIX + name).decode("ascii")


def parse(text: str, source: str) -> list[dict]:
    """The entries of one .rsp file with a 256-bit key, 96-bit IV and 128-bit tag."""
    params: dict[str, int] = {}
    entries: list[dict] = []
    cur: dict | None = None

    def flush() -> None:
        if cur is None:
            return
        if (params.get("Keylen"), params.get("IVlen"), params.get("Taglen")) != (256, 96, 128):
            return
        assert len(cur["pt"] if "pt" in cur else cur["ct"]) * 4 == params["PTlen"], cur
        assert len(cur["aad"]) * 4 == params["AADlen"], cur
        assert len(cur["iv"]) == 24 and len(cur["key"]) == 64 and len(cur["tag"]) == 32, cur
        entries.append(cur)

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            flush()
            cur = None
            k, _, v = line.strip("[]").partition("=")
            params[k.strip()] = int(v)
            continue
        if line == "FAIL":
            assert cur is not None
            cur["fail"] = True
            continue
        k, _, v = line.partition("=")
        k, v = k.strip(), v.strip().lower()
        if k == "Count":
            flush()
            cur = {"fail": False, "source": f"{source}#Count={int(v)}"}
        else:
            assert cur is not None, line
            cur[{"Key": "key", "IV": "iv", "PT": "pt", "AAD": "aad", "CT": "ct", "Tag": "tag"}[k]] = v
    flush()
    for e in entries:
        if e["fail"]:
            e.pop("pt", None)
        else:
            assert "pt" in e, e
    return entries


def main(argv: list[str]) -> int:
    source = argv[1] if len(argv) > 1 else None
    entries: list[dict] = []
    for name in MEMBERS:
        entries += parse(_read(source, name), name)
    text = json.dumps(entries, indent=0, sort_keys=True) + "\n"
    OUT.write_text(text)
    fails = sum(e["fail"] for e in entries)
    print(f"wrote {OUT.name}: {len(entries)} entries ({fails} FAIL), {len(text)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
