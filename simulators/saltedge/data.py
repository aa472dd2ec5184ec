"""Deterministic data of the Salt Edge simulator: providers, accounts and transactions.

Nothing here is random. Every transaction derives from ``sha256(account key | posting day |
index)``, so the same account, day and index give the same id, amount, description and
counterparty in every process.

Model (the one Salt Edge exposes): a transaction *made on* day ``b - 1`` is first known as a
**pending** record (``status: "pending"``, its own id) and, once the bank posts it on day ``b``, as
a **posted** record with a *new* id (``extra.posting_date`` = ``b``); the pending record is gone by
then. Ids are 16-digit numeric strings that grow with the day the record was created, like Salt
Edge's: ``1450`` + day number (5) + account slot (2) + index (4) + ``0`` pending / ``1`` posted.
"""
import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

CENT = Decimal("0.01")
EPOCH = date(2000, 1, 1)

# --------------------------------------------------------------------------- check digits


def _alnum_to_digits(text):
    return "".join(str(int(char, 36)) for char in text.upper())


def make_iban(country, bban):
    """``country`` + ISO 13616 check digits + ``bban``."""
    check = 98 - int(_alnum_to_digits(bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def is_valid_iban(iban):
    """ISO 13616 mod-97 check (format only)."""
    iban = (iban or "").replace(" ", "").upper()
    if len(iban) < 15 or not iban.isalnum() or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    return int(_alnum_to_digits(iban[4:] + iban[:4])) % 97 == 1


def ogm(ten_digits):
    """Belgian structured communication ``+++ddd/dddd/ddddd+++`` (check = number mod 97)."""
    check = int(ten_digits) % 97 or 97
    digits = f"{ten_digits}{check:02d}"
    return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"


def _digest(*parts):
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def _number(digest, offset, modulo):
    return int.from_bytes(digest[offset:offset + 4], "big") % modulo


def _digits(seed, length):
    text = "".join(hashlib.sha256((seed + suffix).encode()).hexdigest() for suffix in ("", "+"))
    return "".join(str(int(char, 16) % 10) for char in text)[:length]


@lru_cache(maxsize=None)
def counterparty_iban(name, country):
    """A mod-97 valid IBAN for a named counterparty, the same on every call."""
    seed = f"saltedge-sim:counterparty:{name}:{country}"
    if country == "BE":
        ten = _digits(seed, 10)
        bban = f"{ten}{int(ten) % 97 or 97:02d}"
    elif country == "NL":
        bban = "ABNA" + _digits(seed, 10)
    elif country == "FR":
        bban = _digits(seed, 23)
    elif country == "DE":
        bban = _digits(seed, 18)
    else:
        return None
    return make_iban(country, bban)


# --------------------------------------------------------------------------- providers
# Fake ("sandbox") providers live in the pseudo-country XF and are only listed with
# include_sandboxes=true; demobank_be stands for a live PSD2 bank.
PROVIDERS = (
    {"code": "fakebank_simple_xf", "name": "Fake Bank Simple", "country_code": "XF",
     "mode": "web", "regulated": False, "max_consent_days": 90, "max_fetch_interval": 365,
     "interactive": False, "sandbox": True},
    {"code": "fakebank_oauth_client_xf", "name": "Fake Bank with Client Keys (OAuth)",
     "country_code": "XF", "mode": "oauth", "regulated": True, "max_consent_days": 180,
     "max_fetch_interval": 365, "interactive": False, "sandbox": True},
    {"code": "demobank_be", "name": "Demo Bank Belgium", "country_code": "BE", "mode": "oauth",
     "regulated": True, "max_consent_days": 180, "max_fetch_interval": 730,
     "interactive": False, "sandbox": False},
)
PROVIDER_CODES = tuple(p["code"] for p in PROVIDERS)
SUPPORTED_SCOPES = ("accounts", "transactions", "holder_info")
FETCH_SCOPES = ("accounts", "balance", "transactions", "holder_info")


def find_provider(code):
    for provider in PROVIDERS:
        if provider["code"] == code:
            return provider
    return None


# --------------------------------------------------------------------------- accounts
def _account(slot, provider_code, key, name, nature, currency, opening, iban=None,
             account_number=None, swift=None):
    return {"slot": slot, "provider_code": provider_code, "key": key, "name": name,
            "nature": nature, "currency": currency, "opening_balance": Decimal(opening),
            "iban": iban, "account_number": account_number, "swift": swift,
            "client_name": "Demo Company SRL"}


ACCOUNTS = {
    "fakebank_simple_xf": (
        _account(0, "fakebank_simple_xf", "BE71096123456769", "Business Current Account",
                 "checking", "EUR", "3200.00", iban="BE71096123456769", swift="GKCCBEBB"),
        _account(1, "fakebank_simple_xf", "XF-USD-4401-2288", "Dollar Account", "account",
                 "USD", "1500.00", account_number="4401-2288"),
    ),
    "fakebank_oauth_client_xf": (
        _account(2, "fakebank_oauth_client_xf", "BE43068999999501", "OAuth Current Account",
                 "checking", "EUR", "5000.00", iban="BE43068999999501", swift="GKCCBEBB"),
        _account(3, "fakebank_oauth_client_xf", "XF-USD-7710-0042", "OAuth Dollar Account",
                 "account", "USD", "800.00", account_number="7710-0042"),
    ),
    "demobank_be": (
        _account(4, "demobank_be", "BE62510007547061", "Compte à vue", "checking", "EUR",
                 "1200.00", iban="BE62510007547061", swift="DEMOBEBB"),
        _account(5, "demobank_be", "BE-USD-5100-0775", "Compte USD", "account", "USD",
                 "300.00", account_number="5100-0775"),
    ),
}


def find_account(key):
    """Account spec by key, IBAN or account number (spaces ignored); None if unknown."""
    wanted = (key or "").replace(" ", "").upper()
    if not wanted:
        return None
    for accounts in ACCOUNTS.values():
        for spec in accounts:
            if wanted in (spec["key"].upper(), (spec["iban"] or "").upper(),
                          (spec["account_number"] or "").upper()):
                return spec
    return None


# --------------------------------------------------------------------------- transactions
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
CUSTOMERS = (("Brasserie du Parc SRL", "BE"), ("Atelier Verhaegen BV", "BE"),
             ("Dupont & Fils SA", "BE"), ("Van den Berg Logistics BV", "NL"),
             ("Maison Lefèvre SARL", "FR"), ("Garage Peeters NV", "BE"))
SUPPLIERS = (("Office Supplies Benelux NV", "BE"), ("Imprimerie Delcourt SA", "BE"),
             ("Hosting Europa GmbH", "DE"), ("Nuage Informatique SAS", "FR"),
             ("Transport Maes NV", "BE"))
MERCHANTS = (("Delhaize", "5411", "groceries"), ("Colruyt", "5411", "groceries"),
             ("Shell", "5541", "fuel"), ("SNCB/NMBS", "4112", "transport"),
             ("Exki", "5812", "restaurants"), ("Fnac", "5732", "electronics"))
FOREIGN = (("Pret A Manger London", "GBP", Decimal("1.17"), "5812"),
           ("Amazon.com", "USD", Decimal("0.92"), "5942"),
           ("Zürich HB Kiosk", "CHF", Decimal("1.04"), "5994"))
SAAS = (("Amazon Web Services", "5734"), ("GitHub", "5734"), ("Slack", "5734"),
        ("DigitalOcean", "4816"))
US_CLIENTS = ("Northwind Traders Inc.", "Contoso Ltd.", "Fabrikam LLC")
EUR_MIX = ((30, "customer"), (30, "card"), (15, "supplier"), (10, "fee"), (15, "foreign_card"))
USD_MIX = ((30, "wire_in"), (55, "saas"), (15, "wire_fee"))


def _choose(mix, roll):
    roll %= sum(weight for weight, _ in mix)
    for weight, kind in mix:
        if roll < weight:
            return kind
        roll -= weight
    return mix[-1][1]  # pragma: no cover


def _amount(digest, offset, low, high):
    low_cents, high_cents = int(Decimal(low) * 100), int(Decimal(high) * 100)
    cents = low_cents + _number(digest, offset, high_cents - low_cents + 1)
    return (Decimal(max(cents, 1)) * CENT).quantize(CENT)


def day_number(day):
    return (day - EPOCH).days


def make_id(day, slot, index, posted):
    """16-digit id growing with ``day`` (the day the record was created)."""
    return f"1450{day_number(day):05d}{slot:02d}{index:04d}{1 if posted else 0}"


@dataclass(frozen=True)
class BankTransaction:
    posted_id: str
    pending_id: str
    made_on: date
    posting_date: date
    amount: Decimal
    currency: str
    description: str
    category: str
    mode: str
    extra: tuple  # sorted (key, value) pairs shared by the pending and the posted record

    def _record(self, record_id, status, account_id, created):
        extra = dict(self.extra)
        if status == "posted":
            extra["posting_date"] = self.posting_date.isoformat()
        stamp = f"{created.isoformat()}T06:{int(record_id[-6:-1]) % 60:02d}:00Z"
        return {"id": record_id, "account_id": account_id, "made_on": self.made_on.isoformat(),
                "amount": float(self.amount), "currency_code": self.currency,
                "description": self.description, "category": self.category, "mode": self.mode,
                "status": status, "duplicated": False, "extra": extra,
                "created_at": stamp, "updated_at": stamp}

    def as_posted(self, account_id=None):
        return self._record(self.posted_id, "posted", account_id, self.posting_date)

    def as_pending(self, account_id=None):
        return self._record(self.pending_id, "pending", account_id, self.made_on)


def _make(spec, posting_day, index):
    digest = _digest(spec["key"], posting_day.isoformat(), index)
    made_on = posting_day - timedelta(days=1)
    month = f"{MONTHS[made_on.month - 1]} {made_on.year}"
    number = 100 + _number(digest, 8, 9900)
    pick = _number(digest, 4, 10 ** 6)
    currency = spec["currency"]
    if currency == "EUR" and index == 0 and posting_day.day == 1:
        kind = "rent"
    elif currency == "EUR":
        kind = _choose(EUR_MIX, _number(digest, 0, 1000))
    else:
        kind = _choose(USD_MIX, _number(digest, 0, 1000))
    extra = {}
    mode = "normal"
    if kind == "rent":
        amount = Decimal("-1850.00")
        description = f"SEPA credit transfer Immo Louise SA rent {month}"
        category = "rent"
        extra.update(payee="Immo Louise SA",
                     account_number=counterparty_iban("Immo Louise SA", "BE"),
                     additional=ogm(f"{made_on.year % 100:02d}{made_on.month:02d}004242"),
                     end_to_end_id=f"RENT-{made_on.year}-{made_on.month:02d}")
    elif kind == "customer":
        name, country = CUSTOMERS[pick % len(CUSTOMERS)]
        amount = _amount(digest, 20, "80.00", "1800.00")
        description = f"SEPA credit transfer from {name}"
        category = "income"
        reference = (ogm(f"{_number(digest, 12, 10 ** 10):010d}") if _number(digest, 16, 10) < 6
                     else f"Invoice INV/{made_on.year}/{number:05d}")
        extra.update(payer=name, account_number=counterparty_iban(name, country),
                     additional=reference, end_to_end_id=f"E2E{number:06d}{index:02d}")
    elif kind == "supplier":
        name, country = SUPPLIERS[pick % len(SUPPLIERS)]
        amount = -_amount(digest, 20, "60.00", "1500.00")
        description = f"SEPA credit transfer to {name}"
        category = "business_services"
        extra.update(payee=name, account_number=counterparty_iban(name, country),
                     additional=f"Invoice {made_on.year}-{number:04d}",
                     end_to_end_id=f"PAY{made_on.year}{number:05d}")
    elif kind == "card":
        name, mcc, category = MERCHANTS[pick % len(MERCHANTS)]
        amount = -_amount(digest, 20, "3.50", "180.00")
        description = f"Card payment {name} {made_on.strftime('%d/%m')}"
        extra.update(payee=name, mcc=mcc, type="card_transaction")
    elif kind == "foreign_card":
        name, original_currency, rate, mcc = FOREIGN[pick % len(FOREIGN)]
        original = _amount(digest, 20, "4.00", "250.00")
        amount = -(original * rate).quantize(CENT, rounding=ROUND_HALF_EVEN)
        description = f"Card payment {name} {original} {original_currency}"
        category = "shopping"
        extra.update(payee=name, mcc=mcc, type="card_transaction",
                     original_amount=float(-original), original_currency_code=original_currency)
    elif kind == "fee":
        amount = -_amount(digest, 20, "2.50", "12.00")
        description = "Account maintenance fee"
        category = "bank_charges"
        mode = "fee"
    elif kind == "wire_in":
        name = US_CLIENTS[pick % len(US_CLIENTS)]
        amount = _amount(digest, 20, "500.00", "6000.00")
        description = f"Incoming wire {name}"
        category = "income"
        extra.update(payer=name, additional=f"PO {number:05d}")
    elif kind == "saas":
        name, mcc = SAAS[pick % len(SAAS)]
        amount = -_amount(digest, 20, "5.00", "400.00")
        description = f"{name} subscription"
        category = "software"
        extra.update(payee=name, mcc=mcc, type="card_transaction")
    else:  # wire_fee
        amount = -_amount(digest, 20, "15.00", "45.00")
        description = "International wire fee"
        category = "bank_charges"
        mode = "fee"
    return BankTransaction(
        posted_id=make_id(posting_day, spec["slot"], index, True),
        pending_id=make_id(made_on, spec["slot"], index, False),
        made_on=made_on, posting_date=posting_day, amount=amount, currency=currency,
        description=description, category=category, mode=mode,
        extra=tuple(sorted(extra.items())))


@lru_cache(maxsize=65536)
def _cached(key, posting_day, index):
    return _make(find_account(key), posting_day, index)


def transactions_posting_on(spec, posting_day, count):
    """The ``count`` transactions the bank posts on ``posting_day`` for account ``spec``."""
    return [_cached(spec["key"], posting_day, index) for index in range(count)]


def day_total(spec, posting_day, count):
    return sum((txn.amount for txn in transactions_posting_on(spec, posting_day, count)),
               Decimal("0.00"))
