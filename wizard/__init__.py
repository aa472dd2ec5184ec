from . import account_online_connect_wizard
from . import account_online_account_selection
from . import account_duplicate_transaction_wizard
from . import account_bank_statement_import
