"""Deterministic data of the Ponto Connect simulator: financial institutions, one organization's
accounts and their transactions.

Nothing here is random. Every identifier and every transaction derives from
``sha256(account | booking day | index)``, so the same account, day and index always give the same
ids, amounts, texts and counterparties, whatever the process or the machine.

Transaction model: the transactions that book on day ``b`` were made on ``b - 1``. While the
simulated "today" is ``b - 1`` they are listed by ``/pending-transactions`` (resource type
``pendingTransaction``, id ``pending_id``); from ``b`` on they are listed by ``/transactions``
under a **different** id (``booked_id``). Ponto links the two in no way; that is the point.
"""
import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache

CENT = Decimal("0.01")
SEED = "ponto-simulator"


# --------------------------------------------------------------------------- identifiers
def make_uuid(*parts):
    """A version-4-shaped UUID derived from ``parts`` (the same parts, the same UUID)."""
    digest = bytearray(hashlib.sha256("|".join((SEED,) + tuple(map(str, parts))).encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(digest)))


def _alnum_to_digits(text):
    return "".join(str(int(char, 36)) for char in text.upper())


def iban_check_digits(country, bban):
    """The ISO 13616 check digits of ``country`` + ``bban``."""
    return "%02d" % (98 - int(_alnum_to_digits(bban + country + "00")) % 97)


def make_iban(country, bban):
    return f"{country}{iban_check_digits(country, bban)}{bban}"


def is_valid_iban(iban):
    """ISO 13616 mod-97 check (format only)."""
    iban = (iban or "").replace(" ", "").upper()
    if len(iban) < 15 or not iban.isalnum() or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    return int(_alnum_to_digits(iban[4:] + iban[:4])) % 97 == 1


def belgian_iban(ten_digits):
    """Belgian IBAN of the 10-digit account number (national check: mod 97, 97 for 0)."""
    check = int(ten_digits) % 97 or 97
    return make_iban("BE", f"{ten_digits}{check:02d}")


def structured_communication(ten_digits):
    """Belgian structured communication (OGM/VCS) ``+++123/4567/89002+++``."""
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


def _digits(seed, length):
    text = hashlib.sha256(seed.encode()).hexdigest()
    return "".join(str(int(char, 16) % 10) for char in text)[:length]


@lru_cache(maxsize=None)
def counterparty_iban(name, country):
    """A mod-97-valid IBAN for a named counterparty (the same on every call)."""
    seed = f"{SEED}:counterparty:{name}:{country}"
    if country == "BE":
        return belgian_iban(_digits(seed, 10))
    if country == "NL":
        return make_iban("NL", "MAAS" + _digits(seed, 10))
    if country == "FR":
        return make_iban("FR", _digits(seed, 23))
    if country == "DE":
        return make_iban("DE", _digits(seed, 18))
    if country == "LU":
        return make_iban("LU", _digits(seed, 16))
    return None


# --------------------------------------------------------------------------- institutions
def _institution(key, name, bic, country, status="stable", brand=None):
    return {
        "id": make_uuid("institution", key),
        "key": key,
        "name": name,
        "bic": bic,
        "country": country,
        "status": status,
        "sharedBrandName": brand,
        "sharedBrandReference": brand and brand.lower().replace(" ", "-"),
        "primaryColor": "#" + hashlib.sha256(key.encode()).hexdigest()[:6],
        "secondaryColor": "#" + hashlib.sha256(key.encode()).hexdigest()[6:12],
        "deprecated": False,
    }


INSTITUTIONS = (
    _institution("sablon", "Banque du Sablon", "SABLBEB1", "BE"),
    _institution("kempen", "Kempense Spaarbank", "KEMPBEB2", "BE", brand="Kempen Groep"),
    _institution("meuse", "Crédit de la Meuse", "CRMEBEB3", "BE", status="beta"),
    _institution("maasland", "Maasland Bank", "MAASNL2A", "NL"),
    _institution("loire", "Banque de la Loire", "BLOIFRPP", "FR", status="experimental"),
    _institution("alzette", "Banque de l'Alzette", "BALZLULL", "LU"),
    _institution("super", "Super Sandbox Bank", "NBBEBEBB203", None),
)


def find_institution(institution_id):
    return next((inst for inst in INSTITUTIONS if inst["id"] == institution_id), None)


# --------------------------------------------------------------------------- the organization
ORGANIZATION_ID = make_uuid("organization", "demo")
ORGANIZATION_NAME = "Ponto Demo Company SRL"


