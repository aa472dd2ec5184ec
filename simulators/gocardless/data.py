"""Deterministic data of the GoCardless Bank Account Data simulator.

Nothing here is random: every transaction derives from ``sha256(account key | booking day |
index)``, so the same account, day and index always give the same ids, amount, remittance text
and counterparty, whatever the requisition, the process or the machine.

Model: the transactions booking on day ``b`` were made on ``b - 1``. On ``b - 1`` (the bank's
"today") they are served in ``transactions.pending``, from ``b`` on in ``transactions.booked``.
Card payments carry their ``transactionId`` from the authorization on (pending and booked alike);
other pending entries carry no id at all (as many real banks do). Booked entries carry
``entryReference`` (the bank statement reference), ``transactionId`` and
``internalTransactionId`` (GoCardless' own id).
"""
import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

CENT = Decimal("0.01")


# --------------------------------------------------------------------------- check digits
def _alnum_to_digits(text):
    return "".join(str(int(char, 36)) for char in text.upper())


def make_iban(country, bban):
    """``country`` + ISO 13616 check digits + ``bban``."""
    check = 98 - int(_alnum_to_digits(bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def is_valid_iban(iban):
    """ISO 13616 mod-97 check (format only, not the national rules)."""
    iban = (iban or "").replace(" ", "").upper()
    if len(iban) < 15 or not iban.isalnum() or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    return int(_alnum_to_digits(iban[4:] + iban[:4])) % 97 == 1


def belgian_structured_reference(ten_digits):
    """Belgian structured communication (OGM): ``+++123/4567/89002+++``."""
    check = int(ten_digits) % 97 or 97
    digits = f"{ten_digits}{check:02d}"
    return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"


def creditor_reference(body):
    """ISO 11649 creditor reference ``RFkk<body>``."""
    check = 98 - int(_alnum_to_digits(body + "RF00")) % 97
    return f"RF{check:02d}{body}"


def _digest(*parts):
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def _number(digest, offset, modulo):
    return int.from_bytes(digest[offset:offset + 4], "big") % modulo


def _digits(seed, length):
    text = hashlib.sha256(seed.encode()).hexdigest() * 2
    return "".join(str(int(char, 16) % 10) for char in text)[:length]


@lru_cache(maxsize=None)
def counterparty_iban(name, country):
    """A mod-97 valid IBAN for a named counterparty, the same on every call."""
    seed = f"gocardless-sim:counterparty:{name}:{country}"
    if country == "BE":
        bban = _be_bban(_digits(seed, 10))
    elif country == "NL":
        bban = ("ABNA", "INGB", "RABO")[int(_digits(seed, 1)) % 3] + _digits(seed + ":n", 10)
    elif country == "DE":
        bban = _digits(seed, 18)
    elif country == "FR":
        bban = _digits(seed, 23)
    elif country == "GB":
        bban = ("BARC", "LOYD", "NWBK")[int(_digits(seed, 1)) % 3] + _digits(seed + ":n", 14)
    else:
        return None
    return make_iban(country, bban)


def uuid_from(*parts):
    """A UUID-shaped id (version 4 layout) derived from ``parts``."""
    text = hashlib.sha256("|".join(str(part) for part in parts).encode()).hexdigest()
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:32]}"


# --------------------------------------------------------------------------- institutions
EEA = ["AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IS", "IE",
       "IT", "LV", "LI", "LT", "LU", "MT", "NL", "NO", "PL", "PT", "RO", "SK", "SI", "ES", "SE"]

