"""Deterministic data of the Enable Banking simulator: ASPSPs, accounts and transactions.

Nothing here is random: a transaction derives from ``sha256(account key | booking day | index)``,
so the same account, day and index always give the same amount, parties and references, whatever
the session, the process or the machine.

Model: the transactions of booking day ``b`` were made on ``b - 1`` (``transaction_date``) and
book on ``b`` (``booking_date`` = ``value_date`` = ``b``). While the bank's "today" is ``b - 1``
they are served as ``PDNG`` without ``entry_reference`` and with a pending ``transaction_id``;
from ``b`` on they are ``BOOK`` with an ``entry_reference`` and another ``transaction_id``.
"""
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, timedelta
from decimal import Decimal

CENT = Decimal("0.01")


# --------------------------------------------------------------------------- check digits
def _alnum_to_digits(text):
    return "".join(str(int(char, 36)) for char in text.upper())


def make_iban(country, bban):
    """``country`` + ISO 13616 check digits + ``bban``."""
    number = int(_alnum_to_digits(bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


def is_valid_iban(iban):
    iban = (iban or "").replace(" ", "").upper()
    if len(iban) < 15 or not iban.isalnum() or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    return int(_alnum_to_digits(iban[4:] + iban[:4])) % 97 == 1


def make_rf_reference(body):
    """ISO 11649 structured creditor reference ``RFcc<body>``."""
    number = int(_alnum_to_digits(body + "RF00"))
    return f"RF{98 - number % 97:02d}{body}"


def is_valid_rf_reference(reference):
    reference = (reference or "").replace(" ", "").upper()
    if not reference.startswith("RF") or not 5 <= len(reference) <= 25 or not reference.isalnum():
        return False
    return int(_alnum_to_digits(reference[4:] + reference[:4])) % 97 == 1


def _digest(*parts):
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def _number(digest, offset, modulo):
    return int.from_bytes(digest[offset:offset + 4], "big") % modulo


def _digits(seed, length):
    text = hashlib.sha256(seed.encode()).hexdigest() * 2
    return "".join(str(int(char, 16) % 10) for char in text)[:length]


def belgian_bban(ten_digits):
    """A Belgian BBAN: 10 digits and their national mod-97 check."""
    return f"{ten_digits}{int(ten_digits) % 97 or 97:02d}"


def identification_hash(identification):
    """Enable Banking-like hash of an account identification: stable across sessions."""
    return hashlib.sha256(f"eb-sim:account:{identification}".encode()).hexdigest()[:40]


@lru_cache(maxsize=None)
def counterparty_iban(name, country):
    seed = f"eb-sim:counterparty:{name}:{country}"
    lengths = {"BE": 12, "NL": 10, "FR": 23, "DE": 18, "FI": 14, "SE": 20}
    if country == "NL":
        return make_iban("NL", "INGB" + _digits(seed, 10))
    if country not in lengths:
        return None
    return make_iban(country, _digits(seed, lengths[country]))


# --------------------------------------------------------------------------- ASPSPs
# The application's sandbox sees these banks. ``maximum_consent_validity`` is in seconds
# (180 and 90 days are the two values observed in real fixtures).
ASPSPS = (
    {
        "name": "Demo Bank",
        "country": "BE",
        "bic": "DEMOBEBB",
        "psu_types": ["business", "personal"],
        "auth_methods": [
            {"name": "redirect", "title": "Demo Bank app", "psu_type": "business",
             "approach": "REDIRECT", "hidden_method": False},
            {"name": "redirect", "title": "Demo Bank app", "psu_type": "personal",
             "approach": "REDIRECT", "hidden_method": False},
        ],
        "maximum_consent_validity": 15552000,
        "beta": False,
        "required_psu_headers": [],
    },
    {
        "name": "Nordic Demo Bank",
        "country": "FI",
        "bic": "NDEMFIHH",
        "psu_types": ["business"],
        "auth_methods": [
            {"name": "mobile", "title": "Mobile key", "psu_type": "business",
             "approach": "REDIRECT", "hidden_method": False},
        ],
        "maximum_consent_validity": 7776000,
        "beta": True,
        # This bank refuses any data call without these headers (the user must be present).
        "required_psu_headers": ["psu-ip-address", "psu-user-agent"],
    },
)


def find_aspsp(name, country):
    for aspsp in ASPSPS:
        if aspsp["name"] == name and aspsp["country"] == (country or "").upper():
            return aspsp
    return None


def _account(aspsp, key, iban, other, product, cash_type, currency, opening):
    identification = iban or other
    return {
        "key": key,
        "aspsp": (aspsp, {"Demo Bank": "BE", "Nordic Demo Bank": "FI"}[aspsp]),
        "iban": iban,
        "other": other,
        "product": product,
        "cash_account_type": cash_type,
        "currency": currency,
        "holder": "Demo Company BV" if aspsp == "Demo Bank" else "Demo Company Oy",
        "opening_balance": Decimal(opening),
        "identification_hash": identification_hash(identification),
    }


ACCOUNTS = {
    ("Demo Bank", "BE"): (
        _account("Demo Bank", "be-current", make_iban("BE", belgian_bban("7350123456")),
                 None, "Business Current Account", "CACC", "EUR", "5000.00"),
        _account("Demo Bank", "be-savings", make_iban("BE", belgian_bban("7350765432")),
                 None, "Business Savings Account", "SVGS", "EUR", "20000.00"),
        _account("Demo Bank", "be-usd", make_iban("BE", belgian_bban("7350555666")),
                 None, "US Dollar Account", "CACC", "USD", "1500.00"),
    ),
    ("Nordic Demo Bank", "FI"): (
        _account("Nordic Demo Bank", "fi-current", make_iban("FI", "12345600000785"),
                 None, "Yritystili", "CACC", "EUR", "8000.00"),
        _account("Nordic Demo Bank", "fi-sek", None, "SE-40001234567",
                 "Valuuttatili SEK", "CACC", "SEK", "30000.00"),
    ),
}
CURRENCIES = ("EUR", "USD", "SEK")


def find_account(key):
    """Account spec by IBAN, other identification, identification hash or key; else None."""
    wanted = (key or "").replace(" ", "").upper()
    for accounts in ACCOUNTS.values():
        for spec in accounts:
            candidates = {spec["key"].upper(), spec["identification_hash"].upper(),
                          (spec["iban"] or "").upper(), (spec["other"] or "").upper()}
            if wanted and wanted in candidates:
                return spec
    return None


# --------------------------------------------------------------------------- transactions
CUSTOMERS = (("Brasserie du Parc SRL", "BE"), ("Atelier Verhaegen BV", "BE"),
             ("Van den Berg Logistics BV", "NL"), ("Maison Lefèvre SARL", "FR"),
             ("Oy Pohjola Trading Ab", "FI"))
SUPPLIERS = (("Office Supplies Benelux NV", "BE"), ("Hosting Europa GmbH", "DE"),
             ("Nuage Informatique SAS", "FR"), ("Transport Maes NV", "BE"),
             ("Svensk Papper AB", "SE"))
UTILITIES = (("Engie Electrabel", "electricity"), ("Proximus", "telephone"),
             ("Vivaqua", "water"))
MERCHANTS = (("Delhaize", "5411"), ("Shell", "5541"), ("SNCB/NMBS", "4112"), ("Exki", "5812"),
             ("Fnac", "5732"))
FOREIGN_MERCHANTS = (("Amazon Web Services", "USD", "4816"), ("GitHub", "USD", "5734"),
                     ("Ryanair", "GBP", "3246"))
# (weight, kind)
MIX = ((25, "customer"), (25, "card"), (15, "supplier"), (15, "utility"), (5, "fee"),
       (15, "foreign_card"))
RATES = {("USD", "EUR"): Decimal("0.9200"), ("GBP", "EUR"): Decimal("1.1700"),
         ("EUR", "USD"): Decimal("1.0850"), ("GBP", "USD"): Decimal("1.2700"),
         ("USD", "SEK"): Decimal("10.4000"), ("GBP", "SEK"): Decimal("13.2000"),
         ("EUR", "SEK"): Decimal("11.3000")}


def _choose(roll):
    total = sum(weight for weight, _ in MIX)
    roll %= total
    for weight, kind in MIX:
        if roll < weight:
            return kind
        roll -= weight
    return MIX[-1][1]  # pragma: no cover


def _amount(digest, offset, low, high):
    low_cents, high_cents = int(Decimal(low) * 100), int(Decimal(high) * 100)
    cents = low_cents + _number(digest, offset, high_cents - low_cents + 1)
    return (Decimal(max(cents, 1)) * CENT).quantize(CENT)


@dataclass(frozen=True)
class BankTransaction:
    """One transaction of the bank; ``booked()`` / ``pending()`` give its API representation."""
    account_key: str
    seed: str  # hex, unique per (account, booking day, index)
    transaction_date: date
    booking_date: date
    amount: Decimal  # unsigned
    indicator: str  # CRDT | DBIT
    currency: str
    own_iban: str | None
    counterparty_name: str | None
    counterparty_iban: str | None
    remittance: tuple
    reference_number: str | None
    bank_code: str
    mcc: str | None
    instructed: tuple | None  # (amount, currency) when paid in another currency
    rate: Decimal | None

    @property
    def signed_amount(self):
        return self.amount if self.indicator == "CRDT" else -self.amount

    def stable_entry_reference(self):
        return f"{self.booking_date:%Y%m%d}{self.seed[:12].upper()}"

    def _common(self):
        party = {"name": self.counterparty_name} if self.counterparty_name else None
        party_account = {"iban": self.counterparty_iban} if self.counterparty_iban else None
        own = {"iban": self.own_iban} if self.own_iban else None
        if self.indicator == "DBIT":
            creditor, creditor_account, debtor, debtor_account = party, party_account, None, own
        else:
            creditor, creditor_account, debtor, debtor_account = None, own, party, party_account
        exchange = None
        if self.instructed:
            exchange = {"unit_currency": self.instructed[1], "exchange_rate": str(self.rate),
                        "rate_type": "SPOT", "contract_identification": None,
                        "instructed_amount": {"currency": self.instructed[1],
                                              "amount": str(self.instructed[0])}}
        return {
            "transaction_amount": {"currency": self.currency, "amount": str(self.amount)},
            "credit_debit_indicator": self.indicator,
            "transaction_date": self.transaction_date.isoformat(),
            "creditor": creditor,
            "creditor_account": creditor_account,
            "creditor_agent": None,
            "debtor": debtor,
            "debtor_account": debtor_account,
            "debtor_agent": None,
            "bank_transaction_code": {"description": self.bank_code, "code": None,
                                      "sub_code": None},
            "remittance_information": list(self.remittance),
            "reference_number": self.reference_number,
            "merchant_category_code": self.mcc,
            "balance_after_transaction": None,
            "exchange_rate": exchange,
            "note": None,
        }

    def booked(self, entry_reference):
        return {"entry_reference": entry_reference,
                "transaction_id": "BK" + self.seed[12:30].upper(),
                "status": "BOOK",
                "booking_date": self.booking_date.isoformat(),
                "value_date": self.booking_date.isoformat(),
                **self._common()}

    def pending(self):
        return {"entry_reference": None,
                "transaction_id": "PD" + self.seed[30:48].upper(),
                "status": "PDNG",
                "booking_date": None,
                "value_date": None,
                **self._common()}


def make_transaction(spec, booking_day, index):
    """The ``index``-th transaction of ``spec``'s account booking on ``booking_day``."""
    return _make_transaction(spec["key"], booking_day, index)


@lru_cache(maxsize=100_000)
def _make_transaction(account_key, booking_day, index):
    spec = find_account(account_key)
    digest = _digest("eb-sim", spec["key"], booking_day.isoformat(), index)
    seed = digest.hex()
    made_on = booking_day - timedelta(days=1)
    currency = spec["currency"]
    kind = _choose(_number(digest, 0, 1000))
    pick = _number(digest, 4, 10 ** 6)
    number = 100 + _number(digest, 8, 9900)
    reference = None
    mcc = None
    instructed = rate = None
    if kind == "customer":
        name, country = CUSTOMERS[pick % len(CUSTOMERS)]
        iban = counterparty_iban(name, country)
        indicator, amount = "CRDT", _amount(digest, 20, "100.00", "1400.00")
        remittance = (f"Invoice INV/{made_on.year}/{number:05d}",)
        if _number(digest, 16, 10) < 5:
            reference = make_rf_reference(f"{made_on.year}{number:05d}")
        code = "SEPA CREDIT TRANSFER"
    elif kind == "supplier":
        name, country = SUPPLIERS[pick % len(SUPPLIERS)]
        iban = counterparty_iban(name, country)
        indicator, amount = "DBIT", _amount(digest, 20, "60.00", "1500.00")
        remittance = (f"{name.split()[0]} invoice {made_on.year}-{number:04d}",)
        code = "SEPA CREDIT TRANSFER"
    elif kind == "utility":
        name, service = UTILITIES[pick % len(UTILITIES)]
        iban = counterparty_iban(name, "BE")
        indicator, amount = "DBIT", _amount(digest, 20, "25.00", "320.00")
        remittance = (f"Direct debit {name} {service}", f"contract {number:06d}")
        code = "SEPA DIRECT DEBIT"
    elif kind == "card":
        name, mcc = MERCHANTS[pick % len(MERCHANTS)]
        iban = None
        indicator, amount = "DBIT", _amount(digest, 20, "3.50", "180.00")
        remittance = (f"Card payment {name} {made_on:%d/%m}",)
        code = "CARD PAYMENT"
    elif kind == "foreign_card":
        name, foreign, mcc = FOREIGN_MERCHANTS[pick % len(FOREIGN_MERCHANTS)]
        if foreign == currency:
            foreign = "GBP"
        iban = None
        original = _amount(digest, 20, "5.00", "250.00")
        rate = RATES.get((foreign, currency), Decimal("1.0000"))
        indicator, amount = "DBIT", (original * rate).quantize(CENT)
        amount = max(amount, CENT)
        instructed = (original, foreign)
        remittance = (f"Card payment {name} {original} {foreign}",)
        code = "CARD PAYMENT"
    else:  # fee
        name = iban = None
        indicator, amount = "DBIT", _amount(digest, 20, "2.50", "12.00")
        remittance = ("Account maintenance fee",)
        code = "FEES"
    return BankTransaction(
        account_key=spec["key"], seed=seed, transaction_date=made_on, booking_date=booking_day,
        amount=amount, indicator=indicator, currency=currency, own_iban=spec["iban"],
        counterparty_name=name, counterparty_iban=iban, remittance=remittance,
        reference_number=reference, bank_code=code, mcc=mcc, instructed=instructed, rate=rate)


def transactions_booking_on(spec, booking_day, count):
    return [make_transaction(spec, booking_day, index) for index in range(count)]


def day_total(spec, booking_day, count):
    return sum((txn.signed_amount for txn in transactions_booking_on(spec, booking_day, count)),
               Decimal("0.00"))
