"""The kernel: one transaction of decide -> encrypt/decrypt -> audit, and nothing else.

Owns the only place that holds storage, keys and the audit log together. Its
package-internal interface, for the features above it (``rights``, ``breach``, ``keys.admin``)
and for the facade (``ownervault.vault``):

* :class:`Kernel` (:mod:`.core`) -- an open vault: ``backend``, ``audit``, ``policy``,
  ``clock``, ``keys`` (:class:`KeyStore`, :mod:`.keystore`), the fail-closed lock, audit
  entries in the system's or an admin's name, signatures, the header; :meth:`Kernel.access`
  opens an :class:`Access` for an actor :func:`~.grants.admit` checked against the vault's
  grants (:mod:`.grants`; :class:`GrantBook` in :mod:`.authority` changes them), and refuses
  a purpose that needs an impact assessment without a current one (:mod:`.assessments`;
  :class:`AssessmentBook` in :mod:`.assessment_book` keeps the register).
  :func:`create_kernel` and :func:`open_kernel` (:mod:`.opening`) make one.
* :class:`Access` (:mod:`.core`) -- one actor acting for one purpose: audit entries, commits,
  denials, the session's :class:`Decider` (:mod:`.decide`).
* operations taking an :class:`Access`: :mod:`.writes` (``put_many``, ``update``),
  :mod:`.reads` (``get_many``, ``find``), :mod:`.ledger` (consents, access history),
  :mod:`.erase` (crypto-shredding with a signed receipt), :mod:`.explain`, :mod:`.exports`
  (the audit log exported for compliance officers).
* :mod:`.authenticate` -- the actor a credential identifies, asked of the vault's
  :class:`~ownervault.authn.Authenticator`, accepted and refused credentials audited.
* ``ownervault check``: :func:`check_kernel` and :func:`check_location` (:mod:`.check`, one
  function per kind of check; the deep checks of every row in :mod:`.scrub`; findings and
  reports in :mod:`.findings`). They write nothing.

Imports ``policy``, ``audit``, ``keys``, ``crypto``, ``authn``, ``storage``, ``records`` and
``exceptions``; never a feature or the facade.
"""

from .assessment_book import AssessmentBook
from .assessments import Assessment, AssessmentStatus
from .authority import GrantBook
from .check import check_kernel, check_location
from .clock import Clock, SystemClock
from .core import ADMIN_PURPOSE, INVESTIGATOR_ROLE, SYSTEM_ACTOR, Access, Kernel
from .decide import Decider
from .erase import ErasureResult, held
from .explain import explain
from .findings import CheckFinding, CheckReport
from .grants import Grant
from .keystore import AUTO_ROTATE_AT, KeyStore, key_info, subject_context
from .opening import create_kernel, load_pack, open_kernel
from .views import RecordRef, RecordView

__all__ = [
    "ADMIN_PURPOSE",
    "AUTO_ROTATE_AT",
    "INVESTIGATOR_ROLE",
    "SYSTEM_ACTOR",
    "Access",
    "Assessment",
    "AssessmentBook",
    "AssessmentStatus",
    "CheckFinding",
    "CheckReport",
    "Clock",
    "Decider",
    "ErasureResult",
    "Grant",
    "GrantBook",
    "Kernel",
    "KeyStore",
    "RecordRef",
    "RecordView",
    "SystemClock",
    "check_kernel",
    "check_location",
    "create_kernel",
    "explain",
    "held",
    "key_info",
    "load_pack",
    "open_kernel",
    "subject_context",
]
