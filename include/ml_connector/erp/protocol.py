"""The ERP side of a pipeline: :class:`OrderSource`, what every ERP vendor package implements.

An ERP vendor package (``ml_connector/erp/<vendor>/``) has three modules: ``hook.py`` (the only I/O to that
ERP), ``mapping.py`` (pure: ERP document <-> canonical records) and ``source.py`` (an :class:`OrderSource`
built on the two). Operators and the :class:`~ml_connector.service.ShipmentService` see only this protocol,
so they never know which ERP they talk to, and ERP code never knows which carrier buys the label.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ml_connector.errors import RecordError
from ml_connector.models import Address, Label, Money, Order, TrackingResult

if TYPE_CHECKING:  # pragma: no cover
    from ml_connector.settings import PipelineSettings


@dataclass(frozen=True)
class ExtractFailure:
    """An ERP document that could not be mapped to an :class:`Order` (it is quarantined with ``error``).

    :param erp_id: the ERP's immutable id of the document.
    :param number: the document number a person knows.
    :param modified_at: when the ERP last changed it (a later change re-opens the quarantine).
    """

    erp: str
    erp_id: str
    number: str
    modified_at: datetime | None
    error: RecordError


class OrderSource(abc.ABC):
    """Released ERP documents in, tracking and status out.

    Every method that writes is idempotent: writing the same values twice leaves the ERP as after the
    first write (a replayed write-back must be harmless). Errors are typed (:mod:`ml_connector.errors`):
    :class:`~ml_connector.errors.RecordError` for one document's data, :class:`~ml_connector.errors.ConfigurationError`
    (or an :class:`~ml_connector.errors.AuthenticationError`) for the connection or settings,
    :class:`~ml_connector.errors.RetryableError` for transient failures.

    :param settings: the pipeline's validated settings.
    :param hook: the ERP hook; default: built from the settings' ERP connection id.
    """

    #: registry name of the ERP (``business_central``)
    erp: str

    def __init__(self, settings: PipelineSettings, hook: Any | None = None) -> None:
        self.settings = settings
        self.hook = hook if hook is not None else self.make_hook(settings)

    @classmethod
    @abc.abstractmethod
    def make_hook(cls, settings: PipelineSettings) -> Any:
        """The ERP hook for ``settings.erp_connection_id``."""

    @abc.abstractmethod
    def extract(self, start: datetime, end: datetime) -> Iterator[Order | ExtractFailure]:
        """Released documents modified in ``[start, end)``, every page. A document that cannot be mapped comes
        back as an :class:`ExtractFailure` instead of stopping the others.

        :raises ConfigurationError: the connection or a setting is wrong (nothing is quarantined).
        :raises RetryableError: the ERP is unavailable or throttling.
        """

    @abc.abstractmethod
    def ship_from(self) -> Address:
        """The shipper address printed on labels: the pipeline's ``ship_from`` setting, else the ERP's company
        address. Read once per source instance.

        :raises ConfigurationError: neither gives a usable address (the message says where to fix it).
        """

    @abc.abstractmethod
    def write_tracking(self, order: Order, tracking_numbers: list[str], service_code: str | None) -> None:
        """Put the tracking number(s) on the ERP document (idempotent).

        :raises RecordError: the value does not fit the ERP's field.
        :raises ConflictError: the document kept changing under us (retried later).
        """

    @abc.abstractmethod
    def write_status(self, order: Order, tracking: TrackingResult) -> None:
        """Reflect a package's live status (in transit, exception, delivered with time and signature) on the
        ERP document (idempotent; called only when the status changed)."""

    def close(self) -> None:
        """End what the source opened (an ERP session holding a licensed API-user slot, say): the operators
        call it when their task ends, success or not. Default: the hook's ``close()``, if it has one."""
        close = getattr(self.hook, "close", None)
        if callable(close):
            close()

    #: the webhook inbox source whose deliveries name documents to read now (:meth:`pushed`); None: no pushes
    push_source: str | None = None

    def pushed(self, payloads: list[dict[str, Any]]) -> Iterator[Order | ExtractFailure]:
        """The released documents that inbound push notifications (webhook inbox bodies of :attr:`push_source`)
        name, read now whatever their modification time, so they do not wait for a schedule window. Default:
        none."""
        return iter(())

    def attach_label(self, order: Order, label: Label, filename: str) -> bool:
        """Attach the label file to the ERP document, where the ERP can hold files (idempotent: a replay
        creates no second attachment). Returns ``False`` when this ERP does not take attachments."""
        return False

    def write_charges(self, order: Order, charges: Money) -> bool:
        """Record what the label cost (the carrier's negotiated charges when it returned them, else the
        published ones) on the ERP document, where the ERP can hold it (idempotent: called after
        :meth:`write_tracking` on every write-back). Returns ``False`` when this ERP does not take it."""
        return False
