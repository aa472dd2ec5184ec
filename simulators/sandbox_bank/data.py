"""Deterministic data of the Sandbox Bank: institutions, accounts and transactions.

Nothing here is random: every transaction derives from ``sha256(stable_id | booking day | index)``,
so the same account, day and index always give the same id, amount, description and counterparty,
whatever the consent, the process or the machine.

Model: the transactions of booking day ``b`` were made on ``b - 1`` (``transaction_date``) and
book on ``b`` (``booking_date`` = ``value_date`` = ``b``). Until the bank's "today" reaches ``b``
they are pending, with ids ``pdg_…``; from ``b`` on they are booked with ids ``txn_…`` and carry the
pending id in ``pending_id``.
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


def iban_check_digits(country, bban):
    """The two ISO 13616 check digits of ``country`` + ``bban``."""
    number = int(_alnum_to_digits(bban + country + "00"))
    return "%02d" % (98 - number % 97)


def make_iban(country, bban):
    return f"{country}{iban_check_digits(country, bban)}{bban}"


def is_valid_iban(iban):
    """ISO 13616 mod-97 check (format only, not the national rules)."""
    iban = (iban or "").replace(" ", "").upper()
    if len(iban) < 15 or not iban.isalnum() or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    return int(_alnum_to_digits(iban[4:] + iban[:4])) % 97 == 1


def _belgian_bban(ten_digits):
    check = int(ten_digits) % 97 or 97
    return f"{ten_digits}{check:02d}"


def structured_communication(ten_digits):
    """Belgian structured communication (OGM/VCS): ``+++123/4567/89002+++``."""
    check = int(ten_digits) % 97 or 97
    digits = f"{ten_digits}{check:02d}"
    return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"


def is_valid_structured_communication(reference):
    if not reference or not (reference.startswith("+++") and reference.endswith("+++")):
        return False
    digits = reference[3:-3].replace("/", "")
    if len(digits) != 12 or not digits.isdigit():
        return False
    return (int(digits[:10]) % 97 or 97) == int(digits[10:])


def _digest(*parts):
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def _number(digest, offset, modulo):
    """A number in ``range(modulo)`` read from 4 bytes of ``digest`` at ``offset``."""
    return int.from_bytes(digest[offset:offset + 4], "big") % modulo


def _digits(seed, length):
    text = hashlib.sha256(seed.encode()).hexdigest()
    return "".join(str(int(char, 16) % 10) for char in text)[:length]


@lru_cache(maxsize=None)
def counterparty_iban(name, country):
    """A valid-looking (mod-97 correct) IBAN for a named counterparty, the same on every call."""
    seed = f"sandbox-bank:counterparty:{name}:{country}"
    if country == "BE":
        bban = _belgian_bban(_digits(seed, 10))
    elif country == "NL":
        banks = ("ABNA", "INGB", "RABO", "TRIO")
        bban = banks[int(_digits(seed, 1)) % len(banks)] + _digits(seed + ":n", 10)
    elif country == "FR":
        bban = _digits(seed, 23)
    elif country == "DE":
        bban = _digits(seed, 18)
    elif country == "LU":
        bban = _digits(seed, 16)
    else:
        return None
    return make_iban(country, bban)


def stable_account_id(account_number):
    """Identifier of an account that survives re-consents (like Enable Banking's hash)."""
    return hashlib.sha256(f"sandbox-bank:account:{account_number}".encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- institutions

COUNTRIES = ["BE", "NL", "FR", "LU", "DE", "VN", "US", "GB"]

INSTITUTIONS = (
    {
        "id": "SANDBOX_BANK",
        "name": "Sandbox Bank",
        "bic": "SNDBBEB1",
        "countries": COUNTRIES,
        "max_history_days": 90,
        "max_consent_days": 90,
        "beta": False,
        "requires_user_presence": False,
    },
    {
        "id": "SANDBOX_BANK_MFA",
        "name": "Sandbox Bank (MFA)",
        "bic": "SNDBBEB2",
        "countries": COUNTRIES,
        "max_history_days": 90,
        "max_consent_days": 90,
        "beta": True,
        "requires_user_presence": True,
    },
)
INSTITUTION_IDS = tuple(inst["id"] for inst in INSTITUTIONS)


def _account(iban, account_number, masked, name, currency, opening):
    return {
        "iban": iban,
        "account_number": account_number,
        "masked_number": masked,
        "name": name,
        "holder_name": "Sandbox Demo Company",
        "currency": currency,
        "type": "checking",
        "opening_balance": Decimal(opening),
        "stable_id": stable_account_id(account_number),
    }


# The accounts a consent shares, per institution (the same for every consent).
ACCOUNTS = {
    "SANDBOX_BANK": (
        _account("BE14063123456783", "BE14 0631 2345 6783", "BE14 **** 6783",
                 "Sandbox Current Account", "EUR", "2500.00"),
        _account(None, "4000-1234-5678", "****5678", "Sandbox Dollar Account", "USD", "1000.00"),
    ),
    "SANDBOX_BANK_MFA": (
        _account("BE68068998877634", "BE68 0689 9887 7634", "BE68 **** 7634",
                 "Sandbox MFA Current Account", "EUR", "2500.00"),
        _account(None, "4000-8765-4321", "****4321", "Sandbox MFA Dollar Account", "USD",
                 "1000.00"),
    ),
}


def find_account(key):
    """Account spec by stable id, IBAN or account number (spaces ignored); None if unknown."""
    wanted = (key or "").replace(" ", "").upper()
    for accounts in ACCOUNTS.values():
        for spec in accounts:
            candidates = (spec["stable_id"].upper(), (spec["iban"] or "").upper(),
                          spec["account_number"].replace(" ", "").upper())
            if wanted and wanted in candidates:
                return spec
    return None


# --------------------------------------------------------------------------- transactions

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

CUSTOMERS = (
    ("Brasserie du Parc SRL", "BE"), ("Atelier Verhaegen BV", "BE"), ("Dupont & Fils SA", "BE"),
    ("Bakkerij Janssens BV", "BE"), ("Studio Lumière SRL", "BE"), ("Garage Peeters NV", "BE"),
    ("Van den Berg Logistics BV", "NL"), ("Maison Lefèvre SARL", "FR"),
)
SUPPLIERS = (
    ("Office Supplies Benelux NV", "BE"), ("Imprimerie Delcourt SA", "BE"),
    ("Cleanpro Services BV", "BE"), ("Transport Maes NV", "BE"), ("Hosting Europa GmbH", "DE"),
    ("Nuage Informatique SAS", "FR"), ("Kaffeerösterei Schmidt GmbH", "DE"),
)
UTILITIES = (
    ("Engie Electrabel", "electricity"), ("Proximus", "telephone"), ("Telenet", "internet"),
    ("Vivaqua", "water"), ("Luminus", "gas"),
)
MERCHANTS = (
    ("Delhaize", "Bruxelles"), ("Colruyt", "Leuven"), ("Carrefour Express", "Namur"),
    ("Shell", "Gent"), ("Q8", "Liège"), ("SNCB/NMBS", "Bruxelles-Central"), ("Exki", "Antwerpen"),
    ("Fnac", "Bruxelles"), ("Amazon EU SARL", "Luxembourg"), ("Bol.com", "Utrecht"),
    ("Deutsche Bahn", "Berlin"), ("Hema", "Mechelen"),
)
FEES = ("Monthly account fee", "SEPA instant transfer fee", "Card annual fee",
        "Foreign card payment fee")
US_CLIENTS = ("Northwind Traders Inc.", "Contoso Ltd.", "Fabrikam LLC", "Tailspin Toys Corp.")
SAAS = (("Amazon Web Services", "Seattle WA"), ("GitHub", "San Francisco CA"),
        ("Google Cloud", "Mountain View CA"), ("Slack", "San Francisco CA"),
        ("Atlassian", "Sydney AU"), ("DigitalOcean", "New York NY"))

# (weight, kind) of the transactions that are not the monthly rent / salary.
EUR_MIX = ((30, "customer"), (30, "card"), (15, "supplier"), (10, "utility"), (5, "fee"),
           (5, "refund"), (5, "foreign_card"))
USD_MIX = ((25, "wire_in"), (60, "saas"), (15, "wire_fee"))


def _choose(mix, roll):
    total = sum(weight for weight, _ in mix)
    roll %= total
    for weight, kind in mix:
        if roll < weight:
            return kind
        roll -= weight
    return mix[-1][1]  # pragma: no cover


def _amount(digest, offset, low, high):
    """Decimal between ``low`` and ``high`` (in units, inclusive), never zero."""
    low_cents, high_cents = int(Decimal(low) * 100), int(Decimal(high) * 100)
    cents = low_cents + _number(digest, offset, high_cents - low_cents + 1)
    return (Decimal(max(cents, 1)) * CENT).quantize(CENT)


@dataclass(frozen=True)
class BankTransaction:
    booked_id: str
    pending_id: str
    transaction_date: date
    booking_date: date
    amount: Decimal
    currency: str
    description: str
    counterparty_name: str | None
    counterparty_iban: str | None
    reference: str | None

    def _common(self):
        return {
            "transaction_date": self.transaction_date.isoformat(),
            "amount": str(self.amount),
            "currency": self.currency,
            "description": self.description,
            "counterparty": {"name": self.counterparty_name, "iban": self.counterparty_iban},
            "reference": self.reference,
        }

    def as_booked(self):
        """The API representation once booked."""
        return {"id": self.booked_id, "status": "booked",
                "booking_date": self.booking_date.isoformat(),
                "value_date": self.booking_date.isoformat(),
                **self._common(), "pending_id": self.pending_id}

    def as_pending(self):
        """The API representation while pending."""
        return {"id": self.pending_id, "status": "pending", "booking_date": None,
                "value_date": None, **self._common(), "pending_id": None}


def _make(stable_id, currency, booking_day, index):
    digest = _digest(stable_id, booking_day.isoformat(), index)
    made_on = booking_day - timedelta(days=1)
    month = f"{MONTHS[made_on.month - 1]} {made_on.year}"
    number = 100 + _number(digest, 8, 9900)
    ogm = structured_communication(f"{_number(digest, 12, 10 ** 10):010d}")
    ogm = ogm if _number(digest, 16, 10) < 6 else None
    name = iban = None
    if currency == "EUR" and index == 0 and booking_day.day == 1:
        kind = "rent"
    elif currency == "EUR" and index == 0 and booking_day.day == 25:
        kind = "salary"
    elif currency == "EUR":
        kind = _choose(EUR_MIX, _number(digest, 0, 1000))
    else:
        kind = _choose(USD_MIX, _number(digest, 0, 1000))
    pick = _number(digest, 4, 10 ** 6)

    if kind == "rent":
        name, iban = "Immo Louise SA", counterparty_iban("Immo Louise SA", "BE")
        amount = Decimal("-1850.00")
        description = f"Rent office Rue de la Loi 42 - {month}"
        ogm = structured_communication(f"{made_on.year % 100:02d}{made_on.month:02d}004242")
    elif kind == "salary":
        name, iban = "Payroll Services Belgium NV", counterparty_iban("Payroll Services Belgium NV", "BE")
        amount = _amount(digest, 20, "2600.00", "3100.00")
        description = f"Salary {month}"
        ogm = None
    elif kind == "customer":
        name, country = CUSTOMERS[pick % len(CUSTOMERS)]
        iban = counterparty_iban(name, country)
        amount = _amount(digest, 20, "80.00", "1800.00")
        description = f"Payment invoice INV/{made_on.year}/{number:05d}"
    elif kind == "supplier":
        name, country = SUPPLIERS[pick % len(SUPPLIERS)]
        iban = counterparty_iban(name, country)
        amount = -_amount(digest, 20, "60.00", "1500.00")
        description = f"{name.split()[0]} invoice {made_on.year}-{number:04d}"
        if country != "BE":
            ogm = None
            description = f"SEPA transfer to {name} - invoice {made_on.year}-{number:04d}"
    elif kind == "utility":
        name, service = UTILITIES[pick % len(UTILITIES)]
        iban = counterparty_iban(name, "BE")
        amount = -_amount(digest, 20, "25.00", "320.00")
        description = f"Direct debit {name} {service} {month} contract {number:06d}"
    elif kind in ("card", "foreign_card"):
        merchants = MERCHANTS[:8] if kind == "card" else MERCHANTS[8:]
        name, city = merchants[pick % len(merchants)]
        amount = -_amount(digest, 20, "3.50", "180.00")
        description = (f"Card payment {name} {city} {made_on.strftime('%d/%m')} "
                       f"card 4871 **** {pick % 10000:04d}")
        ogm = None
    elif kind == "fee":
        name = "Sandbox Bank"
        amount = -_amount(digest, 20, "2.50", "12.00")
        description = FEES[pick % len(FEES)]
        ogm = None
    elif kind == "refund":
        name, _city = MERCHANTS[pick % len(MERCHANTS)]
        amount = _amount(digest, 20, "5.00", "120.00")
        description = f"Refund {name} order {number:05d}"
        ogm = None
    elif kind == "wire_in":
        name = US_CLIENTS[pick % len(US_CLIENTS)]
        amount = _amount(digest, 20, "200.00", "2500.00")
        description = f"Incoming wire {name} INV-{made_on.year}-{number:04d}"
        ogm = None
    elif kind == "saas":
        name, city = SAAS[pick % len(SAAS)]
        amount = -_amount(digest, 20, "5.00", "600.00")
        description = f"Card payment {name} {city} {made_on.strftime('%m/%d')}"
        ogm = None
    else:  # wire_fee
        name = "Sandbox Bank"
        amount = Decimal("-15.00") if pick % 2 else Decimal("-25.00")
        description = "Incoming wire fee"
        ogm = None

    return BankTransaction(
        booked_id="txn_" + hashlib.sha256(b"booked|" + digest).hexdigest()[:24],
        pending_id="pdg_" + hashlib.sha256(b"pending|" + digest).hexdigest()[:24],
        transaction_date=made_on,
        booking_date=booking_day,
        amount=amount,
        currency=currency,
        description=description,
        counterparty_name=name,
        counterparty_iban=iban,
        reference=ogm,
    )


@lru_cache(maxsize=50000)
def transactions_booking_on(stable_id, currency, booking_day, count):
    """The ``count`` transactions of an account that book on ``booking_day``, ordered by index."""
    return tuple(_make(stable_id, currency, booking_day, index) for index in range(count))


@lru_cache(maxsize=50000)
def day_total(stable_id, currency, booking_day, count):
    return sum((txn.amount for txn in transactions_booking_on(stable_id, currency, booking_day,
                                                              count)), Decimal("0.00"))
