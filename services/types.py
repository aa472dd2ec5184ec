"""Normalized records every provider adapter returns (see reference/providers.md §8).

Amounts are ``Decimal`` and signed bank-statement style: + money in, - money out.
Bank dates are plain calendar dates in the bank's time zone.
"""
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum


class TxnStatus(str, Enum):
    BOOKED = "booked"
    PENDING = "pending"


class ConsentStatus(str, Enum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ERROR = "error"


@dataclass
class Institution:
    provider: str
    external_id: str
    name: str
    countries: list
    bic: str | None = None
    logo_url: str | None = None
    max_history_days: int | None = None
    max_consent_days: int | None = None
    beta: bool = False
    raw: dict = field(default_factory=dict)


@dataclass
class ConsentStart:
    """Where to send the user's browser to give consent, and what to keep until it comes back."""
    redirect_url: str
    state: str
    code_verifier: str | None = None
    pending_data: dict = field(default_factory=dict)


@dataclass
class Consent:
    provider: str
    external_id: str
    institution_id: str | None
    status: ConsentStatus
    created_at: datetime | None
    valid_until: datetime | None
    secrets: dict
    redirect_url: str | None = None
    next_refresh_possible_at: datetime | None = None
    sync_cursor: str | None = None
    raw: dict = field(default_factory=dict)


@dataclass
class Account:
    provider: str
    external_id: str
    stable_key: str | None
    consent_external_id: str
    iban: str | None
    account_number_masked: str | None
    name: str | None
    holder_name: str | None
    currency: str | None
    kind: str = "checking"
    raw: dict = field(default_factory=dict)


@dataclass
class Balance:
    account_external_id: str
    kind: str
    amount: Decimal
    currency: str
    reference_date: date | None
    fetched_at: datetime
    raw: dict = field(default_factory=dict)


@dataclass
class Transaction:
    provider: str
    account_external_id: str
    external_id: str
    id_is_synthetic: bool
    alt_ids: dict
    status: TxnStatus
    amount: Decimal
    currency: str
    booking_date: date | None
    value_date: date | None
    transaction_date: date | None
    description: str
    structured_reference: str | None
    counterparty_name: str | None
    counterparty_iban: str | None
    counterparty_bic: str | None = None
    end_to_end_id: str | None = None
    mandate_id: str | None = None
    bank_transaction_code: str | None = None
    merchant_name: str | None = None
    mcc: str | None = None
    category: str | None = None
    original_amount: Decimal | None = None
    original_currency: str | None = None
    balance_after: Decimal | None = None
    replaces_external_id: str | None = None
    raw: dict = field(default_factory=dict)

    @property
    def date(self):
        """The date the line is booked on in the journal."""
        return self.booking_date or self.value_date or self.transaction_date


@dataclass
class RateLimitInfo:
    remaining: int | None
    limit: int | None
    reset_at: datetime | None


@dataclass
class SyncPage:
    """Everything one fetch returned for one account; the adapter hides its paging loop."""
    added: list
    modified: list = field(default_factory=list)
    removed_external_ids: list = field(default_factory=list)
    next_cursor: str | None = None
    rate_limit: RateLimitInfo | None = None
