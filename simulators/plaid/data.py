"""Deterministic data of the Plaid simulator: institutions, accounts and transactions.

Nothing here is random: a transaction derives from ``sha256(account key | posting day | index)``,
so the same account, day and index always give the same amount, description and counterparty.
Transaction and account *ids* also mix in the Item id, because Plaid ids belong to one Item
(linking the same bank account twice gives two Items with different ids).

Time model: the transactions that post on day ``d`` happened on ``d - 1`` (``authorized_date``).
Those with a pending phase (card payments, outgoing transfers) are pending on ``d - 1`` under
a pending id, dated ``d - 1``; on ``d`` they post under a *new* ``transaction_id`` whose
``pending_transaction_id`` is the pending id (and the pending one disappears). Incoming transfers,
fees and interest post directly.

Amounts are kept bank-statement style here (``signed``: + money in) and turned into Plaid's
convention (positive = money out) only in :func:`plaid_amount`.
"""
import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

CENT = Decimal("0.01")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
EU_COUNTRIES = ["BE", "DE", "ES", "FR", "IE", "IT", "NL"]


# --------------------------------------------------------------------------- identifiers
def plaid_id(*parts, length=37):
    """A Plaid-looking identifier (base62, 37 characters) derived from ``parts``."""
    number = int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest(), "big")
    chars = []
    while len(chars) < length:
        number, rest = divmod(number, 62)
        chars.append(BASE62[rest])
        if number == 0:
            number = int.from_bytes(hashlib.sha256(("".join(chars)).encode()).digest(), "big")
    return "".join(chars)


def _alnum_to_digits(text):
    return "".join(str(int(char, 36)) for char in text.upper())


