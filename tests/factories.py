"""Test data made through the real write services."""

from __future__ import annotations

import factory

from portal import services
from portal.models import Hospital, Role, User

PASSWORD = "correct-horse-battery"


class HospitalFactory(factory.Factory):
    class Meta:
        model = Hospital

    code = factory.Sequence(lambda n: f"h{n:03d}")
    name = factory.Sequence(lambda n: f"第{n}人民医院")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return services.hospital_create(**kwargs)


class UserFactory(factory.Factory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    password = PASSWORD
    role = Role.DOCTOR
    hospital = factory.SubFactory(HospitalFactory)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        if kwargs.get("role") == Role.PLATFORM_ADMIN:
            kwargs["hospital"] = None
        return services.user_create(**kwargs)
