"""`s3://bucket/key` addresses: parsed and checked without the S3 client.

Settings validators check URIs while a recipe is validated; this module keeps that check free
of the connector (boto3, retries, transfers), which `skitflow validate` never needs.
"""

from __future__ import annotations

import dataclasses
import re

from skitflow.util.globs import is_glob

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")


@dataclasses.dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``; a key ending in ``/`` (or empty) is a prefix, one with * ? [ a glob."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    @property
    def is_glob(self) -> bool:
        return is_glob(self.key)

    def with_key(self, key: str) -> S3Uri:
        return S3Uri(self.bucket, key)


def is_s3_uri(text: str) -> bool:
    return text[:5].lower() == "s3://"


def parse_uri(uri: str) -> S3Uri:
    """Split ``s3://bucket/key``; raises ValueError (a settings error) when it is not one."""
    if not is_s3_uri(uri):
        raise ValueError(f"`{uri}` is not an s3:// URI; write s3://bucket/key")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"`{uri}` names no bucket; write s3://bucket/key")
    if "{{" not in bucket and not _BUCKET_NAME.match(bucket):
        raise ValueError(
            f"`{bucket}` is not a valid bucket name (3-63 lowercase letters, digits, dots and "
            "hyphens)"
        )
    return S3Uri(bucket, key)
