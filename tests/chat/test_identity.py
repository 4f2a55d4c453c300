"""Identities: PEM bytes, agent ids and signatures exactly as upstream's Node code makes them.

The constants below come from a fixed key (seed 00 01 .. 1f) and were checked against
both ``openssl pkey``/``pkeyutl`` and Node's ``crypto`` (``export({type:'spki'})``,
``crypto.sign``). When ``node`` is installed the cross-check also runs live.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest

from agentctl_swarm.chat.identity import (
    Identity,
    IdentityError,
    agent_id_for,
    identity_path,
    is_valid_pubkey,
    verify_signature,
)

FIXED_PRIVATE_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n"
    "-----END PRIVATE KEY-----\n"
)
FIXED_PUBLIC_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n"
    "-----END PUBLIC KEY-----\n"
)
FIXED_AGENT_ID = "f0ff50dacf109dea"
SIGNED_TEXT = "AGENTCHAT_AUTH|00112233445566778899aabbccddeeff|chal_abc_01234567|1700000000000"
FIXED_SIGNATURE = (
    "TdrpDroG7obcATax0MahfmIoNRxVjZo1rFe8qgAf8JXZIVoB61mOemrUeGj0SmCLeN5fOgJFDJdLTfDB2CV6Bw=="
)


def test_fixed_key_pem_id_and_signature_byte_for_byte():
    ident = Identity.from_private_pem("fixed", FIXED_PRIVATE_PEM)
    assert ident.public_pem == FIXED_PUBLIC_PEM
    assert ident.private_pem == FIXED_PRIVATE_PEM
    assert ident.agent_id == FIXED_AGENT_ID == agent_id_for(FIXED_PUBLIC_PEM)
    assert ident.sign(SIGNED_TEXT) == FIXED_SIGNATURE
    assert verify_signature(FIXED_PUBLIC_PEM, SIGNED_TEXT, FIXED_SIGNATURE)


def test_verify_rejects_wrong_text_key_or_garbage():
    other = Identity.generate("other")
    assert not verify_signature(FIXED_PUBLIC_PEM, SIGNED_TEXT + "x", FIXED_SIGNATURE)
    assert not verify_signature(other.public_pem, SIGNED_TEXT, FIXED_SIGNATURE)
    assert not verify_signature(FIXED_PUBLIC_PEM, SIGNED_TEXT, "!!not base64!!")
    assert not verify_signature("not a pem", SIGNED_TEXT, FIXED_SIGNATURE)
    assert not is_valid_pubkey("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert not is_valid_pubkey(None)
    assert is_valid_pubkey(other.public_pem)


def test_unicode_is_signed_as_utf8():
    ident = Identity.generate("u")
    sig = ident.sign("héllo → ✓")
    assert verify_signature(ident.public_pem, "héllo → ✓", sig)


def test_save_writes_upstream_fields_mode_0600_and_gitignore(tmp_path):
    ident = Identity.from_private_pem(
        "fixed", FIXED_PRIVATE_PEM, created="2025-01-01T00:00:00.000Z"
    )
    path = identity_path("fixed", home=tmp_path)
    assert path == tmp_path / ".agentchat" / "identities" / "fixed.json"
    ident.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {
        "publicKey": FIXED_PUBLIC_PEM,
        "privateKey": FIXED_PRIVATE_PEM,
        "agentId": FIXED_AGENT_ID,
        "name": "fixed",
        "created": "2025-01-01T00:00:00.000Z",
    }
    assert path.read_text().startswith('{\n  "publicKey"')  # JSON.stringify(data, null, 2)
    assert "*" in (tmp_path / ".agentchat" / ".gitignore").read_text().splitlines()
    assert [p.name for p in path.parent.iterdir()] == ["fixed.json"]  # no temp files left
    again = Identity.load(path)
    assert again.agent_id == FIXED_AGENT_ID and again.sign("x") == ident.sign("x")


def test_load_accepts_pubkey_privkey_keys(tmp_path):
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps({"pubkey": FIXED_PUBLIC_PEM, "privkey": FIXED_PRIVATE_PEM,
                                "name": "legacy"}))  # fmt: skip
    ident = Identity.load(path)
    assert ident.agent_id == FIXED_AGENT_ID and ident.name == "legacy"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not a readable JSON identity file"),
        ("[]", "must hold a JSON object"),
        (json.dumps({"name": "x"}), "'publicKey' is missing"),
        (json.dumps({"publicKey": FIXED_PUBLIC_PEM}), "'name' is missing"),
        (
            json.dumps({"publicKey": FIXED_PUBLIC_PEM, "privateKey": "junk", "name": "x"}),
            "'privateKey' is not a PKCS#8 PEM",
        ),
        (
            json.dumps({"publicKey": Identity.generate("o").public_pem,
                        "privateKey": FIXED_PRIVATE_PEM, "name": "x"}),
            "does not match",
        ),
    ],
)  # fmt: skip
def test_load_errors_name_the_file(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(IdentityError) as info:
        Identity.load(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_missing_file_and_bad_name(tmp_path):
    with pytest.raises(IdentityError, match="not found"):
        Identity.load(tmp_path / "none.json")
    with pytest.raises(IdentityError, match="no characters"):
        identity_path("!!!", home=tmp_path)
    assert identity_path("a/b c", home=tmp_path).name == "abc.json"


def test_public_only_identity_cannot_sign(tmp_path):
    path = tmp_path / "pub.json"
    path.write_text(json.dumps({"publicKey": FIXED_PUBLIC_PEM, "name": "pub"}))
    ident = Identity.load(path)
    assert not ident.has_private_key
    with pytest.raises(IdentityError, match="cannot sign"):
        ident.sign("x")


NODE_SCRIPT = r"""
const c = require('crypto'); const fs = require('fs');
const [mode, path] = process.argv.slice(1);
if (mode === 'write') {
  const {publicKey, privateKey} = c.generateKeyPairSync('ed25519');
  const pub = publicKey.export({type: 'spki', format: 'pem'});
  const id = c.createHash('sha256').update(pub).digest('hex').slice(0, 16);
  fs.writeFileSync(path, JSON.stringify({publicKey: pub,
    privateKey: privateKey.export({type: 'pkcs8', format: 'pem'}), agentId: id, name: 'nodey',
    created: new Date().toISOString()}, null, 2), {mode: 0o600});
} else {
  const d = JSON.parse(fs.readFileSync(path, 'utf8'));
  const k = c.createPrivateKey(d.privateKey);
  const pub = c.createPublicKey(k).export({type: 'spki', format: 'pem'});
  const id = c.createHash('sha256').update(pub).digest('hex').slice(0, 16);
  const ok = c.verify(null, Buffer.from('hello'), c.createPublicKey(d.publicKey),
                      Buffer.from(process.argv[3], 'base64'));
  process.stdout.write(JSON.stringify({same: pub === d.publicKey, id, ok,
    sig: c.sign(null, Buffer.from('hello'), k).toString('base64')}));
}
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_identity_files_round_trip_with_node(tmp_path):
    node_file = tmp_path / "node.json"
    subprocess.run(["node", "-e", NODE_SCRIPT, "write", str(node_file)], check=True, timeout=30)
    from_node = Identity.load(node_file)
    assert from_node.agent_id == json.loads(node_file.read_text())["agentId"]
    py_file = tmp_path / "py.json"
    mine = Identity.generate("pyth")
    mine.save(py_file)
    out = subprocess.run(
        ["node", "-e", NODE_SCRIPT, "read", str(py_file), mine.sign("hello")],
        check=True, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result == {"same": True, "id": mine.agent_id, "ok": True, "sig": mine.sign("hello")}
