"""Tests for the example service in examples/frontdesk: FastAPI's TestClient against a vault.

The service is the one ``uvicorn examples.frontdesk.app:app`` runs; here it is built with
``create_app(vault)`` around a vault the test owns (or, in one test, the vault it opens from
the environment as in production).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import ownervault as ov
from examples.frontdesk import app as frontdesk
from ownervault.exceptions import KeyProviderError, VaultLockedError
from ownervault.testing import FrozenClock, InMemoryKey

CLERK = {"Authorization": "Bearer demo-clerk"}
GUARD = {"Authorization": "Bearer demo-guard"}
FINANCE = {"Authorization": "Bearer demo-finance"}
DPO = {"Authorization": "Bearer demo-dpo"}
OWNER = {
    "subject_id": "owner-1",
    "name": "张三",
    "phone": "13800138000",
    "id_type": "resident_id",
    "id_number": "11010119900307002X",
}
EVIDENCE = hashlib.sha256(b"signed consent form, owner-1").hexdigest()


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[ov.Vault]:
    """A new vault with the default policy pack, on a clock frozen in working hours, made as
    the service makes its own: the demo users granted their roles by its setup actor."""
    with ov.Vault.create(
        tmp_path / "vault",
        key=InMemoryKey(),
        clock=FrozenClock(),
        creator=frontdesk.SETUP_ACTOR.actor_id,
    ) as created:
        frontdesk.grant_demo_users(created)
        frontdesk.assess_demo_purposes(created)
        yield created


@pytest.fixture
def client(vault: ov.Vault) -> Iterator[TestClient]:
    """The service around ``vault``, started and stopped as uvicorn would."""
    with TestClient(frontdesk.create_app(vault)) as test_client:
        yield test_client


def _register(client: TestClient) -> str:
    response = client.post("/owners", json=OWNER, headers=CLERK)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["subject_id"] == "owner-1"
    return str(body["record_id"])


def test_registered_owners_are_shown_to_each_role_as_the_policy_says(client: TestClient) -> None:
    """A clerk sees the profile with the ID number masked; a guard sees name and phone masked."""
    record_id = _register(client)
    clerk = client.get(f"/owners/{record_id}", headers=CLERK).json()
    assert clerk["subject_id"] == "owner-1" and clerk["version"] == 1
    assert clerk["fields"]["name"] == {"value": "张三", "view": "full"}
    assert clerk["fields"]["id_number"] == {"value": "1101**********002X", "view": "masked"}
    assert clerk["fields"]["email"] == {"value": None, "view": "full"}
    guard = client.get(
        f"/owners/{record_id}", params={"purpose": "visitor_verification"}, headers=GUARD
    ).json()
    assert guard["fields"]["name"] == {"value": "张*", "view": "masked"}
    assert guard["fields"]["phone"] == {"value": "138****8000", "view": "masked"}
    assert "id_number" not in guard["fields"]


def test_owners_are_found_by_a_normalised_phone_number(client: TestClient) -> None:
    """A search by phone typed with spaces finds the owner; a search with no criterion is 422."""
    record_id = _register(client)
    found = client.get("/owners", params={"phone": "+86 138 0013 8000"}, headers=CLERK)
    assert found.status_code == 200
    assert [owner["record_id"] for owner in found.json()] == [record_id]
    assert found.json()[0]["fields"]["phone"] == {"value": "13800138000", "view": "full"}
    billing = {"phone": "138 0013 8000", "purpose": "fee_collection"}
    found = client.get("/owners", params=billing, headers=FINANCE)
    assert [owner["record_id"] for owner in found.json()] == [record_id]
    assert found.json()[0]["fields"]["phone"] == {"value": "138****8000", "view": "masked"}
    assert client.get("/owners", params={"phone": "13900000000"}, headers=CLERK).json() == []
    assert client.get("/owners", headers=CLERK).status_code == 422


def test_a_guard_may_not_search_by_the_phone_it_sees_masked(client: TestClient) -> None:
    """The gate sees phones masked, so a search by phone is 403 search_field_masked."""
    _register(client)
    refused = client.get(
        "/owners",
        params={"phone": "13800138000", "purpose": "visitor_verification"},
        headers=GUARD,
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "policy_denied"
    assert refused.json()["reason"] == "search_field_masked"
    assert "13800138000" not in refused.text


def test_requests_without_a_known_bearer_token_are_refused(client: TestClient) -> None:
    """No token, an unknown token or another scheme is answered 401 with a Bearer challenge."""
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic demo-clerk"}):
        response = client.post("/owners", json=OWNER, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_purpose_the_role_may_not_act_for_is_403_with_the_policy_reason(
    client: TestClient,
) -> None:
    """A guard registering an owner is refused 403 with the policy's reason code."""
    response = client.post("/owners", json=OWNER, headers=GUARD)
    assert response.status_code == 403
    assert response.json()["error"] == "policy_denied"
    assert response.json()["reason"] == "role_not_permitted_for_purpose"


