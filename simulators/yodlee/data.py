"""Deterministic data of the Yodlee simulator: providers (institutions), bank accounts and their
transactions.

Nothing here is random: a transaction derives from ``sha256(account seed | booking day | index)``,
so the same account, day and index give the same ids, amount and texts on every run.

Model (like most banks Yodlee aggregates): a transaction made on day ``d`` (``transactionDate``)
posts on ``d + 1`` (``postDate``). While the bank's today is ``d`` it is served ``PENDING`` with
its pending id; from ``d + 1`` on it is ``POSTED`` under a *different* id (Yodlee deletes the
pending transaction and creates a posted one; nothing links the two).
"""
import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

CENT = Decimal("0.01")


# --------------------------------------------------------------------------- check digits
def _to_digits(text):
    return "".join(str(int(char, 36)) for char in text.upper())


def make_iban(country, bban):
    """``country`` + ISO 13616 check digits + ``bban``."""
    check = 98 - int(_to_digits(bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def is_valid_iban(value):
    value = (value or "").replace(" ", "").upper()
    if len(value) < 15 or not value.isalnum() or not value[:2].isalpha() \
            or not value[2:4].isdigit():
        return False
    return int(_to_digits(value[4:] + value[:4])) % 97 == 1


def belgian_ogm(ten_digits):
    """Belgian structured communication ``+++123/4567/89002+++`` (check: number mod 97)."""
    check = int(ten_digits) % 97 or 97
    digits = f"{ten_digits}{check:02d}"
    return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"


def rf_reference(body):
    """ISO 11649 creditor reference ``RFxx<body>``."""
    check = 98 - int(_to_digits(body + "RF00")) % 97
    return f"RF{check:02d}{body}"


def _hash(*parts):
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def _pick(digest, offset, modulo):
    return int.from_bytes(digest[offset:offset + 4], "big") % modulo


def _digits(seed, length):
    hexa = hashlib.sha256(seed.encode()).hexdigest() * 2
    return "".join(str(int(char, 16) % 10) for char in hexa)[:length]


def _belgian_bban(seed):
    ten = _digits(seed, 10)
    return f"{ten}{int(ten) % 97 or 97:02d}"


# --------------------------------------------------------------------------- providers
# The institutions of ``GET /providers`` (Yodlee calls them providers). Ids are invented.
PROVIDERS = (
    {"id": 20001, "name": "Yodlee Sim Bank Belgium", "countryISOCode": "BE",
     "baseUrl": "https://www.simbank.example.be", "consent_days": 180, "status": "Supported"},
    {"id": 20002, "name": "Yodlee Sim Bank Nederland", "countryISOCode": "NL",
     "baseUrl": "https://www.simbank.example.nl", "consent_days": 90, "status": "Supported"},
    {"id": 20003, "name": "Yodlee Sim Bank UK", "countryISOCode": "GB",
     "baseUrl": "https://www.simbank.example.co.uk", "consent_days": 90, "status": "Beta"},
    {"id": 20004, "name": "Yodlee Sim Sparkasse", "countryISOCode": "DE",
     "baseUrl": "https://www.simbank.example.de", "consent_days": 180, "status": "Supported"},
    {"id": 20005, "name": "Yodlee Sim Banque France", "countryISOCode": "FR",
     "baseUrl": "https://www.simbank.example.fr", "consent_days": 180, "status": "Supported"},
)
PROVIDER_IDS = tuple(provider["id"] for provider in PROVIDERS)


def find_provider(provider_id):
    for provider in PROVIDERS:
        if str(provider["id"]) == str(provider_id):
            return provider
    return None


def _spec(provider_id, key, name, currency, kind, opening, iban=None, number=None):
    number = number or iban
    return {
        "provider_id": provider_id,
        "seed": f"yodlee-sim:{key}",
        "name": name,
        "currency": currency,
        "kind": kind,                      # current | savings
        "iban": iban,
        "number": number,                  # full account number (an IBAN in Europe)
        "masked": "xxxx" + number.replace(" ", "")[-4:],
        "opening_balance": Decimal(opening),
        "holder": "Sim Demo Company SRL",
    }


# The bank accounts a user has at each provider (the same for every link).
ACCOUNTS = {
    20001: (
        _spec(20001, "be-current", "Business Current Account", "EUR", "current", "5200.00",
              iban=make_iban("BE", _belgian_bban("yodlee-sim:be-current"))),
        _spec(20001, "be-savings", "Business Savings Account", "EUR", "savings", "15000.00",
              iban=make_iban("BE", _belgian_bban("yodlee-sim:be-savings"))),
        _spec(20001, "be-usd", "Dollar Account", "USD", "current", "1800.00",
              number="3100-2200-4455"),
    ),
    20002: (
        _spec(20002, "nl-current", "Zakelijke Rekening", "EUR", "current", "3100.00",
              iban=make_iban("NL", "SIMB" + _digits("yodlee-sim:nl-current", 10))),
    ),
    20003: (
        _spec(20003, "gb-current", "Business Current Account", "GBP", "current", "2400.00",
              iban=make_iban("GB", "SIMB" + _digits("yodlee-sim:gb-current", 14))),
    ),
    20004: (
        _spec(20004, "de-current", "Geschäftskonto", "EUR", "current", "4100.00",
              iban=make_iban("DE", _digits("yodlee-sim:de-current", 18))),
    ),
    20005: (
        _spec(20005, "fr-current", "Compte Courant Pro", "EUR", "current", "2900.00",
              iban=make_iban("FR", _digits("yodlee-sim:fr-current", 23))),
    ),
}


def find_account_spec(key):
    """Account spec by IBAN, account number or seed (spaces ignored); None if unknown."""
    wanted = str(key or "").replace(" ", "").upper()
    for specs in ACCOUNTS.values():
        for spec in specs:
            keys = {spec["seed"].upper(), spec["number"].replace(" ", "").upper()}
            if spec["iban"]:
                keys.add(spec["iban"].upper())
            if wanted and wanted in keys:
                return spec
    return None


# --------------------------------------------------------------------------- transactions
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
CUSTOMERS = ("Brasserie du Parc SRL", "Atelier Verhaegen BV", "Garage Peeters NV",
             "Van den Berg Logistics BV", "Maison Lefevre SARL", "Studio Lumiere SRL")
SUPPLIERS = ("Office Supplies Benelux NV", "Imprimerie Delcourt SA", "Hosting Europa GmbH",
             "Transport Maes NV", "Nuage Informatique SAS")
UTILITIES = ("Engie Electrabel", "Proximus", "Telenet", "Vivaqua")
MERCHANTS = ("Delhaize", "Colruyt", "Shell", "SNCB NMBS", "Exki", "Fnac", "Hema")
FOREIGN_MERCHANTS = (("Amazon.com", "USD", "Seattle WA"), ("Apple Store", "GBP", "London"),
                     ("Uber", "USD", "San Francisco CA"))
US_CLIENTS = ("Northwind Traders Inc", "Contoso Ltd", "Fabrikam LLC")
SAAS = ("Amazon Web Services", "GitHub", "Google Cloud", "Slack", "DigitalOcean")
UK_CUSTOMERS = ("Baker Street Ltd", "Thames Logistics Ltd", "Camden Design Co")
UK_MERCHANTS = ("Tesco", "Pret A Manger", "Boots", "TfL Travel")

# Rough exchange rates for foreign card payments (units of the foreign currency per account unit).
RATES = {("EUR", "USD"): Decimal("1.0842"), ("EUR", "GBP"): Decimal("0.8571"),
         ("GBP", "USD"): Decimal("1.2650"), ("USD", "GBP"): Decimal("0.7905")}

# (categoryType, category, categoryId, highLevelCategoryId) — our own small table.
CATEGORIES = {
    "income": ("INCOME", "Other Income", 32, 10000012),
    "salary": ("INCOME", "Salary/Regular Income", 29, 10000012),
    "rent": ("EXPENSE", "Rent", 3, 10000001),
    "supplier": ("EXPENSE", "Business Miscellaneous", 5, 10000009),
    "utility": ("EXPENSE", "Utilities", 39, 10000002),
    "card": ("EXPENSE", "Groceries", 21, 10000003),
    "travel": ("EXPENSE", "Travel", 22, 10000004),
    "fee": ("EXPENSE", "Service Charges/Fees", 24, 10000009),
    "refund": ("INCOME", "Refunds/Adjustments", 227, 10000012),
    "transfer": ("TRANSFER", "Transfers", 28, 10000006),
    "software": ("EXPENSE", "Office Expenses", 45, 10000009),
}

EUR_MIX = ((30, "customer"), (28, "card"), (14, "supplier"), (10, "utility"), (5, "fee"),
           (5, "refund"), (8, "foreign_card"))
USD_MIX = ((25, "wire_in"), (60, "saas"), (15, "wire_fee"))
GBP_MIX = ((35, "uk_customer"), (45, "uk_card"), (20, "uk_debit"))


def _choose(mix, roll):
    roll %= sum(weight for weight, _ in mix)
    for weight, kind in mix:
        if roll < weight:
            return kind
        roll -= weight
    return mix[-1][1]  # pragma: no cover


def _amount(digest, offset, low, high):
    low_cents, high_cents = int(Decimal(low) * 100), int(Decimal(high) * 100)
    cents = low_cents + _pick(digest, offset, high_cents - low_cents + 1)
    return (Decimal(max(cents, 1)) * CENT).quantize(CENT)


def _txn_id(digest, tag):
    """A positive int64 id (Yodlee transaction ids are integers)."""
    return 10 ** 10 + int.from_bytes(hashlib.sha256(tag + digest).digest()[:6], "big") % 10 ** 11


@dataclass(frozen=True)
class BankTransaction:
    posted_id: int
    pending_id: int
    transaction_date: date
    post_date: date
    amount: Decimal            # signed, in the account's currency: + money in
    currency: str
    original: str              # the bank's text (description.original)
    simple: str                # Yodlee's simplified text (description.simple)
    merchant: str | None
    category_key: str
    type: str
    sub_type: str
    foreign_amount: Decimal | None = None
    foreign_currency: str | None = None

    def as_api(self, account_id, pending, now_iso):
        """The ``Transaction`` object of ``GET /transactions``.

        ⚠️ Foreign card payments: ``amount`` is what the FI shows (the foreign currency) and
        ``convertedAmount``/``convertedCurrency`` the account-currency amount (our modelling).
        """
        category_type, category, category_id, high_level = CATEGORIES[self.category_key]
        money = {"amount": float(abs(self.amount)), "currency": self.currency}
        if self.foreign_currency:
            money = {"amount": float(self.foreign_amount), "currency": self.foreign_currency,
                     "convertedAmount": float(abs(self.amount)),
                     "convertedCurrency": self.currency}
        made = self.transaction_date.isoformat()
        payload = {
            "CONTAINER": "bank",
            "id": self.pending_id if pending else self.posted_id,
            "accountId": account_id,
            "amount": money,
            "baseType": "CREDIT" if self.amount > 0 else "DEBIT",
            "status": "PENDING" if pending else "POSTED",
            "date": made if pending else self.post_date.isoformat(),
            "transactionDate": made,
            "description": {"original": self.original, "simple": self.simple},
            "categoryType": category_type,
            "category": category,
            "categoryId": category_id,
            "categorySource": "SYSTEM",
            "highLevelCategoryId": high_level,
            "type": self.type,
            "subType": self.sub_type,
            "isManual": False,
            "sourceType": "AGGREGATED",
            "createdDate": f"{made}T18:00:00Z",
            "lastUpdated": now_iso,
        }
        if not pending:
            payload["postDate"] = self.post_date.isoformat()
        if self.merchant:
            payload["merchant"] = {"id": self.merchant.lower().replace(" ", "")[:20],
                                   "name": self.merchant, "source": "YODLEE",
                                   "categoryLabel": [category]}
        return payload


def _make(spec, booking_day, index):
    digest = _hash(spec["seed"], booking_day.isoformat(), index)
    made = booking_day - timedelta(days=1)
    month = f"{MONTHS[made.month - 1]} {made.year}"
    number = 100 + _pick(digest, 8, 9900)
    pick = _pick(digest, 4, 10 ** 6)
    ogm = belgian_ogm(f"{_pick(digest, 12, 10 ** 10):010d}") if _pick(digest, 16, 10) < 6 \
        else None
    currency = spec["currency"]
    merchant = None
    foreign = (None, None)
    if spec["kind"] == "savings":
        kind = "savings_in" if booking_day.day == 1 else "interest"
    elif currency == "EUR" and index == 0 and booking_day.day == 1:
        kind = "rent"
    elif currency == "EUR" and index == 0 and booking_day.day == 25:
        kind = "salary"
    elif currency == "EUR":
        kind = _choose(EUR_MIX, _pick(digest, 0, 1000))
    elif currency == "USD":
        kind = _choose(USD_MIX, _pick(digest, 0, 1000))
    else:
        kind = _choose(GBP_MIX, _pick(digest, 0, 1000))

    if kind == "savings_in":
        amount = _amount(digest, 20, "200.00", "900.00")
        simple, original = "Transfer from current account", (
            f"TRANSFER FROM BUSINESS CURRENT ACCOUNT SAVINGS {month.upper()}")
        category, txn_type, sub_type = "transfer", "TRANSFER", "TRANSFER"
    elif kind == "interest":
        amount = _amount(digest, 20, "1.00", "25.00")
        simple, original = "Interest", f"CREDIT INTEREST {month.upper()}"
        category, txn_type, sub_type = "income", "INTEREST", "INTEREST"
    elif kind == "rent":
        amount = Decimal("-1850.00")
        ref = belgian_ogm(f"{made.year % 100:02d}{made.month:02d}004242")
        simple = "Immo Louise SA"
        original = f"SEPA CREDIT TRANSFER TO IMMO LOUISE SA RENT {month.upper()} {ref}"
        category, txn_type, sub_type = "rent", "PAYMENT", "PAYMENT"
    elif kind == "salary":
        amount = _amount(digest, 20, "2600.00", "3100.00")
        simple = "Payroll Services Belgium NV"
        original = f"SEPA CREDIT TRANSFER FROM PAYROLL SERVICES BELGIUM NV SALARY {month.upper()}"
        category, txn_type, sub_type = "salary", "DEPOSIT", "DIRECT_DEPOSIT_SALARY"
    elif kind == "customer":
        simple = CUSTOMERS[pick % len(CUSTOMERS)]
        amount = _amount(digest, 20, "80.00", "1800.00")
        ref = ogm or rf_reference(f"INV{made.year}{number:05d}")
        original = f"SEPA CREDIT TRANSFER FROM {simple.upper()} INVOICE {number:05d} {ref}"
        category, txn_type, sub_type = "income", "DEPOSIT", "DEPOSIT"
    elif kind == "supplier":
        simple = merchant = SUPPLIERS[pick % len(SUPPLIERS)]
        amount = -_amount(digest, 20, "60.00", "1500.00")
        original = f"SEPA CREDIT TRANSFER TO {simple.upper()} INVOICE {made.year}-{number:04d}" + (
            f" {ogm}" if ogm else "")
        category, txn_type, sub_type = "supplier", "PAYMENT", "PAYMENT"
    elif kind == "utility":
        simple = merchant = UTILITIES[pick % len(UTILITIES)]
        amount = -_amount(digest, 20, "25.00", "320.00")
        original = f"SEPA DIRECT DEBIT {simple.upper()} CONTRACT {number:06d} {month.upper()}"
        category, txn_type, sub_type = "utility", "PAYMENT", "UTILITIES_PAYMENT"
    elif kind == "card":
        simple = merchant = MERCHANTS[pick % len(MERCHANTS)]
        amount = -_amount(digest, 20, "3.50", "180.00")
        original = (f"CARD PAYMENT {simple.upper()} {made.strftime('%d/%m')} "
                    f"CARD XXXX{pick % 10000:04d}")
        category, txn_type, sub_type = "card", "PURCHASE", "PURCHASE"
    elif kind == "foreign_card":
        merchant, foreign_currency, city = FOREIGN_MERCHANTS[pick % len(FOREIGN_MERCHANTS)]
        simple = merchant
        amount = -_amount(digest, 20, "5.00", "250.00")
        foreign_amount = (abs(amount) * RATES[(currency, foreign_currency)]).quantize(CENT)
        foreign = (foreign_amount, foreign_currency)
        original = (f"CARD PAYMENT {merchant.upper()} {city.upper()} {foreign_currency} "
                    f"{foreign_amount} {made.strftime('%d/%m')}")
        category, txn_type, sub_type = "travel", "PURCHASE", "PURCHASE"
    elif kind == "fee":
        simple = "Bank fee"
        amount = -_amount(digest, 20, "2.50", "12.00")
        original = ("MONTHLY ACCOUNT FEE", "CARD ANNUAL FEE", "SEPA INSTANT FEE")[pick % 3]
        category, txn_type, sub_type = "fee", "FEE", "SERVICE_CHARGE"
    elif kind == "refund":
        simple = merchant = MERCHANTS[pick % len(MERCHANTS)]
        amount = _amount(digest, 20, "5.00", "120.00")
        original = f"REFUND {simple.upper()} ORDER {number:05d}"
        category, txn_type, sub_type = "refund", "REFUND", "REFUND"
    elif kind == "wire_in":
        simple = US_CLIENTS[pick % len(US_CLIENTS)]
        amount = _amount(digest, 20, "200.00", "2500.00")
        original = f"INCOMING WIRE {simple.upper()} INV-{made.year}-{number:04d}"
        category, txn_type, sub_type = "income", "DEPOSIT", "DEPOSIT"
    elif kind == "saas":
        simple = merchant = SAAS[pick % len(SAAS)]
        amount = -_amount(digest, 20, "5.00", "600.00")
        original = f"CARD PAYMENT {simple.upper()} {made.strftime('%m/%d')}"
        category, txn_type, sub_type = "software", "PURCHASE", "RECURRING_SUBSCRIPTION_PAYMENT"
    elif kind == "wire_fee":
        simple = "Bank fee"
        amount = Decimal("-15.00") if pick % 2 else Decimal("-25.00")
        original = "INCOMING WIRE FEE"
        category, txn_type, sub_type = "fee", "FEE", "SERVICE_CHARGE"
    elif kind == "uk_customer":
        simple = UK_CUSTOMERS[pick % len(UK_CUSTOMERS)]
        amount = _amount(digest, 20, "60.00", "1500.00")
        original = f"FASTER PAYMENT FROM {simple.upper()} REF INV{number:05d}"
        category, txn_type, sub_type = "income", "DEPOSIT", "DEPOSIT"
    elif kind == "uk_card":
        simple = merchant = UK_MERCHANTS[pick % len(UK_MERCHANTS)]
        amount = -_amount(digest, 20, "2.50", "90.00")
        original = f"CARD PAYMENT TO {simple.upper()} ON {made.strftime('%d-%m')}"
        category, txn_type, sub_type = "card", "PURCHASE", "PURCHASE"
    else:  # uk_debit
        simple = merchant = "British Gas"
        amount = -_amount(digest, 20, "30.00", "250.00")
        original = f"DIRECT DEBIT BRITISH GAS {number:06d}"
        category, txn_type, sub_type = "utility", "PAYMENT", "UTILITIES_PAYMENT"

    return BankTransaction(
        posted_id=_txn_id(digest, b"posted"),
        pending_id=_txn_id(digest, b"pending"),
        transaction_date=made,
        post_date=booking_day,
        amount=amount,
        currency=currency,
        original=original,
        simple=simple,
        merchant=merchant,
        category_key=category,
        type=txn_type,
        sub_type=sub_type,
        foreign_amount=foreign[0],
        foreign_currency=foreign[1],
    )


def count_on(spec, booking_day, per_day):
    """How many transactions ``spec`` books on ``booking_day`` (``per_day`` for its currency)."""
    if spec["kind"] == "savings":
        nxt = booking_day + timedelta(days=1)
        return 1 if (booking_day.day == 1 or nxt.day == 1) and per_day else 0
    return per_day


@lru_cache(maxsize=50000)
def _posting_on(seed, booking_day, count):
    spec = find_account_spec(seed)
    return tuple(_make(spec, booking_day, index) for index in range(count))


def transactions_posting_on(spec, booking_day, per_day):
    """The transactions of ``spec`` that post on ``booking_day``, in index order."""
    return _posting_on(spec["seed"], booking_day, count_on(spec, booking_day, per_day))


def day_total(spec, booking_day, per_day):
    return sum((txn.amount for txn in transactions_posting_on(spec, booking_day, per_day)),
               Decimal("0.00"))