def _account(key, number, description, currency, subtype, institution_key, opening, profile):
    iban = belgian_iban(number)
    return {
        "id": make_uuid("account", ORGANIZATION_ID, iban),
        "key": key,
        "iban": iban,
        "description": description,
        "product": {"checking": "Compte à vue Business", "savings": "Compte d'épargne Pro"}[subtype],
        "holderName": "Ponto Demo Company SRL",
        "currency": currency,
        "subtype": subtype,
        "institution_id": make_uuid("institution", institution_key),
        "internalReference": make_uuid("internal-reference", iban),
        "opening_balance": Decimal(opening),
        "profile": profile,
    }


# The organization's accounts (all of them; the user shares some with an integration).
ACCOUNTS = (
    _account("current", "0682011223", "Compte courant", "EUR", "checking", "sablon",
             "12500.00", "business"),
    _account("savings", "0682044556", "Compte épargne", "EUR", "savings", "sablon",
             "40000.00", "savings"),
    _account("usd", "7350012345", "USD current account", "USD", "checking", "kempen",
             "8000.00", "usd"),
)


def find_account(key):
    """Account spec by id, IBAN (spaces ignored) or short key; None if unknown."""
    wanted = (key or "").replace(" ", "").upper()
    for spec in ACCOUNTS:
        if wanted and wanted in (spec["id"].upper(), spec["iban"], spec["key"].upper()):
            return spec
    return None


# --------------------------------------------------------------------------- transactions
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
          "octobre", "novembre", "décembre")
CUSTOMERS = (
    ("Brasserie Les Marolles SRL", "BE"), ("Atelier Vandamme BV", "BE"), ("Lambert & Fils SA", "BE"),
    ("Bakkerij De Smet BV", "BE"), ("Studio Horta SRL", "BE"), ("Garage Claes NV", "BE"),
    ("Noordzee Logistiek BV", "NL"), ("Maison Girard SARL", "FR"),
)
SUPPLIERS = (
    ("Bureau Fournitures Benelux NV", "BE"), ("Imprimerie Gilson SA", "BE"),
    ("Schoonmaak Peeters BV", "BE"), ("Transports Wauters SA", "BE"),
    ("Rechenzentrum Mosel GmbH", "DE"), ("Nuage Azur SAS", "FR"),
)
DIRECT_DEBITS = (
    ("Énergie Bruxelloise SA", "électricité"), ("Telecom Brabant NV", "téléphone"),
    ("Eaux du Sud SCRL", "eau"), ("Assurances Mutuelles SA", "assurance"),
)
MERCHANTS = (
    ("Supermarché Flagey", "Ixelles"), ("Carburants Nord", "Gent"), ("Librairie Tropismes", "Bruxelles"),
    ("Restaurant Le Coq", "Namur"), ("Parking Central", "Liège"), ("Treinticket Online", "Mechelen"),
)
FOREIGN_MERCHANTS = (("Coffee House London", "GBP"), ("Züri Bahnhof Kiosk", "CHF"),
                     ("Nordic Hotels AB", "SEK"))
US_CLIENTS = ("Northwind Traders Inc.", "Contoso Ltd.", "Fabrikam LLC")
SAAS = ("Cloud Hosting Inc.", "Code Forge Inc.", "Chat Tools LLC", "Design Cloud Corp.")

BUSINESS_MIX = ((30, "customer"), (25, "card"), (15, "supplier"), (10, "direct_debit"),
                (5, "fee"), (5, "refund"), (10, "foreign_card"))
SAVINGS_MIX = ((60, "transfer_in"), (40, "transfer_out"))
USD_MIX = ((30, "wire_in"), (55, "saas"), (15, "wire_fee"))
MIXES = {"business": BUSINESS_MIX, "savings": SAVINGS_MIX, "usd": USD_MIX}


def _number(digest, offset, modulo):
    return int.from_bytes(digest[offset:offset + 4], "big") % modulo


def _amount(digest, offset, low, high):
    low_cents, high_cents = int(Decimal(low) * 100), int(Decimal(high) * 100)
    cents = low_cents + _number(digest, offset, high_cents - low_cents + 1)
    return (Decimal(max(cents, 1)) * CENT).quantize(CENT)


def _choose(mix, roll):
    roll %= sum(weight for weight, _ in mix)
    for weight, kind in mix:
        if roll < weight:
            return kind
        roll -= weight
    return mix[-1][1]  # pragma: no cover


