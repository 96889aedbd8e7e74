"""The documents bucket: RPS as built, signed RPS, and the provider's NFS-e (see docs)."""

from __future__ import annotations

from typing import Any


def xml_key(invoice_id: str) -> str:
    return f"xml/{invoice_id}.xml"


def signed_key(invoice_id: str) -> str:
    return f"signed/{invoice_id}.xml"


def nfse_key(invoice_id: str) -> str:
    return f"nfse/{invoice_id}.xml"


class DocumentStore:
    """S3 documents, always written with server-side encryption.

    The issuance path never asks whether a key exists: without s3:ListBucket on the bucket,
    S3 answers 403 (not 404) for a missing key. It reads only keys the invoice item names
    (signedKey), each written before the item names it."""

    def __init__(self, client: Any, bucket: str, kms_key_id: str = "") -> None:
        self._s3 = client
        self._bucket = bucket
        self._sse: dict[str, str] = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id}
            if kms_key_id
            else {"ServerSideEncryption": "AES256"}
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    def put_xml(self, key: str, body: bytes) -> None:
        self.put(key, body, "application/xml; charset=utf-8")

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self._s3.put_object(
            Bucket=self._bucket, Key=key, Body=body, ContentType=content_type, **self._sse
        )

    def read(self, key: str) -> bytes:
        answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        data: bytes = answer["Body"].read()
        return data

    def exists(self, key: str) -> bool:
        """Whether `key` exists. Only for a role granted s3:ListBucket on the bucket (the
        sweeper): without it S3 answers 403 for a missing key, which this re-raises."""
        try:
            self._s3.head_object(Bucket=self._bucket, Key=key)
        except self._s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True
