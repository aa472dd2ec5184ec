"""``ProxyClient``: the one façade the Odoo models call.

By default it runs the provider adapter in-process. A remote proxy (one provider contract shared
by many databases) would implement the same methods over HTTP; the models would not change.
"""
from .providers import get_adapter_class
from .types import Consent, ConsentStatus


class ProxyClient:
    def __init__(self, provider_code, config, **transport_options):
        self.provider_code = provider_code
        self.adapter = get_adapter_class(provider_code)(config, **transport_options)

    @property
    def max_history_days(self):
        return self.adapter.max_history_days

    @property
    def uses_pkce(self):
        return self.adapter.uses_pkce

    @staticmethod
    def consent(provider_code, external_id, secrets, *, valid_until=None, cursor=None,
                institution_id=None):
        """Rebuild a ``Consent`` from what the database keeps."""
        return Consent(provider=provider_code, external_id=external_id,
                       institution_id=institution_id, status=ConsentStatus.ACTIVE,
                       created_at=None, valid_until=valid_until, secrets=dict(secrets or {}),
                       sync_cursor=cursor)

    def institutions(self, country=None, query=None):
        return self.adapter.list_institutions(country=country, query=query)

    def start_consent(self, institution_id, redirect_uri, state, **options):
        return self.adapter.start_consent(institution_id, redirect_uri, state, **options)

    def complete_consent(self, callback_params, redirect_uri, **options):
        return self.adapter.complete_consent(callback_params, redirect_uri, **options)

    def accounts(self, consent):
        return self.adapter.list_accounts(consent)

    def balances(self, consent, account_external_id):
        return self.adapter.get_balances(consent, account_external_id)

    def transactions(self, consent, account_external_id, date_from, date_to, cursor=None):
        return self.adapter.fetch_transactions(consent, account_external_id, date_from, date_to,
                                               cursor=cursor)

    def revoke(self, consent):
        return self.adapter.revoke_consent(consent)