def test_consent_screens_grant_list_and_withdraw(client: TestClient) -> None:
    """A consent-based read is 403 with the consent reason until granted, and after withdrawal."""
    record_id = _register(client)
    events = {"purpose": "community_events"}
    missing = client.get(f"/owners/{record_id}", params=events, headers=CLERK)
    assert missing.status_code == 403
    assert missing.json()["error"] == "consent_required"
    assert missing.json()["reason"] == "consent_missing"

    granted = client.post(
        "/subjects/owner-1/consents",
        json={"purpose": "community_events", "channel": "paper", "evidence": EVIDENCE},
        headers=CLERK,
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["event"] == "grant"
    assert client.get(f"/owners/{record_id}", params=events, headers=CLERK).status_code == 200

    withdrawn = client.post(
        "/subjects/owner-1/consents/community_events/withdrawal",
        json={"channel": "app"},
        headers=CLERK,
    )
    assert withdrawn.status_code == 200 and withdrawn.json()["event"] == "withdraw"
    ledger = client.get("/subjects/owner-1/consents", headers=CLERK).json()
    assert [(c["event"], c["purpose"]) for c in ledger] == [
        ("grant", "community_events"),
        ("withdraw", "community_events"),
    ]
    after = client.get(f"/owners/{record_id}", params=events, headers=CLERK)
    assert after.status_code == 403 and after.json()["reason"] == "consent_withdrawn"


def test_unknown_owners_are_404_and_invalid_requests_422(client: TestClient) -> None:
    """A missing record is 404; a malformed body and a request the vault refuses are 422."""
    _register(client)
    missing = client.get("/owners/0123456789abcdef0123456789abcdef", headers=CLERK)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.get("/subjects/nobody/consents", headers=CLERK).status_code == 404
    bad_body = client.post("/owners", json={**OWNER, "shoe_size": 42}, headers=CLERK)
    assert bad_body.status_code == 422
    not_consent_based = client.post(
        "/subjects/owner-1/consents",
        json={"purpose": "owner_registration", "channel": "paper", "evidence": EVIDENCE},
        headers=CLERK,
    )
    assert not_consent_based.status_code == 422
    assert not_consent_based.json()["error"] == "invalid"


def test_a_subject_access_request_returns_the_owners_export(client: TestClient) -> None:
    """The compliance officer gets the owner's export; a clerk is refused 403."""
    _register(client)
    check = {"checked_by": "clerk-01", "method": "id_document_in_person"}
    export = client.post("/subjects/owner-1/access-request", json=check, headers=DPO)
    assert export.status_code == 200, export.text
    document = export.json()
    assert document["format"] == "ownervault-subject-export"
    assert document["subject_id"] == "owner-1"
    assert document["records"][0]["fields"]["name"] == "张三"
    refused = client.post("/subjects/owner-1/access-request", json=check, headers=CLERK)
    assert refused.status_code == 403 and refused.json()["error"] == "policy_denied"


class _LockedVault:
    """A vault that has failed closed: every session is refused."""

    vault_id = "locked"

    def session(self, actor: ov.Actor, purpose: str) -> ov.Session:
        raise VaultLockedError("the vault is locked after an integrity failure")


def test_a_locked_vault_is_503(tmp_path: Path) -> None:
    """When the vault is locked every request is answered 503 with the code vault_locked."""
    app = frontdesk.create_app(_LockedVault())  # type: ignore[arg-type]
    with TestClient(app) as client:
        response = client.post("/owners", json=OWNER, headers=CLERK)
    assert response.status_code == 503
    assert response.json()["error"] == "vault_locked"


def test_the_service_opens_the_vault_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started without a vault, the service creates one from FRONTDESK_* and closes it after."""
    key_file = tmp_path / "root.key"
    ov.KeyFileKey.generate(key_file)
    monkeypatch.setenv("FRONTDESK_VAULT", str(tmp_path / "from-env"))
    monkeypatch.setenv("FRONTDESK_KEY_FILE", str(key_file))
    with TestClient(frontdesk.create_app()) as client:
        vault_id = client.get("/healthz").json()["vault"]
        _register(client)
    with ov.Vault.open(tmp_path / "from-env", key=ov.KeyFileKey(key_file)) as reopened:
        assert reopened.vault_id == vault_id
    with TestClient(frontdesk.create_app()) as client:
        assert client.get("/healthz").json()["vault"] == vault_id
    monkeypatch.delenv("FRONTDESK_KEY_FILE")
    monkeypatch.delenv("OWNERVAULT_PASSPHRASE", raising=False)
    with pytest.raises(KeyProviderError), TestClient(frontdesk.create_app()):
        pass
