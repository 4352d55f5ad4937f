"""Finding persons (holders), and who may see them."""

from __future__ import annotations

import uuid

from carnet_identity.domain.identifiers import normalise_email, normalise_ins
from carnet_identity.domain.model import Person
from carnet_identity.store import IdentityStore
from carnet_kit.auth import Principal
from carnet_kit.errors import InvalidArgument, NotFound, PermissionDenied

# Roles that may look up any person: other services, software clients (patient
# matching), professionals (finding their patient) and operators (support).
LOOKUP_ANY_ROLES = frozenset({"service", "client", "professional", "operator"})


def may_see_person(caller: Principal, person_id: uuid.UUID) -> bool:
    """Whether the caller may read this person: the roles above, the holder, or whoever acts for them."""
    if caller.role in LOOKUP_ANY_ROLES:
        return True
    target = str(person_id)
    if caller.role == "holder":
        return caller.subject == target
    return caller.role in ("representative", "helper") and target in (caller.acting_for, caller.subject)


class PersonDirectory:
    """Reads persons for other services and for the holders themselves."""

    def __init__(self, store: IdentityStore) -> None:
        self._store = store

    async def lookup(self, caller: Principal, key: str, value: str) -> Person:
        """A person by ``key`` ``ins`` (with or without its key), ``email`` or ``person_id``.

        A holder asking about somebody else gets PERMISSION_DENIED whether or not that
        person exists, so holders cannot probe the registry.
        """
        if key == "ins":
            person = await self._store.person_by_nir(normalise_ins(value).number)
        elif key == "email":
            person = await self._store.person_by_email(normalise_email(value))
        elif key == "person_id":
            try:
                wanted = uuid.UUID(value)
            except ValueError:
                raise InvalidArgument("person_id is not an id", field="person_id", reason="FIELD_INVALID") from None
            person = await self._store.person_by_id(wanted)
        else:
            raise InvalidArgument("give an ins, an email or a person_id", field="key", reason="FIELD_INVALID")
        if caller.role not in LOOKUP_ANY_ROLES and (person is None or not may_see_person(caller, person.id)):
            raise PermissionDenied("you may only look up your own record", reason="CALLER_NOT_ALLOWED")
        if person is None:
            raise NotFound("no such person", reason="PERSON_NOT_FOUND")
        return person
