"""Shared fixtures: a fresh vault, a seeded zh_CN Faker, record factories and one actor per role.

Fixtures here are deliberately small; put anything used by a single module in that module.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from faker import Faker

from ownervault import Actor, Vault
from ownervault.records import FeeAccount, OwnerProfile, Unit
from ownervault.testing import FrozenClock, InMemoryKey

#: Seed of the zh_CN Faker: every test sees the same synthetic owners.
FAKER_SEED = 20260101

#: Birth dates of generated adults; everyone is at least 20 on the FrozenClock's default day.
ADULT_BORN = (_dt.date(1940, 1, 1), _dt.date(2005, 12, 31))
MOVE_IN = (_dt.date(2000, 1, 1), _dt.date(2025, 12, 31))


# --------------------------------------------------------------------------- vault


@pytest.fixture
def clock() -> FrozenClock:
    """A clock frozen at 2026-01-01 09:00 UTC (move it with ``advance`` or ``set``)."""
    return FrozenClock()


@pytest.fixture
def root_key() -> InMemoryKey:
    """A random in-memory root key; reuse it to reopen the ``vault`` fixture."""
    return InMemoryKey()


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    """Where the ``vault`` fixture lives (does not exist until ``vault`` is requested)."""
    return tmp_path / "vault"


@pytest.fixture
def vault(vault_path: Path, root_key: InMemoryKey, clock: FrozenClock) -> Iterator[Vault]:
    """A new, empty vault with the default policy pack, closed after the test."""
    created = Vault.create(vault_path, key=root_key, clock=clock)
    try:
        yield created
    finally:
        created.close()


# --------------------------------------------------------------------------- synthetic people


@pytest.fixture(scope="session")
def _zh_faker() -> Faker:
    return Faker("zh_CN")


@pytest.fixture
def faker(_zh_faker: Faker) -> Faker:
    """A zh_CN Faker reseeded for every test (overrides Faker's own pytest fixture)."""
    _zh_faker.seed_instance(FAKER_SEED)
    _zh_faker.unique.clear()
    return _zh_faker


@pytest.fixture
def make_owner(faker: Faker) -> Callable[..., OwnerProfile]:
    """Factory of adult owners with unique subject ids, phones and ID numbers.

    Keyword arguments override any generated field (``make_owner(birth_date=None)``).
    """
    counter = itertools.count(1)

    def make(**overrides: Any) -> OwnerProfile:
        values: dict[str, Any] = {
            "subject_id": f"owner-{next(counter):05d}-{faker.hexify('^^^^^^^^')}",
            "name": faker.name(),
            "gender": faker.random_element(("male", "female")),
            "phone": faker.unique.phone_number(),
            "id_type": "resident_id",
            "id_number": faker.unique.ssn(),
            "email": faker.unique.email(),
            "birth_date": faker.date_between_dates(*ADULT_BORN),
            "emergency_contact_name": faker.name(),
            "emergency_contact_phone": faker.unique.phone_number(),
            "move_in_date": faker.date_between_dates(*MOVE_IN),
        }
        values.update(overrides)
        return OwnerProfile(**values)

    return make


@pytest.fixture
def make_unit(faker: Faker) -> Callable[..., Unit]:
    """Factory of units for a subject, with an address-like unit number."""

    def make(subject_id: str, **overrides: Any) -> Unit:
        building = faker.random_int(1, 30)
        values: dict[str, Any] = {
            "subject_id": subject_id,
            "community": f"{faker.last_name()}园小区",
            "building": f"{building}号楼",
            "unit_number": (
                f"{faker.street_address()}{building}栋{faker.random_int(1, 6)}单元"
                f"{faker.random_int(101, 3204)}室"
            ),
            "floor_area": Decimal(faker.random_int(4000, 30000)) / 100,
            "relation": "owner",
        }
        values.update(overrides)
        return Unit(**values)

    return make


@pytest.fixture
def make_fee_account(faker: Faker) -> Callable[..., FeeAccount]:
    """Factory of property-fee accounts for a subject, with a full billing address."""

    def make(subject_id: str, **overrides: Any) -> FeeAccount:
        values: dict[str, Any] = {
            "subject_id": subject_id,
            "account_number": f"FA{faker.unique.random_number(digits=10, fix_len=True)}",
            "billing_address": faker.address(),
            "balance": Decimal(faker.random_int(0, 500000)) / 100,
            "fee_rate": Decimal("2.50"),
        }
        values.update(overrides)
        return FeeAccount(**values)

    return make


# --------------------------------------------------------------------------- actors


@pytest.fixture
def clerk() -> Actor:
    """Front desk: registers owners (owner_registration), complaints, renovations."""
    return Actor("clerk-01", roles=["front_desk"])


@pytest.fixture
def guard() -> Actor:
    """Security: visitor_verification (masked name and phone) and emergency_contact."""
    return Actor("guard-01", roles=["security"])


@pytest.fixture
def finance() -> Actor:
    """Finance: fee_collection (fee accounts and payments)."""
    return Actor("finance-01", roles=["finance"])


@pytest.fixture
def engineer() -> Actor:
    """Engineering: repair_dispatch (may only change a complaint's status)."""
    return Actor("engineer-01", roles=["engineering"])


@pytest.fixture
def dpo() -> Actor:
    """Compliance officer: subject_access_request (sees everything) and erasure_request."""
    return Actor("dpo-01", roles=["compliance_officer"])


@pytest.fixture
def admin() -> Actor:
    """Administrator: vault_administration only (no personal field)."""
    return Actor("admin-01", roles=["admin"])
