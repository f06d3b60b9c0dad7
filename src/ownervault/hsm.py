"""PKCS#11 root keys (HSMs, smart cards, SoftHSM2): kept importable as ``ownervault.hsm``.

The code lives in :mod:`ownervault.keys.pkcs11`; this module re-exports its public names.
``python-pkcs11`` is imported only when a token is used (install ``ownervault[hsm]``).
"""

from .keys.pkcs11 import MECHANISM, Pkcs11Key, Pkcs11RootKey

__all__ = ["MECHANISM", "Pkcs11Key", "Pkcs11RootKey"]
