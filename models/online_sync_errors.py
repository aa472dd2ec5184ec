"""What the accountant reads when a provider call fails: a title and what to do, per category."""
from ..services.errors import ErrorCategory


def error_title(env, category):
    _ = env._
    return {
        ErrorCategory.AUTH_INVALID: _("The provider refused our application credentials"),
        ErrorCategory.AUTH_EXPIRED: _("Your bank consent has expired or was revoked"),
        ErrorCategory.USER_ACTION_REQUIRED: _("Your bank needs you to act"),
        ErrorCategory.RATE_LIMITED: _("The bank limits how often it can be queried"),
        ErrorCategory.INSTITUTION_DOWN: _("Your bank is not answering"),
        ErrorCategory.NOT_READY: _("The bank is still preparing your data"),
        ErrorCategory.NOT_FOUND: _("The bank no longer knows this account or connection"),
        ErrorCategory.BAD_REQUEST: _("The bank rejected the request"),
        ErrorCategory.PROVIDER_ERROR: _("The provider had an internal error"),
        ErrorCategory.NETWORK: _("The provider could not be reached"),
    }[ErrorCategory(category)]


def error_advice(env, category):
    _ = env._
    return {
        ErrorCategory.AUTH_INVALID: _(
            "Ask your administrator to check the provider's client id and secret under "
            "Accounting > Configuration > Online Synchronization > Providers."),
        ErrorCategory.AUTH_EXPIRED: _(
            "Reconnect the bank (Reconnect on the connection or on the journal's dashboard card) "
            "and give your consent again. No transaction is lost: the next synchronization "
            "resumes where the last one ended."),
        ErrorCategory.USER_ACTION_REQUIRED: _(
            "Open the connection and follow the bank's instructions, then use Synchronize Now."),
        ErrorCategory.RATE_LIMITED: _(
            "Nothing to do: the next attempt is scheduled automatically once the bank allows it."),
        ErrorCategory.INSTITUTION_DOWN: _(
            "Try again later; the next automatic synchronization will retry."),
        ErrorCategory.NOT_READY: _(
            "Wait a few minutes and synchronize again."),
        ErrorCategory.NOT_FOUND: _(
            "Reconnect the bank; if the account was closed, unlink it from its journal."),
        ErrorCategory.BAD_REQUEST: _(
            "Report this error to your Odoo partner with the reference below."),
        ErrorCategory.PROVIDER_ERROR: _(
            "Try again later. If it keeps failing, report it with the reference below."),
        ErrorCategory.NETWORK: _(
            "Check the server's internet access, then try again. The next automatic "
            "synchronization will retry."),
    }[ErrorCategory(category)]


# Static, so Odoo exports and translates the labels like any selection field.
ERROR_CATEGORY_SELECTION = [
    (ErrorCategory.AUTH_INVALID.value, "Invalid credentials"),
    (ErrorCategory.AUTH_EXPIRED.value, "Consent expired"),
    (ErrorCategory.USER_ACTION_REQUIRED.value, "Action required"),
    (ErrorCategory.RATE_LIMITED.value, "Rate limited"),
    (ErrorCategory.INSTITUTION_DOWN.value, "Bank unavailable"),
    (ErrorCategory.NOT_READY.value, "Not ready"),
    (ErrorCategory.NOT_FOUND.value, "Not found"),
    (ErrorCategory.BAD_REQUEST.value, "Bad request"),
    (ErrorCategory.PROVIDER_ERROR.value, "Provider error"),
    (ErrorCategory.NETWORK.value, "Network"),
]
