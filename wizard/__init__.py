from . import account_online_connect_wizard
from . import account_online_account_selection
