"""Provider registry: adapter classes by code."""
_REGISTRY = {}


def register(adapter_class):
    """Class decorator: make an adapter available under its ``code``."""
    if not adapter_class.code:
        raise ValueError("an adapter needs a code")
    _REGISTRY[adapter_class.code] = adapter_class
    return adapter_class


def get_adapter_class(code):
    try:
        return _REGISTRY[code]
    except KeyError:
        raise KeyError(f"unknown provider {code!r}; known: {sorted(_REGISTRY)}") from None


def callback_state_params():
    """Every query parameter name a provider uses to send our ``state`` back."""
    return sorted({cls.callback_state_param for cls in _REGISTRY.values()})


def available_providers():
    """(code, label) pairs of every registered provider, sorted by label."""
    return sorted(((code, cls.label) for code, cls in _REGISTRY.items()), key=lambda p: p[1])


# Importing the adapter modules registers them.
from . import enablebanking  # noqa: E402,F401
from . import gocardless  # noqa: E402,F401
from . import plaid  # noqa: E402,F401
from . import ponto  # noqa: E402,F401
from . import saltedge  # noqa: E402,F401
from . import sandbox  # noqa: E402,F401
from . import yodlee  # noqa: E402,F401
