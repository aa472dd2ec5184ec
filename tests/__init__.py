from . import test_connect
from . import test_sync
from . import test_failures
from . import test_cron
from . import test_security
from . import test_consent_http
from . import test_lifecycle
from . import test_duplicates