# As served by GET /institutions/ (numbers of days are strings, as in the real API).
INSTITUTIONS = (
    {
        "id": "SANDBOXFINANCE_SFIN0000",
        "name": "Sandbox Finance",
        "bic": "SFIN0000",
        "transaction_total_days": "90",
        "max_access_valid_for_days": "90",
        "countries": EEA + ["GB"],
        "supported_payments": {},
        "supported_features": [],
        "identification_codes": [],
    },
    {
        "id": "SIMBANK_SIMBBEBB",
        "name": "Simulated Bank Belgium",
        "bic": "SIMBBEBB",
        "transaction_total_days": "730",
        "max_access_valid_for_days": "180",
        "countries": ["BE"],
        "supported_payments": {},
        "supported_features": ["account_selection", "business_accounts"],
        "identification_codes": [],
    },
)
INSTITUTION_IDS = tuple(institution["id"] for institution in INSTITUTIONS)


def find_institution(institution_id):
    for institution in INSTITUTIONS:
        if institution["id"] == institution_id:
            return institution
    return None


# --------------------------------------------------------------------------- accounts
def _be_bban(ten_digits):
    """Belgian BBAN: 10 digits + their mod-97 check (97 instead of 0)."""
    return f"{ten_digits}{int(ten_digits) % 97 or 97:02d}"


def _account(key, country, bban, currency, name, product, cash_account_type, opening, activity):
    iban = make_iban(country, bban)
    return {
        "key": key,
        "iban": iban,
        "bban": bban if country == "GB" else None,
        "currency": currency,
        "owner_name": "Simulated Demo Company",
        "name": name,
        "product": product,
        "cash_account_type": cash_account_type,
        "opening_balance": Decimal(opening),
        "activity": activity,  # "current": txns_per_day of its currency; "savings": a third
    }


ACCOUNTS = {
    "SANDBOXFINANCE_SFIN0000": (
        _account("sfin-main", "BE", _be_bban("0682456789"),
                 "EUR", "Main Account", "Business Current Account", "CACC", "4200.00", "current"),
        _account("sfin-savings", "BE", _be_bban("0639876543"),
                 "EUR", "Savings Account", "Business Savings", "SVGS", "15000.00", "savings"),
        _account("sfin-gbp", "GB", "SIMB20000012345678", "GBP", "Pound Account",
                 "Foreign Currency Account", "CACC", "1800.00", "current"),
    ),
    "SIMBANK_SIMBBEBB": (
        _account("simb-main", "BE", _be_bban("0017654321"),
                 "EUR", "Compte courant", "Compte Business", "CACC", "2500.00", "current"),
    ),
}


def find_account(key):
    """Account spec by key or IBAN (spaces ignored, any case); None if unknown."""
    wanted = (key or "").replace(" ", "").upper()
    for accounts in ACCOUNTS.values():
        for spec in accounts:
            if wanted and wanted in (spec["key"].upper(), spec["iban"].upper()):
                return spec
    return None


def daily_count(spec, txns_per_day):
    """How many transactions book on each day for ``spec`` under ``txns_per_day``."""
    count = txns_per_day.get(spec["currency"], 0)
    if spec["activity"] == "savings":
        return (count + 2) // 3
    return count


# --------------------------------------------------------------------------- transactions
CUSTOMERS = (("Brasserie du Parc SRL", "BE"), ("Atelier Verhaegen BV", "BE"),
             ("Dupont & Fils SA", "BE"), ("Van den Berg Logistics BV", "NL"),
             ("Maison Lefèvre SARL", "FR"))
SUPPLIERS = (("Office Supplies Benelux NV", "BE"), ("Hosting Europa GmbH", "DE"),
             ("Transport Maes NV", "BE"), ("Nuage Informatique SAS", "FR"))
DEBITS = (("Proximus", "telephone"), ("Engie Electrabel", "electricity"), ("Vivaqua", "water"))
MERCHANTS = (("Delhaize", "5411"), ("Shell", "5541"), ("SNCB/NMBS", "4112"), ("Fnac", "5732"),
             ("Exki", "5812"))
FOREIGN_MERCHANTS = (("Amazon US", "USD", "5942"), ("Apple App Store", "USD", "5818"),
                     ("Hotel Zürich", "CHF", "7011"))
