from . import consent
from . import webhooks
