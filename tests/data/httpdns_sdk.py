#!/usr/bin/env python3
"""What the vendors' HTTPDNS SDKs do to a request and an answer, written from their public source
(Alibaba's Android SDK: ResolveHostHelper.getPath, SignService, AESEncryptService; Tencent
DNSPod's Android SDK: AesCipherSuite, RequestBuilder), with the `cryptography` package, so the
tests check gslbd against crypto that is not its own.

stdin: {"op": ..., "items": [...]}; stdout: a JSON list, one result per item.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import sys
from urllib.parse import quote

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def cbc_encrypt(key, plain, iv):
    p = padding.PKCS7(128).padder()
    data = p.update(plain) + p.finalize()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + e.update(data) + e.finalize()


def cbc_decrypt(key, data):
    d = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    padded = d.update(data[16:]) + d.finalize()
    u = padding.PKCS7(128).unpadder()
    return u.update(padded) + u.finalize()


def alibaba_request(it):
    """The query string of /v2/d as ResolveHostHelper.getPath builds it."""
    mode = str(it["mode"])
    params = {"id": it["id"], "m": mode, "v": "1.0", "exp": str(it["exp"])}
    inner = {"dn": it["dn"]}
    if it.get("q"):
        inner["q"] = it["q"]
    if it.get("cip"):
        inner["cip"] = it["cip"]
    if mode == "0":
        params.update(inner)
    else:
        key = bytes.fromhex(it["aes_key_hex"])
        plain = json.dumps(inner).encode()
        if mode == "2":
            iv = os.urandom(12)
            sealed = iv + AESGCM(key).encrypt(iv, plain, None)
        else:
            sealed = cbc_encrypt(key, plain, os.urandom(16))
        params["enc"] = sealed.hex()
    if it.get("secret"):
        signed = sorted(
            (k, v) for k, v in params.items()
            if (k in ("id", "m", "dn", "cip", "q", "enc", "exp", "tags", "v") or k.startswith("sdns-")) and v
        )
        content = "&".join(f"{k}={v}" for k, v in signed)
        secret = it["secret"]
        try:
            key = bytes.fromhex(secret)
        except ValueError:
            key = secret.encode()
        params["s"] = hmac.new(key, content.encode(), hashlib.sha256).hexdigest()
    params["sdk"] = "android_2.6.5"
    return "&".join(f"{k}={quote(v, safe=',')}" for k, v in params.items())


def alibaba_answer(it):
    """ResolveHostResponseParser: code must be success; data decrypted by mode; then JSON."""
    body = json.loads(it["body"])
    assert body["code"] == "success", body
    data = body["data"]
    mode = body["mode"]
    if mode in ("1", "2"):
        raw = base64.b64decode(data)
        key = bytes.fromhex(it["aes_key_hex"])
        if mode == "2":
            data = AESGCM(key).decrypt(raw[:12], raw[12:], None).decode()
        else:
            data = cbc_decrypt(key, raw).decode()
    return {"mode": mode, "data": json.loads(data)}


def dnspod_key(key):
    """AesCipherSuite.toMakeKey: right-pad with '0' to 16 characters."""
    return (key + "0" * max(0, 16 - len(key))).encode()


def dnspod_encrypt(it):
    return cbc_encrypt(dnspod_key(it["key"]), it["plain"].encode(), os.urandom(16)).hex()


# The SDK's answer patterns (rsp/ResponseParser): one name, and type=addrs.
RSP_PATTERN = re.compile(r"(.*),(.*)\|(.*)")
RSP_UNSPECIFIC = re.compile(r"(.*),(.*)-(.*),(.*)\|(.*)")


def dnspod_decrypt(it):
    """The answer decrypted, and the groups of the SDK's pattern for it."""
    text = cbc_decrypt(dnspod_key(it["key"]), bytes.fromhex(it["hex"])).decode()
    pattern = RSP_UNSPECIFIC if it.get("addrs") else RSP_PATTERN
    m = pattern.fullmatch(text)
    return {"text": text, "groups": list(m.groups()) if m else None}


OPS = {
    "alibaba_request": alibaba_request,
    "alibaba_answer": alibaba_answer,
    "dnspod_encrypt": dnspod_encrypt,
    "dnspod_decrypt": dnspod_decrypt,
}

if __name__ == "__main__":
    req = json.load(sys.stdin)
    json.dump([OPS[req["op"]](it) for it in req["items"]], sys.stdout)