UK_CLIENTS = (("Northwind Traders Ltd", "GB"), ("Contoso UK Ltd", "GB"))
UK_SUPPLIERS = (("Thames Water", "GB"), ("Octopus Energy", "GB"), ("Tesco Stores", "GB"))

EUR_MIX = ((30, "customer"), (30, "card"), (15, "supplier"), (10, "direct_debit"),
           (5, "fee"), (10, "foreign_card"))
GBP_MIX = ((40, "uk_in"), (35, "uk_out"), (25, "card"))
SAVINGS_MIX = ((60, "transfer_in"), (30, "transfer_out"), (10, "interest"))
# Exchange rates as served: units of targetCurrency per 1 unit of sourceCurrency
# (unitCurrency = sourceCurrency).
RATES = {("USD", "EUR"): Decimal("0.9210"), ("CHF", "EUR"): Decimal("1.0430")}


def _choose(mix, roll):
    total = sum(weight for weight, _ in mix)
    roll %= total
    for weight, kind in mix:
        if roll < weight:
            return kind
        roll -= weight
    return mix[-1][1]  # pragma: no cover


def _amount(digest, offset, low, high):
    low_cents, high_cents = int(Decimal(low) * 100), int(Decimal(high) * 100)
    cents = low_cents + _number(digest, offset, high_cents - low_cents + 1)
    return (Decimal(max(cents, 1)) * CENT).quantize(CENT)


def money(amount):
    return str(Decimal(amount).quantize(CENT))


@dataclass(frozen=True)
class BankTransaction:
    """One transaction of one account; ``as_booked`` / ``as_pending`` give the API dicts."""
    key: str
    booking_date: date
    index: int
    made_on: date
    amount: Decimal
    currency: str
    remittance: str
    counterparty_name: str | None
    counterparty_iban: str | None
    counterparty_bic: str | None
    structured: str | None
    end_to_end_id: str | None
    mandate_id: str | None
    creditor_id: str | None
    bank_code: str
    proprietary_code: str
    mcc: str | None
    exchange: tuple | None  # (source currency, source amount, rate)
    card: bool
    digits: str

    @property
    def entry_reference(self):
        return f"{self.booking_date:%Y%m%d}{self.digits}"

    @property
    def transaction_id(self):
        # A card payment keeps the id of its authorization (made the day before booking).
        day = self.made_on if self.card else self.booking_date
        return f"{day:%Y%m%d}{self.digits}-1"

    @property
    def internal_id(self):
        return hashlib.sha256(
            f"gc-internal|{self.key}|{self.booking_date}|{self.index}".encode()).hexdigest()[:32]

    def _common(self):
        item = {"transactionAmount": {"amount": money(self.amount), "currency": self.currency},
                "remittanceInformationUnstructured": self.remittance}
        side = "debtor" if self.amount > 0 else "creditor"
        if self.counterparty_name:
            item[f"{side}Name"] = self.counterparty_name
        if self.counterparty_iban:
            item[f"{side}Account"] = {"iban": self.counterparty_iban}
        if self.counterparty_bic:
            item[f"{side}Agent"] = self.counterparty_bic
        if self.mcc:
            item["merchantCategoryCode"] = self.mcc
        if self.exchange:
            source_currency, source_amount, rate = self.exchange
            item["currencyExchange"] = [{
                "sourceCurrency": source_currency, "exchangeRate": str(rate),
                "unitCurrency": source_currency, "targetCurrency": self.currency,
                "quotationDate": self.made_on.isoformat(),
                "instructedAmount": {"amount": money(source_amount),
                                     "currency": source_currency}}]
        return item

    def as_booked(self, balance_after=None):
        item = {"transactionId": self.transaction_id,
                "entryReference": self.entry_reference,
                "internalTransactionId": self.internal_id,
                "bookingDate": self.booking_date.isoformat(),
                "valueDate": self.booking_date.isoformat(),
                # The bank's local time (Brussels/London): never meant to be read via UTC.
                "bookingDateTime": f"{self.booking_date.isoformat()}T00:{self.index % 60:02d}:00"
                                   f"+{'00' if self.currency == 'GBP' else '01'}:00",
                **self._common(),
                "bankTransactionCode": self.bank_code,
                "proprietaryBankTransactionCode": self.proprietary_code}
        if self.structured:
            item["remittanceInformationStructured"] = self.structured
        if self.end_to_end_id:
            item["endToEndId"] = self.end_to_end_id
        if self.mandate_id:
            item["mandateId"] = self.mandate_id
            item["creditorId"] = self.creditor_id
        if balance_after is not None:
            item["balanceAfterTransaction"] = {
                "balanceAmount": {"amount": money(balance_after), "currency": self.currency},
                "balanceType": "interimBooked"}
        return item

    def as_pending(self):
        item = {"valueDate": self.made_on.isoformat(), **self._common()}
        if self.card:
            item["transactionId"] = self.transaction_id
        return item


