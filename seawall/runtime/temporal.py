"""Connecting to Temporal the same way everywhere: pydantic payloads, optional mTLS, our search attributes."""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter
from temporalio.exceptions import ApplicationError

from seawall.runtime.config import Settings
from seawall.security.codec import EncryptionCodec, StrictEncryptionCodec, StrictPayloadConverter


class TemporalConfigError(ValueError):
    """The Temporal connection settings are inconsistent (e.g. a TLS cert without its key)."""


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The payload encryption codec when ``SEAWALL_PAYLOAD_KEYS`` is set; PayloadKeyError if unusable."""
    if not settings.payload_keys:
        if settings.payload_require_encryption:
            raise TemporalConfigError(
                "SEAWALL_PAYLOAD_REQUIRE_ENCRYPTION needs SEAWALL_PAYLOAD_KEYS: no key, nothing to require"
            )
        return None
    if settings.payload_require_encryption:
        return StrictEncryptionCodec.from_refs(settings.payload_keys)
    return EncryptionCodec.from_refs(settings.payload_keys)


class PlainFailureConverter(DefaultFailureConverter):
    """Failures raised on purpose carry a sentence for people, not a Python stack trace.

    An ``ApplicationError`` our code raises, or a ``ValueError`` an update validator raises to reject
    (``gate 'x' is not the one waiting``), reaches the history, the CLI and the UI's toast; its stack
    trace would show the worker's file paths and nothing an operator can act on. Anything else (a bug)
    keeps its trace.
    """

    def to_failure(self, exception: BaseException, payload_converter: Any, failure: Any) -> None:
        if isinstance(exception, ApplicationError | ValueError):
            exception.__traceback__ = None
        super().to_failure(exception, payload_converter, failure)


class PlainEncodedFailureConverter(PlainFailureConverter):
    """The same, with messages moved into the encrypted attributes payload."""

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=True)


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The pydantic converter, encrypting payloads when ``settings.payload_keys`` (or the env) says so."""
    settings = settings or Settings()
    codec = payload_codec(settings)
    if codec is None:
        return dataclasses.replace(pydantic_data_converter, failure_converter_class=PlainFailureConverter)
    if isinstance(codec, StrictEncryptionCodec):
        # Plain payloads decode to a marker this converter refuses (seawall/security/codec.py).
        return dataclasses.replace(
            pydantic_data_converter,
            payload_converter_class=StrictPayloadConverter,
            payload_codec=codec,
            failure_converter_class=PlainEncodedFailureConverter,
        )
    # Failure messages and stack traces name VMs, paths and hosts too: move them into the encrypted
    # attributes payload instead of leaving them in the history's plain failure fields.
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=PlainEncodedFailureConverter,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    paths = {
        "SEAWALL_TEMPORAL_TLS_CA": settings.temporal_tls_ca,
        "SEAWALL_TEMPORAL_TLS_CERT": settings.temporal_tls_cert,
        "SEAWALL_TEMPORAL_TLS_KEY": settings.temporal_tls_key,
    }
    given = {name: path for name, path in paths.items() if path is not None}
    if not given:
        return False
    if settings.temporal_tls_cert is None or settings.temporal_tls_key is None:
        raise TemporalConfigError(
            "mTLS needs both SEAWALL_TEMPORAL_TLS_CERT and SEAWALL_TEMPORAL_TLS_KEY; got only "
            + ", ".join(sorted(given))
        )
    for name, path in given.items():
        if not path.is_file():
            raise TemporalConfigError(f"{name}: {path} is not a readable file")
    return TLSConfig(
        server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
        client_cert=settings.temporal_tls_cert.read_bytes(),
        client_private_key=settings.temporal_tls_key.read_bytes(),
        domain=settings.temporal_tls_server_name,
    )


async def connect(settings: Settings | None = None) -> Client:
    settings = settings or Settings()
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
    )
