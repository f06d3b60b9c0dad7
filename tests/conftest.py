"""Shared fixtures: a fresh vault, a seeded zh_CN Faker, record factories and one actor per role.

Fixtures here are deliberately small; put anything used by a single module in that module.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from faker import Faker

import pg
from ownervault import Actor, Vault
from ownervault.records import FeeAccount, OwnerProfile, Unit
from ownervault.testing import FrozenClock, InMemoryKey, grant_roles, record_assessments

#: Seed of the zh_CN Faker: every test sees the same synthetic owners.
FAKER_SEED = 20260101

#: Birth dates of generated adults; everyone is at least 20 on the FrozenClock's default day.
ADULT_BORN = (_dt.date(1940, 1, 1), _dt.date(2005, 12, 31))
MOVE_IN = (_dt.date(2000, 1, 1), _dt.date(2025, 12, 31))

#: One actor per role of the shipped pack (the fixtures below); the ``vault`` fixture grants
#: each its role.
STAFF = (
    Actor("clerk-01", roles=["front_desk"]),
    Actor("guard-01", roles=["security"]),
    Actor("finance-01", roles=["finance"]),
    Actor("engineer-01", roles=["engineering"]),
    Actor("dpo-01", roles=["compliance_officer"]),
    Actor("admin-01", roles=["admin"]),
    Actor("manager-01", roles=["manager"]),
)


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
def vault(vault_location: Path | str, root_key: InMemoryKey, clock: FrozenClock) -> Iterator[Vault]:
    """A new, empty vault with the default policy pack, closed after the test."""
    created = Vault.create(vault_location, key=root_key, clock=clock)
    grant_roles(created, *STAFF)
    record_assessments(created)
    try:
        yield created
    finally:
        created.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``slow`` unless the ``-m`` expression selects them."""
    expression = config.option.markexpr or ""
    if "slow" in expression and "not slow" not in expression:
        return
    skip = pytest.mark.skip(reason="slow test: select it with -m slow")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


# --------------------------------------------------------------------------- backends
#
# A module marked ``pytestmark = pytest.mark.backends("sqlcipher", "postgres")`` runs every
# test that (indirectly) uses the ``backend`` fixture -- ``vault``, ``vault_location`` and
# ``new_location`` do -- once per backend. Tests marked ``embedded_only`` run on SQLCipher
# only. Other modules use SQLCipher. ``-m postgres`` selects the PostgreSQL runs, ``-m "not
# postgres"`` leaves them out.

BACKENDS = ("sqlcipher", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend`` over the backends a module's ``backends`` marker names."""
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is None:
        return
    names = [name for name in marker.args if name in BACKENDS]
    if metafunc.definition.get_closest_marker("embedded_only") is not None:
        names = [name for name in names if name == "sqlcipher"]
    metafunc.parametrize(
        "backend",
        [pytest.param(n, marks=[pytest.mark.postgres] if n == "postgres" else []) for n in names],
    )


@pytest.fixture
def backend() -> str:
    """The storage backend under test (``sqlcipher`` unless the module's marker adds more)."""
    return "sqlcipher"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL maintenance database: $OWNERVAULT_TEST_POSTGRES or a throwaway one.

    Skips when neither psycopg nor the server binaries are there, except under CI (``CI`` set),
    where a missing server fails the run instead.
    """
    missing: str | None = None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing = "psycopg is not installed (pip install 'ownervault[postgres]')"
    if missing is None and not os.environ.get(pg.ENV_URL) and pg.bin_dir() is None:
        missing = (
            f"no PostgreSQL server: set {pg.ENV_URL} or install the server binaries "
            "(initdb, pg_ctl)"
        )
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs PostgreSQL for the backend suite: {missing}")
        pytest.skip(missing)
    with pg.server() as url:
        yield url


@pytest.fixture
def pg_database(postgres_server: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    url = pg.create_database(postgres_server)
    try:
        yield url
    finally:
        pg.drop_database(postgres_server, url)


@pytest.fixture
def new_location(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Path | str]]:
    """Factory of fresh, empty vault locations on the backend under test (cleaned up after)."""
    made: list[str] = []
    counter = itertools.count(1)
    server = request.getfixturevalue("postgres_server") if backend == "postgres" else ""

    def make() -> Path | str:
        if backend == "sqlcipher":
            return tmp_path / f"vault-{next(counter)}"
        made.append(pg.create_database(server))
        return made[-1]

    yield make
    for url in made:
        pg.drop_database(server, url)


@pytest.fixture
def vault_location(backend: str, vault_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where the ``vault`` fixture lives: ``vault_path``, or a fresh PostgreSQL database."""
    if backend == "sqlcipher":
        return vault_path
    url: str = request.getfixturevalue("pg_database")
    return url


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