def _stamp(day, seconds=0, millis=0):
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` of ``day`` at 06:00 UTC plus ``seconds``."""
    hours, rest = divmod(6 * 3600 + seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{day.isoformat()}T{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}Z"


def midnight(day):
    """How Ponto writes a bank date: midnight UTC of that calendar date."""
    return f"{day.isoformat()}T00:00:00.000Z"


@dataclass(frozen=True)
class BankTransaction:
    account_id: str
    booked_id: str
    pending_id: str
    made_on: date
    booking_date: date
    attributes: tuple  # ((name, value), ...) common to both representations

    def _resource(self, resource_type, identifier, execution, value, api_url, created):
        attributes = dict(self.attributes)
        attributes.update(executionDate=midnight(execution), valueDate=midnight(value),
                          createdAt=created, updatedAt=created)
        payload = "|".join(f"{k}={attributes[k]}" for k in sorted(attributes)
                           if k not in ("createdAt", "updatedAt"))
        attributes["digest"] = hashlib.sha256(payload.encode()).hexdigest()
        return {
            "type": resource_type,
            "id": identifier,
            "attributes": dict(sorted(attributes.items())),
            "relationships": {"account": {
                "data": {"type": "account", "id": self.account_id},
                "links": {"related": f"{api_url}/accounts/{self.account_id}"}}},
        }

    def as_booked(self, api_url):
        """The ``transaction`` resource once booked (listed from ``booking_date`` on)."""
        return self._resource("transaction", self.booked_id, self.booking_date, self.booking_date,
                              api_url, _stamp(self.booking_date, 1, 900))

    def as_pending(self, api_url):
        """The ``pendingTransaction`` resource (listed on ``made_on``)."""
        return self._resource("pendingTransaction", self.pending_id, self.made_on, self.made_on,
                              api_url, _stamp(self.made_on, 2, 100))


def _make(spec, booking_day, index):
    digest = hashlib.sha256(f"{SEED}|{spec['id']}|{booking_day.isoformat()}|{index}".encode()).digest()
    made_on = booking_day - timedelta(days=1)
    month = f"{MONTHS[made_on.month - 1]} {made_on.year}"
    number = 100 + _number(digest, 8, 9900)
    pick = _number(digest, 4, 10 ** 6)
    kind = _choose(MIXES[spec["profile"]], _number(digest, 0, 1000))
    if spec["profile"] == "business" and index == 0 and booking_day.day == 1:
        kind = "rent"
    attrs = {
        "currency": spec["currency"],
        "counterpartName": None, "counterpartReference": None,
        "remittanceInformation": None, "remittanceInformationType": "unstructured",
        "bankTransactionCode": None, "proprietaryBankTransactionCode": None,
        "purposeCode": None, "endToEndId": "NOTPROVIDED", "mandateId": None, "creditorId": None,
        "additionalInformation": None, "cardReference": None, "cardReferenceType": None,
        "fee": None,
        "internalReference": f"{booking_day.strftime('%Y%m%d')}{_number(digest, 24, 10 ** 6):06d}",
    }
    ogm = structured_communication(f"{_number(digest, 12, 10 ** 10):010d}")
    if kind == "rent":
        name = "Immo Sainte-Catherine SA"
        amount = Decimal("-2150.00")
        attrs.update(counterpartName=name, counterpartReference=counterparty_iban(name, "BE"),
                     description="Europese overschrijving",
                     remittanceInformation=structured_communication(
                         f"{made_on.year % 100:02d}{made_on.month:02d}004242"),
                     remittanceInformationType="structured", bankTransactionCode="PMNT-ICDT-ESCT")
    elif kind == "customer":
        name, country = CUSTOMERS[pick % len(CUSTOMERS)]
        amount = _amount(digest, 20, "80.00", "2400.00")
        structured = _number(digest, 16, 10) < 6
        attrs.update(counterpartName=name, counterpartReference=counterparty_iban(name, country),
                     description="Virement européen reçu", bankTransactionCode="PMNT-RCDT-ESCT",
                     remittanceInformation=ogm if structured
                     else f"Facture {made_on.year}/{number:05d}",
                     remittanceInformationType="structured" if structured else "unstructured",
                     endToEndId=hashlib.sha256(b"e2e" + digest).hexdigest()[:32])
    elif kind == "supplier":
        name, country = SUPPLIERS[pick % len(SUPPLIERS)]
        amount = -_amount(digest, 20, "60.00", "1800.00")
        structured = country == "BE" and _number(digest, 16, 10) < 6
        attrs.update(counterpartName=name, counterpartReference=counterparty_iban(name, country),
                     description="Europese overschrijving", bankTransactionCode="PMNT-ICDT-ESCT",
                     remittanceInformation=ogm if structured
                     else f"Invoice {made_on.year}-{number:04d}",
                     remittanceInformationType="structured" if structured else "unstructured")
    elif kind == "direct_debit":
        name, service = DIRECT_DEBITS[pick % len(DIRECT_DEBITS)]
        amount = -_amount(digest, 20, "25.00", "420.00")
        attrs.update(counterpartName=name, counterpartReference=counterparty_iban(name, "BE"),
                     description="Domiciliation européenne", bankTransactionCode="PMNT-IDDT-ESDD",
                     remittanceInformation=f"{service} {month} contrat {number:06d}",
                     mandateId=f"MDT{pick:07d}", creditorId=f"BE{_digits(name, 2)}ZZZ0{_digits(name, 9)}")
    elif kind in ("card", "foreign_card"):
        if kind == "card":
            name, city = MERCHANTS[pick % len(MERCHANTS)]
            info = None
        else:
            name, foreign = FOREIGN_MERCHANTS[pick % len(FOREIGN_MERCHANTS)]
            city = None
            info = f"Montant original {_amount(digest, 28, '5.00', '150.00')} {foreign}"
        amount = -_amount(digest, 20, "3.50", "180.00")
        attrs.update(counterpartName=name, description="Paiement par carte",
                     bankTransactionCode="PMNT-CCRD-POSD",
                     remittanceInformation=f"{name}{' ' + city if city else ''} "
                                           f"{made_on.strftime('%d/%m')}",
                     cardReference=f"{pick % 10000:04d}", cardReferenceType="MASKEDPAN",
                     additionalInformation=info)
    elif kind == "fee":
        amount = -_amount(digest, 20, "2.50", "15.00")
        attrs.update(description="Frais bancaires", bankTransactionCode="ACMT-MDOP-CHRG",
                     remittanceInformation=f"Frais de gestion {month}")
    elif kind == "refund":
        name, _city = MERCHANTS[pick % len(MERCHANTS)]
        amount = _amount(digest, 20, "5.00", "120.00")
        attrs.update(counterpartName=name, description="Remboursement",
                     bankTransactionCode="PMNT-CCRD-RIMB",
                     remittanceInformation=f"Remboursement commande {number:05d}")
    elif kind in ("transfer_in", "transfer_out"):
        name = "Ponto Demo Company SRL"
        amount = _amount(digest, 20, "100.00", "3000.00")
        amount = amount if kind == "transfer_in" else -amount
        attrs.update(counterpartName=name, counterpartReference=ACCOUNTS[0]["iban"],
                     description="Virement interne", bankTransactionCode="PMNT-ICDT-BOOK",
                     remittanceInformation="Épargne" if kind == "transfer_in" else "Retrait épargne")
    elif kind == "wire_in":
        name = US_CLIENTS[pick % len(US_CLIENTS)]
        amount = _amount(digest, 20, "200.00", "3500.00")
        attrs.update(counterpartName=name, description="Incoming international transfer",
                     bankTransactionCode="PMNT-RCDT-XBCT",
                     remittanceInformation=f"INV-{made_on.year}-{number:04d}")
    elif kind == "saas":
        name = SAAS[pick % len(SAAS)]
        amount = -_amount(digest, 20, "9.00", "600.00")
        attrs.update(counterpartName=name, description="Card payment",
                     bankTransactionCode="PMNT-CCRD-POSD",
                     remittanceInformation=f"{name} subscription {made_on.strftime('%m/%d')}",
                     cardReference=f"{pick % 10000:04d}", cardReferenceType="MASKEDPAN")
    else:  # wire_fee
        amount = Decimal("-15.00") if pick % 2 else Decimal("-25.00")
        attrs.update(description="Incoming wire fee", bankTransactionCode="ACMT-MDOP-CHRG",
                     remittanceInformation="Fee for incoming transfer")
    attrs["amount"] = float(amount)
    return BankTransaction(
        account_id=spec["id"],
        booked_id=make_uuid("booked", digest.hex()),
        pending_id=make_uuid("pending", digest.hex()),
        made_on=made_on,
        booking_date=booking_day,
        attributes=tuple(sorted(attrs.items())),
    )


@lru_cache(maxsize=50000)
def transactions_booking_on(account_id, booking_day, count):
    """The ``count`` transactions of an account that book on ``booking_day``, by index."""
    spec = find_account(account_id)
    return tuple(_make(spec, booking_day, index) for index in range(count))


@lru_cache(maxsize=50000)
def day_total(account_id, booking_day, count):
    return sum((Decimal(str(dict(t.attributes)["amount"]))
                for t in transactions_booking_on(account_id, booking_day, count)), Decimal("0.00"))