def _make(spec, booking_day, index):
    key, currency = spec["key"], spec["currency"]
    digest = _digest(key, booking_day.isoformat(), index)
    made_on = booking_day - timedelta(days=1)
    number = 100 + _number(digest, 8, 9900)
    pick = _number(digest, 4, 10 ** 6)
    digits = f"{_number(digest, 24, 10 ** 8):08d}"
    name = iban = bic = structured = e2e = mandate = creditor_id = mcc = exchange = None
    card = False
    if spec["activity"] == "savings":
        kind = _choose(SAVINGS_MIX, _number(digest, 0, 1000))
    elif currency == "GBP":
        kind = _choose(GBP_MIX, _number(digest, 0, 1000))
    elif index == 0 and booking_day.day == 1:
        kind = "rent"
    else:
        kind = _choose(EUR_MIX, _number(digest, 0, 1000))

    if kind == "rent":
        name, iban = "Immo Louise SA", counterparty_iban("Immo Louise SA", "BE")
        amount = Decimal("-1850.00")
        remittance = f"Rent office {made_on:%m/%Y}"
        structured = belgian_structured_reference(f"{made_on:%y%m}004242")
        code, proprietary = "PMNT-ICDT-STDO", "STDO"
    elif kind == "customer":
        name, country = CUSTOMERS[pick % len(CUSTOMERS)]
        iban = counterparty_iban(name, country)
        amount = _amount(digest, 20, "80.00", "1800.00")
        remittance = f"Payment invoice INV/{made_on.year}/{number:05d}"
        if _number(digest, 16, 10) < 5:
            structured = belgian_structured_reference(f"{_number(digest, 12, 10 ** 10):010d}")
        e2e = f"E2E{digits}{index}"
        code, proprietary = "PMNT-RCDT-ESCT", "CRDT"
    elif kind == "supplier":
        name, country = SUPPLIERS[pick % len(SUPPLIERS)]
        iban = counterparty_iban(name, country)
        amount = -_amount(digest, 20, "60.00", "1500.00")
        remittance = f"SEPA transfer {name} invoice {made_on.year}-{number:04d}"
        structured = creditor_reference(f"{made_on.year}{number:04d}")
        e2e = f"E2E{digits}{index}"
        code, proprietary = "PMNT-ICDT-ESCT", "ACCP"
    elif kind == "direct_debit":
        name, service = DEBITS[pick % len(DEBITS)]
        iban = counterparty_iban(name, "BE")
        amount = -_amount(digest, 20, "25.00", "320.00")
        remittance = f"Direct debit {name} {service} contract {number:06d}"
        mandate = f"MD-{number:06d}"
        creditor_id = f"BE{_number(digest, 12, 100):02d}ZZZ0{_digits(name, 9)}"
        code, proprietary = "PMNT-IDDT-ESDD", "DDBT"
    elif kind in ("card", "foreign_card") and currency == "EUR":
        card = True
        if kind == "card":
            name, mcc = MERCHANTS[pick % len(MERCHANTS)]
            amount = -_amount(digest, 20, "3.50", "180.00")
        else:
            name, source_currency, mcc = FOREIGN_MERCHANTS[pick % len(FOREIGN_MERCHANTS)]
            source_amount = _amount(digest, 20, "5.00", "250.00")
            rate = RATES[(source_currency, currency)]
            amount = -(source_amount * rate).quantize(CENT)
            exchange = (source_currency, -source_amount, rate)
        remittance = f"CARD PAYMENT {name} {made_on:%d/%m} 4871 **** {pick % 10000:04d}"
        code, proprietary = "PMNT-CCRD-POSD", "CARD"
    elif kind == "card":  # GBP card
        card = True
        name, mcc = UK_SUPPLIERS[pick % len(UK_SUPPLIERS)][0], "5411"
        amount = -_amount(digest, 20, "2.00", "90.00")
        remittance = f"CARD PAYMENT {name} {made_on:%d/%m}"
        code, proprietary = "PMNT-CCRD-POSD", "CARD"
    elif kind == "fee":
        name = None
        amount = -_amount(digest, 20, "2.50", "12.00")
        remittance = ("Monthly account fee", "SEPA instant fee", "Card annual fee")[pick % 3]
        code, proprietary = "ACMT-MDOP-CHRG", "FEES"
    elif kind == "uk_in":
        name, country = UK_CLIENTS[pick % len(UK_CLIENTS)]
        iban = counterparty_iban(name, country)
        amount = _amount(digest, 20, "100.00", "2400.00")
        remittance = f"FASTER PAYMENT {name} INV-{number:04d}"
        code, proprietary = "PMNT-RCDT-DMCT", "FPI"
    elif kind == "uk_out":
        name, country = UK_SUPPLIERS[pick % len(UK_SUPPLIERS)]
        iban = counterparty_iban(name, country)
        amount = -_amount(digest, 20, "20.00", "600.00")
        remittance = f"FASTER PAYMENT {name} ref {number:05d}"
        code, proprietary = "PMNT-ICDT-DMCT", "FPO"
    elif kind == "transfer_in":
        name = "Simulated Demo Company"
        amount = _amount(digest, 20, "100.00", "2000.00")
        remittance = "Transfer from current account"
        code, proprietary = "PMNT-RCDT-BOOK", "TRIN"
    elif kind == "transfer_out":
        name = "Simulated Demo Company"
        amount = -_amount(digest, 20, "100.00", "1500.00")
        remittance = "Transfer to current account"
        code, proprietary = "PMNT-ICDT-BOOK", "TROUT"
    else:  # interest
        amount = _amount(digest, 20, "0.05", "9.99")
        remittance = f"Interest {made_on:%m/%Y}"
        code, proprietary = "ACMT-MCOP-INTR", "INT"

    return BankTransaction(
        key=key, booking_date=booking_day, index=index, made_on=made_on, amount=amount,
        currency=currency, remittance=remittance, counterparty_name=name, counterparty_iban=iban,
        counterparty_bic=bic, structured=structured, end_to_end_id=e2e, mandate_id=mandate,
        creditor_id=creditor_id, bank_code=code, proprietary_code=proprietary, mcc=mcc,
        exchange=exchange, card=card, digits=digits)


@lru_cache(maxsize=50000)
def transactions_booking_on(key, booking_day, count):
    """The ``count`` transactions of account ``key`` that book on ``booking_day``."""
    spec = find_account(key)
    return tuple(_make(spec, booking_day, index) for index in range(count))


@lru_cache(maxsize=50000)
def day_total(key, booking_day, count):
    return sum((txn.amount for txn in transactions_booking_on(key, booking_day, count)),
               Decimal("0.00"))
