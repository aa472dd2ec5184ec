"""One identity for every bank transaction, whatever brought it (a provider or a file).

A transaction is recognised as already in the journal in two ways:

1. its identifier (source, account key, the source's own id) is already stored;
2. by content: per day and amount, the journal should hold as many lines as the source that saw
   the most. When a source shows N transactions of 12.50 on 3 May and the journal already holds M
   identified lines of 12.50 on 3 May (from any source, under any id), only N - M are new.

The second rule is what lets a file overlap an online synchronization (and the other way round),
and what absorbs a bank that re-issues a booked transaction under a new id, without ever
dropping a genuinely new transaction: two coffees at the same price on one day are two lines as
soon as one source shows two. Lines without an identifier (typed by hand, opening balances) are
not counted: the Find Duplicates wizard is there for those.
"""
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

SKIP_SAME_IDENTIFIER = "identifier"
SKIP_TWICE_IN_BATCH = "batch"
SKIP_SAME_CONTENT = "content"


def content_key(day, amount):
    """(day, amount rounded to the cent) — how lines are compared across sources."""
    return day, Decimal(amount).quantize(Decimal("0.01"))


@dataclass
class ImportPlan:
    new: list = field(default_factory=list)
    #: [(transaction, reason)] with reason one of the SKIP_* constants
    skipped: list = field(default_factory=list)

    def skipped_count(self, reason=None):
        return sum(1 for _txn, why in self.skipped if reason is None or why == reason)


def plan_import(transactions, identifier, known_identifiers, existing_counts):
    """Which of ``transactions`` (booked, one source, one account) to create.

    ``identifier(txn)`` is the identifier stored on the line; ``known_identifiers`` the subset of
    those already in the journal; ``existing_counts`` maps ``content_key`` to the number of
    identified lines the journal already holds with that day and amount.
    """
    plan = ImportPlan()
    seen = set()
    candidates = []
    incoming = Counter()
    for txn in transactions:
        key = identifier(txn)
        if key in seen:
            plan.skipped.append((txn, SKIP_TWICE_IN_BATCH))
            continue
        seen.add(key)
        incoming[content_key(txn.date, txn.amount)] += 1
        if key in known_identifiers:
            plan.skipped.append((txn, SKIP_SAME_IDENTIFIER))
        else:
            candidates.append(txn)
    room = {key: max(0, count - existing_counts.get(key, 0)) for key, count in incoming.items()}
    for txn in sorted(candidates, key=lambda t: (t.date, identifier(t))):
        key = content_key(txn.date, txn.amount)
        if room[key] > 0:
            room[key] -= 1
            plan.new.append(txn)
        else:
            plan.skipped.append((txn, SKIP_SAME_CONTENT))
    return plan
