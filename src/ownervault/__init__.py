"""ownervault: encrypted, policy-checked and audited storage of property owners' records.

::

    import ownervault as ov

    with ov.Vault.open("vault/", key=ov.PassphraseKey("...")) as vault:
        clerk = ov.Actor("clerk-01", roles=["front_desk"])  # granted front_desk (vault.grants)
        with vault.session(clerk, purpose="owner_registration") as s:
            rid = s.put(ov.records.OwnerProfile(subject_id="owner-1", name="张三"))
            view = s.get(ov.records.OwnerProfile, rid)
"""

from . import exceptions, handover, records
from .authn import Identity, JWTAuthenticator
from .kernel import Assessment, AssessmentStatus, CheckFinding
from .keys import EnvKey, KeyFileKey, KeyInfo, KeyState, PassphraseKey
from .policy import Actor, Decision, FieldView, Policy, PrivacyNotice, ViewMode, load_policy
from .records import Classification, Record
from .vault import (
    CheckReport,
    DeletionResult,
    ErasureResult,
    KeyStatus,
    RecordRef,
    RecordView,
    Session,
    Vault,
)

__version__ = "0.1.0"

__all__ = [
    "Actor",
    "Assessment",
    "AssessmentStatus",
    "CheckFinding",
    "CheckReport",
    "Classification",
    "Decision",
    "DeletionResult",
    "EnvKey",
    "ErasureResult",
    "FieldView",
    "Identity",
    "JWTAuthenticator",
    "KeyFileKey",
    "KeyInfo",
    "KeyState",
    "KeyStatus",
    "PassphraseKey",
    "Policy",
    "PrivacyNotice",
    "Record",
    "RecordRef",
    "RecordView",
    "Session",
    "Vault",
    "ViewMode",
    "__version__",
    "exceptions",
    "handover",
    "load_policy",
    "records",
]
