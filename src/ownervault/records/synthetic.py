"""A seeded synthetic community for demos and drills: no real person's data, ever.

The generator is deliberately small and dependency-free (the tests use Faker's ``zh_CN``
locale instead). ID numbers carry a valid GB 11643 check digit so that they look like the real
thing to normalisers and maskers, but the region, birth date and sequence are random.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Iterable, Iterator
from decimal import Decimal

import attrs

from .logs import GateEvent, ParkingEvent, VisitorEntry
from .model import Record
from .types import FeeAccount, OwnerProfile, Unit, Vehicle

__all__ = ["SyntheticOwner", "synthetic_community", "synthetic_logs"]

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
    "郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
)
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
    "桂英华玉兰萍红建国志文辉鹏宇浩然欣怡子涵梓轩雨桐思远佳琪"
)
_PHONE_PREFIXES = (
    "130",
    "131",
    "132",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "158",
    "186",
    "188",
)
_REGIONS = (
    "110101",
    "110105",
    "310104",
    "310115",
    "440103",
    "440305",
    "320102",
    "330106",
    "510107",
)
_COMMUNITIES = ("阳光花园", "翠湖苑", "锦绣华庭", "滨江名邸")
_PROVINCES = "京沪粤苏浙川"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _id_number(rng: random.Random, born: _dt.date) -> str:
    body = f"{rng.choice(_REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    total = sum(int(d) * w for d, w in zip(body, _ID_WEIGHTS, strict=True))
    return body + _ID_CHECK[total % 11]


@attrs.frozen
class SyntheticOwner:
    """One synthetic owner and their records."""

    subject_id: str
    profile: OwnerProfile
    unit: Unit
    vehicle: Vehicle | None
    fee_account: FeeAccount

    def records(self) -> list[Record]:
        """Every record of this owner."""
        out: list[Record] = [self.profile, self.unit, self.fee_account]
        if self.vehicle is not None:
            out.append(self.vehicle)
        return out


def synthetic_community(count: int, *, seed: int = 2026) -> Iterator[SyntheticOwner]:
    """Yield ``count`` synthetic owners, reproducibly for a given seed."""
    rng = random.Random(seed)
    for n in range(count):
        subject_id = f"demo-owner-{n + 1:05d}"
        born = _dt.date(1950, 1, 1) + _dt.timedelta(days=rng.randrange(365 * 50))
        name = rng.choice(_SURNAMES) + "".join(
            rng.choice(_GIVEN) for _ in range(rng.choice((1, 2)))
        )
        phone = rng.choice(_PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        community = rng.choice(_COMMUNITIES)
        building = f"{rng.randrange(1, 21)}栋"
        unit_number = f"{rng.randrange(1, 5)}单元{rng.randrange(1, 33)}{rng.randrange(1, 5):02d}"
        profile = OwnerProfile(
            subject_id=subject_id,
            name=name,
            gender=rng.choice(("male", "female")),
            phone=phone,
            id_type="resident_id",
            id_number=_id_number(rng, born),
            email=f"owner{n + 1}@example.com",
            birth_date=born,
            emergency_contact_name=rng.choice(_SURNAMES) + rng.choice(_GIVEN),
            emergency_contact_phone=rng.choice(_PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}",
            move_in_date=_dt.date(2015, 1, 1) + _dt.timedelta(days=rng.randrange(3650)),
        )
        unit = Unit(
            subject_id=subject_id,
            community=community,
            building=building,
            unit_number=unit_number,
            floor_area=Decimal(rng.randrange(6000, 18000)) / 100,
            ownership_certificate_number=f"京({born.year})不动产权第{rng.randrange(10**7):07d}号",
        )
        vehicle = None
        if rng.random() < 0.6:
            plate = rng.choice(_PROVINCES) + rng.choice("ABCDE") + f"{rng.randrange(10**5):05d}"
            vehicle = Vehicle(
                subject_id=subject_id, plate=plate, parking_space=f"B{rng.randrange(1, 400)}"
            )
        account = FeeAccount(
            subject_id=subject_id,
            account_number=f"WY{n + 1:08d}",
            billing_address=f"{community}{building}{unit_number}",
            balance=Decimal(rng.randrange(-50000, 200000)) / 100,
            fee_rate=Decimal("2.80"),
        )
        yield SyntheticOwner(subject_id, profile, unit, vehicle, account)


def synthetic_logs(
    owners: Iterable[SyntheticOwner],
    *,
    start: _dt.datetime,
    visits: int = 1,
    seed: int = 2026,
) -> Iterator[Record]:
    """Yield a synthetic gate, car-park and visitor log for ``owners``, reproducibly.

    Per owner: one passage in and one out through a gate, a car-park stay for an owner with a
    vehicle, and ``visits`` visitors (pass numbers ``demo-visit-NNNNN``) calling on them, each
    with a gate passage of their own. Times start at ``start`` (timezone-aware). ID documents
    are not recorded, as most offices need none.
    """
    rng = random.Random(seed)
    visit = 0
    for owner in owners:
        out_at = start + _dt.timedelta(minutes=rng.randrange(6 * 60))
        back_at = out_at + _dt.timedelta(minutes=rng.randrange(30, 10 * 60))
        gate = f"{owner.unit.community}-北门"
        for direction, at in (("out", out_at), ("in", back_at)):
            yield GateEvent(
                subject_id=owner.subject_id,
                subject_kind="resident",
                gate_id=gate,
                direction=direction,
                at=at,
                method=rng.choice(("card", "qr", "face")),
            )
        if owner.vehicle is not None:
            yield ParkingEvent(
                subject_id=owner.subject_id,
                plate=owner.vehicle.plate,
                entered_at=back_at,
                space=owner.vehicle.parking_space,
                fee=Decimal("0.00"),
            )
        for _ in range(visits):
            visit += 1
            pass_number = f"demo-visit-{visit:05d}"
            arrived = start + _dt.timedelta(minutes=rng.randrange(12 * 60))
            yield VisitorEntry(
                subject_id=pass_number,
                visitor_name=rng.choice(_SURNAMES) + rng.choice(_GIVEN),
                phone=rng.choice(_PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}",
                host_community=owner.unit.community,
                host_building=owner.unit.building,
                host_unit_number=owner.unit.unit_number,
                host_subject_id=owner.subject_id,
                visit_purpose=rng.choice(("guest", "delivery", "service")),
                arrived_at=arrived,
                left_at=arrived + _dt.timedelta(minutes=rng.randrange(10, 180)),
            )
            yield GateEvent(
                subject_id=pass_number,
                subject_kind="visitor",
                gate_id=gate,
                direction="in",
                at=arrived,
                method=rng.choice(("qr", "guard")),
            )