def make_iban(country, bban):
    """``country`` + ISO 13616 check digits + ``bban``."""
    check = 98 - int(_alnum_to_digits(bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def is_valid_iban(iban):
    iban = (iban or "").replace(" ", "").upper()
    if len(iban) < 15 or not iban.isalnum() or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    return int(_alnum_to_digits(iban[4:] + iban[:4])) % 97 == 1


def _digits(seed, length):
    text = hashlib.sha256(seed.encode()).hexdigest()
    return "".join(str(int(char, 16) % 10) for char in text)[:length]


def belgian_structured_reference(ten_digits):
    """Belgian structured communication ``+++123/4567/89002+++`` (mod 97)."""
    check = int(ten_digits) % 97 or 97
    digits = f"{ten_digits}{check:02d}"
    return f"+++{digits[:3]}/{digits[3:7]}/{digits[7:]}+++"


@lru_cache(maxsize=None)
def counterparty_iban(name, country):
    """A mod-97 valid IBAN for a named counterparty, the same on every call."""
    seed = f"plaid-sim:counterparty:{name}:{country}"
    if country == "BE":
        ten = _digits(seed, 10)
        bban = f"{ten}{int(ten) % 97 or 97:02d}"
    elif country == "NL":
        bban = "INGB" + _digits(seed, 10)
    elif country == "FR":
        bban = _digits(seed, 23)
    elif country == "DE":
        bban = _digits(seed, 18)
    elif country == "GB":
        bban = "NWBK" + _digits(seed, 14)
    else:
        return None
    return make_iban(country, bban)


# --------------------------------------------------------------------------- institutions
# Accounts of an institution ("template"); ``key`` identifies the bank account itself.
ACCOUNT_TEMPLATES = {
    "eu": (
        {"key": "eu-checking", "name": "Compte Courant Pro", "official_name":
         "Platypus Business Current Account", "type": "depository", "subtype": "checking",
         "currency": "EUR", "iban": make_iban("BE", "0630123456" + "%02d" % (630123456 % 97)),
         "bic": "PLATBEBB", "opening": "12500.00", "region": "eu"},
        {"key": "eu-savings", "name": "Livret Pro", "official_name": "Platypus Business Savings",
         "type": "depository", "subtype": "savings", "currency": "EUR",
         "iban": make_iban("FR", "30004" + "01234" + "00098765432" + "17"),
         "bic": "PLATFRPP", "opening": "40000.00", "region": "eu"},
        {"key": "eu-gbp", "name": "GBP Account", "official_name": "Platypus Multi-currency GBP",
         "type": "depository", "subtype": "checking", "currency": "GBP",
         "iban": make_iban("GB", "PLAT" + "601613" + "31926819"), "bic": "PLATGB2L",
         "opening": "3000.00", "region": "gb"},
    ),
    "gb": (
        {"key": "gb-current", "name": "Business Current Account", "official_name":
         "Platypus UK Business Current Account", "type": "depository", "subtype": "checking",
         "currency": "GBP", "iban": make_iban("GB", "PLUK" + "404040" + "12345678"),
         "bic": "PLUKGB22", "sort_code": "404040", "account_number": "12345678",
         "opening": "8000.00", "region": "gb"},
    ),
    "us": (
        {"key": "us-checking", "name": "Plaid Checking", "official_name":
         "First Platypus Business Checking", "type": "depository", "subtype": "checking",
         "currency": "USD", "iban": None, "routing": "011401533",
         "account_number": "1111222233330000",
         "opening": "5000.00", "region": "us", "persistent": True},
        {"key": "us-credit", "name": "Plaid Credit Card", "official_name":
         "First Platypus Business Card", "type": "credit", "subtype": "credit card",
         "currency": "USD", "iban": None, "opening": "-410.00", "region": "us",
         "persistent": True, "limit": "5000.00"},
    ),
}
for _template in ACCOUNT_TEMPLATES.values():
    for _spec in _template:
        _number_text = _spec.get("account_number") or _spec["iban"] or ""
        _spec["mask"] = _number_text.replace(" ", "")[-4:] or _digits(_spec["key"], 4)
        _spec["persistent_account_id"] = (hashlib.sha256(f"plaid-sim:{_spec['key']}".encode())
                                          .hexdigest() if _spec.get("persistent") else None)

INSTITUTIONS = [
    {"institution_id": "ins_sim_eu_1", "name": "Banque Platypus Europe",
     "country_codes": EU_COUNTRIES, "products": ["assets", "auth", "balance", "identity",
                                                 "transactions"],
     "oauth": True, "url": "https://platypus.example", "primary_color": "#1d3557",
     "template": "eu", "consent_days": 180},
    {"institution_id": "ins_sim_gb_1", "name": "Platypus Bank UK", "country_codes": ["GB"],
     "products": ["auth", "balance", "identity", "transactions"], "oauth": True,
     "url": "https://platypus-uk.example", "primary_color": "#2a9d8f", "template": "gb",
     "consent_days": 90},
    {"institution_id": "ins_109508", "name": "First Platypus Bank", "country_codes": ["US"],
     "products": ["assets", "auth", "balance", "identity", "transactions"], "oauth": False,
     "url": "https://firstplatypus.example", "primary_color": "#e63946", "template": "us",
     "consent_days": None},
]
# Many small US institutions, so that /institutions/get has several pages.
FILLER_INSTITUTIONS = 620
INSTITUTIONS.extend(
    {"institution_id": f"ins_sim_cu_{n:04d}", "name": f"Platypus Community Credit Union {n:04d}",
     "country_codes": ["US"], "products": ["balance", "transactions"], "oauth": False,
     "url": None, "primary_color": None, "template": "us", "consent_days": None, "filler": True}
    for n in range(1, FILLER_INSTITUTIONS + 1))
INSTITUTIONS_BY_ID = {inst["institution_id"]: inst for inst in INSTITUTIONS}
ROUTING_NUMBERS = {"ins_109508": ["011401533", "021200339"]}

# A 1x1 transparent PNG (base64), the logo of every simulated institution.
LOGO_PNG_BASE64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA"
                   "60e6kgAAAABJRU5ErkJggg==")


def public_institution(inst, with_metadata=False):
    """The API ``Institution`` object."""
    result = {"institution_id": inst["institution_id"], "name": inst["name"],
              "products": list(inst["products"]), "country_codes": list(inst["country_codes"]),
              "routing_numbers": list(ROUTING_NUMBERS.get(inst["institution_id"], [])),
              "dtc_numbers": [], "oauth": inst["oauth"],
              # Not in the reference spec (2020-09-14_1.697.4) but required by newer Plaid
              # clients (plaid-python 46 makes it a required Institution field).
              "connection_availability": "SUPPORTED"}
    if with_metadata:
        result.update(url=inst["url"], primary_color=inst["primary_color"],
                      logo=LOGO_PNG_BASE64 if not inst.get("filler") else None)
    return result


def accounts_of(institution_id):
    return ACCOUNT_TEMPLATES[INSTITUTIONS_BY_ID[institution_id]["template"]]


def find_account_spec(key):
    """Account spec by template key or IBAN (spaces ignored); None if unknown."""
    wanted = (key or "").replace(" ", "").upper()
    for template in ACCOUNT_TEMPLATES.values():
        for spec in template:
            if wanted and wanted in (spec["key"].upper(), (spec["iban"] or "").upper()):
                return spec
    return None


# --------------------------------------------------------------------------- transactions
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
EU_CUSTOMERS = (("Brasserie du Parc SRL", "BE"), ("Atelier Verhaegen BV", "BE"),
                ("Maison Lefèvre SARL", "FR"), ("Van den Berg Logistics BV", "NL"),
                ("Dupont & Fils SA", "BE"), ("Kaffeerösterei Schmidt GmbH", "DE"))
EU_SUPPLIERS = (("Office Supplies Benelux NV", "BE"), ("Nuage Informatique SAS", "FR"),
                ("Hosting Europa GmbH", "DE"), ("Transport Maes NV", "BE"))
EU_UTILITIES = (("Engie Electrabel", "electricity", "RENT_AND_UTILITIES_GAS_AND_ELECTRICITY"),
                ("Proximus", "telephone", "RENT_AND_UTILITIES_TELEPHONE"),
                ("Vivaqua", "water", "RENT_AND_UTILITIES_WATER"))
EU_MERCHANTS = (("Delhaize", "Bruxelles", "BE", "FOOD_AND_DRINK_GROCERIES"),
                ("Carrefour", "Paris", "FR", "FOOD_AND_DRINK_GROCERIES"),
                ("Shell", "Gent", "BE", "TRANSPORTATION_GAS"),
                ("SNCB/NMBS", "Bruxelles", "BE", "TRAVEL_PUBLIC_TRANSIT"),
                ("Café du Coin", "Paris", "FR", "FOOD_AND_DRINK_COFFEE"),
                ("Fnac", "Lyon", "FR", "GENERAL_MERCHANDISE_ELECTRONICS"))
GB_MERCHANTS = (("Pret A Manger", "London", "GB", "FOOD_AND_DRINK_COFFEE"),
                ("Tesco", "Manchester", "GB", "FOOD_AND_DRINK_GROCERIES"),
                ("TfL Travel Charge", "London", "GB", "TRAVEL_PUBLIC_TRANSIT"))
GB_CLIENTS = (("Thames Consulting Ltd", "GB"), ("Bristol Widgets Ltd", "GB"))
US_MERCHANTS = (("Starbucks", "Seattle", "US", "FOOD_AND_DRINK_COFFEE"),
                ("Uber", "San Francisco", "US", "TRANSPORTATION_TAXIS_AND_RIDE_SHARES"),
                ("Amazon", "Seattle", "US", "GENERAL_MERCHANDISE_ONLINE_MARKETPLACES"),
                ("Office Depot", "Boca Raton", "US", "GENERAL_MERCHANDISE_OFFICE_SUPPLIES"),
                ("United Airlines", "Chicago", "US", "TRAVEL_FLIGHTS"))
US_PAYERS = ("Northwind Traders Inc", "Contoso Ltd", "Fabrikam LLC")

EU_MIX = ((30, "transfer_in"), (30, "card"), (15, "transfer_out"), (10, "direct_debit"),
          (5, "fee"), (10, "card_abroad"))
GB_MIX = ((30, "transfer_in"), (50, "card"), (20, "transfer_out"))
US_MIX = ((30, "ach_in"), (50, "card"), (15, "ach_out"), (5, "fee"))
CARD_MIX = ((85, "card"), (10, "refund"), (5, "card_payment"))


def _digest(*parts):
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def _number(digest, offset, modulo):
    return int.from_bytes(digest[offset:offset + 4], "big") % modulo


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


@dataclass(frozen=True)
class BankTransaction:
    """One transaction of an account, before it is given Item-specific ids."""
    key: str
    posting_day: date
    index: int
    signed: Decimal           # bank-statement sign: + money in
    currency: str
    name: str
    merchant_name: str | None
    counterparty_name: str | None
    counterparty_type: str | None
    counterparty_iban: str | None
    counterparty_bic: str | None
    reference_number: str | None
    payer: str | None
    payee: str | None
    reason: str | None
    payment_method: str | None
    payment_channel: str
    transaction_code: str | None
    category_primary: str
    category_detailed: str
    city: str | None
    country: str | None
    has_pending: bool

    @property
    def authorized_day(self):
        return self.posting_day - timedelta(days=1)


def plaid_amount(signed):
    """Plaid's sign: positive when money moves out of the account."""
    return float(-signed)


@lru_cache(maxsize=200_000)
def bank_transaction(key, currency, region, posting_day, index):
    """The ``index``-th transaction posting on ``posting_day`` on the account ``key``."""
    digest = _digest("plaid-sim", key, posting_day.isoformat(), index)
    made_on = posting_day - timedelta(days=1)
    month = f"{MONTHS[made_on.month - 1]} {made_on.year}"
    number = 100 + _number(digest, 8, 9900)
    pick = _number(digest, 4, 10 ** 6)
    if key == "us-credit":
        kind = _choose(CARD_MIX, _number(digest, 0, 1000))
    elif region == "eu" and index == 0 and posting_day.day == 1:
        kind = "rent"
    else:
        kind = _choose({"eu": EU_MIX, "gb": GB_MIX, "us": US_MIX}[region], _number(digest, 0, 1000))
    fields = dict(merchant_name=None, counterparty_name=None, counterparty_type=None,
                  counterparty_iban=None, counterparty_bic=None, reference_number=None,
                  payer=None, payee=None, reason=None, payment_method=None,
                  payment_channel="other", transaction_code=None, city=None, country=None,
                  has_pending=False)
    if kind == "rent":
        name = "Immo Louise SA"
        fields.update(counterparty_name=name, counterparty_type="merchant",
                      counterparty_iban=counterparty_iban(name, "BE"), payee=name,
                      reference_number=belgian_structured_reference(
                          f"{made_on.year % 100:02d}{made_on.month:02d}004242"),
                      reason=f"Rent office Rue de la Loi 42 - {month}",
                      payment_method="standing order", transaction_code="standing order",
                      has_pending=True)
        signed = Decimal("-1850.00")
        description = f"STANDING ORDER IMMO LOUISE SA {month.upper()}"
        category = ("RENT_AND_UTILITIES", "RENT_AND_UTILITIES_RENT")
    elif kind == "transfer_in":
        customers = EU_CUSTOMERS if region == "eu" else GB_CLIENTS
        name, country = customers[pick % len(customers)]
        reference = (belgian_structured_reference(f"{_number(digest, 12, 10 ** 10):010d}")
                     if country == "BE" and _number(digest, 16, 10) < 6 else None)
        fields.update(counterparty_name=name, counterparty_type="income_source",
                      counterparty_iban=counterparty_iban(name, country), payer=name,
                      reference_number=reference, reason=f"Invoice INV/{made_on.year}/{number:05d}",
                      payment_method="SEPA credit transfer" if region == "eu" else "faster payment",
                      transaction_code="transfer")
        signed = _amount(digest, 20, "80.00", "1800.00")
        description = f"TRANSFER FROM {name.upper()} INV/{made_on.year}/{number:05d}"
        category = ("INCOME", "INCOME_OTHER_INCOME")
    elif kind == "transfer_out":
        suppliers = EU_SUPPLIERS if region == "eu" else (("Cloudy Hosting Ltd", "GB"),)
        name, country = suppliers[pick % len(suppliers)]
        fields.update(counterparty_name=name, counterparty_type="merchant",
                      counterparty_iban=counterparty_iban(name, country), payee=name,
                      reason=f"Invoice {made_on.year}-{number:04d}",
                      payment_method="SEPA credit transfer" if region == "eu" else "faster payment",
                      payment_channel="online", transaction_code="transfer", has_pending=True)
        signed = -_amount(digest, 20, "60.00", "1500.00")
        description = f"TRANSFER TO {name.upper()} {made_on.year}-{number:04d}"
        category = ("GENERAL_SERVICES", "GENERAL_SERVICES_OTHER_GENERAL_SERVICES")
    elif kind == "direct_debit":
        name, service, detailed = EU_UTILITIES[pick % len(EU_UTILITIES)]
        fields.update(counterparty_name=name, counterparty_type="merchant", merchant_name=name,
                      counterparty_iban=counterparty_iban(name, "BE"), payee=name,
                      reference_number=f"RF{_digits(key + str(number), 2)}{number:06d}",
                      payment_method="SEPA direct debit", transaction_code="direct debit")
        signed = -_amount(digest, 20, "25.00", "320.00")
        description = f"DIRECT DEBIT {name.upper()} {service.upper()} {month.upper()}"
        category = ("RENT_AND_UTILITIES", detailed)
    elif kind in ("card", "card_abroad", "refund"):
        merchants = {"eu": EU_MERCHANTS, "gb": GB_MERCHANTS, "us": US_MERCHANTS}[region]
        if kind == "card_abroad":
            merchants = US_MERCHANTS
        name, city, country, detailed = merchants[pick % len(merchants)]
        fields.update(merchant_name=name, counterparty_name=name, counterparty_type="merchant",
                      payment_channel="in store" if pick % 3 else "online", city=city,
                      country=country,
                      transaction_code="refund" if kind == "refund" else "purchase",
                      has_pending=kind != "refund")
        amount = _amount(digest, 20, "3.50", "180.00")
        signed = amount if kind == "refund" else -amount
        prefix = "REFUND" if kind == "refund" else "CARD PAYMENT"
        description = f"{prefix} {name.upper()} {city.upper()} {made_on.strftime('%d/%m')}"
        primary = next(prefix for prefix in ("FOOD_AND_DRINK", "GENERAL_MERCHANDISE",
                                             "TRANSPORTATION", "TRAVEL")
                       if detailed.startswith(prefix))
        category = (primary, detailed)
    elif kind == "card_payment":
        fields.update(counterparty_name="First Platypus Bank",
                      counterparty_type="financial_institution", transaction_code="payment")
        signed = _amount(digest, 20, "100.00", "900.00")
        description = "PAYMENT THANK YOU"
        category = ("LOAN_PAYMENTS", "LOAN_PAYMENTS_CREDIT_CARD_PAYMENT")
    elif kind == "ach_in":
        name = US_PAYERS[pick % len(US_PAYERS)]
        fields.update(counterparty_name=name, counterparty_type="income_source", payer=name,
                      payment_method="ACH", reference_number=f"{number:010d}",
                      transaction_code="transfer")
        signed = _amount(digest, 20, "150.00", "2500.00")
        description = f"ACH DEPOSIT {name.upper()} PPD ID: {number:010d}"
        category = ("INCOME", "INCOME_OTHER_INCOME")
    elif kind == "ach_out":
        name = ("Gusto Payroll", "Comcast Business", "AT&T")[pick % 3]
        fields.update(counterparty_name=name, counterparty_type="merchant", payee=name,
                      merchant_name=name, payment_method="ACH", payment_channel="online",
                      transaction_code="bill payment", has_pending=True)
        signed = -_amount(digest, 20, "40.00", "1200.00")
        description = f"ACH DEBIT {name.upper()} WEB ID {number:06d}"
        category = ("GENERAL_SERVICES", "GENERAL_SERVICES_OTHER_GENERAL_SERVICES")
    else:  # fee
        fields.update(counterparty_name="Platypus Bank", counterparty_type="financial_institution",
                      transaction_code="bank charge")
        signed = -_amount(digest, 20, "2.50", "12.00")
        description = ("MONTHLY SERVICE FEE", "WIRE TRANSFER FEE", "CARD FEE")[pick % 3]
        category = ("BANK_FEES", "BANK_FEES_OTHER_BANK_FEES")
    return BankTransaction(key=key, posting_day=posting_day, index=index, signed=signed,
                           currency=currency, name=description,
                           category_primary=category[0], category_detailed=category[1],
                           **fields)


def transactions_posting_on(spec, day, count):
    return [bank_transaction(spec["key"], spec["currency"], spec["region"], day, index)
            for index in range(count)]


def posted_id(item_id, txn):
    return plaid_id("posted", item_id, txn.key, txn.posting_day.isoformat(), txn.index)


def pending_id(item_id, txn):
    return plaid_id("pending", item_id, txn.key, txn.posting_day.isoformat(), txn.index)


def to_api(txn, item_id, account_id, *, pending):
    """The API ``Transaction`` object (as posted, or as pending the day before)."""
    counterparties = []
    if txn.counterparty_name:
        party = {"name": txn.counterparty_name, "type": txn.counterparty_type,
                 "website": None, "logo_url": None,
                 "entity_id": plaid_id("entity", txn.counterparty_name)[:22],
                 "confidence_level": "HIGH"}
        if txn.counterparty_iban:  # EU only: the counterparty's account numbers
            party["account_numbers"] = {"international": {"iban": txn.counterparty_iban,
                                                          "bic": txn.counterparty_bic}}
        counterparties.append(party)
    day = txn.authorized_day if pending else txn.posting_day
    return {
        "account_id": account_id,
        "account_owner": None,
        "amount": plaid_amount(txn.signed),
        "iso_currency_code": txn.currency,
        "unofficial_currency_code": None,
        "category": None,
        "category_id": None,
        "check_number": None,
        "counterparties": counterparties,
        "date": day.isoformat(),
        "datetime": None,
        "authorized_date": txn.authorized_day.isoformat(),
        "authorized_datetime": None,
        "location": {"address": None, "city": txn.city, "region": None, "postal_code": None,
                     "country": txn.country, "lat": None, "lon": None, "store_number": None},
        "logo_url": None,
        "merchant_entity_id": (plaid_id("entity", txn.merchant_name)[:22]
                               if txn.merchant_name else None),
        "merchant_name": txn.merchant_name,
        "name": txn.name,
        "payment_channel": txn.payment_channel,
        "payment_meta": {"by_order_of": None, "payee": txn.payee, "payer": txn.payer,
                         "payment_method": txn.payment_method, "payment_processor": None,
                         "ppd_id": None, "reason": txn.reason,
                         "reference_number": txn.reference_number},
        "pending": pending,
        "pending_transaction_id": (None if pending or not txn.has_pending
                                   else pending_id(item_id, txn)),
        "personal_finance_category": {"primary": txn.category_primary,
                                      "detailed": txn.category_detailed,
                                      "confidence_level": "HIGH"},
        "personal_finance_category_icon_url":
            f"https://plaid-category-icons.plaid.com/PFC_{txn.category_primary}.png",
        "transaction_code": txn.transaction_code,
        "transaction_id": pending_id(item_id, txn) if pending else posted_id(item_id, txn),
        "transaction_type": "place" if txn.payment_channel == "in store" else (
            "digital" if txn.payment_channel == "online" else "special"),
        "website": None,
    }


def day_total(spec, day, count):
    """Signed sum of the transactions posting on ``day``."""
    return sum((txn.signed for txn in transactions_posting_on(spec, day, count)), Decimal("0"))


def pending_total(spec, today, count):
    """Signed sum of the pending transactions on ``today`` (they post tomorrow)."""
    tomorrow = today + timedelta(days=1)
    return sum((txn.signed for txn in transactions_posting_on(spec, tomorrow, count)
                if txn.has_pending), Decimal("0"))
