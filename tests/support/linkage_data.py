"""A synthetic pair of customer files for record linkage: the same people as a TIMS counter and
a Salesforce org hold them, damaged the ways real data is (bench/matching_bench.py, the
``identity link`` tests).

Deterministic for a seed. The two sides never share an email or an id: TIMS has the company
address (``jdoe@acme.example``), Salesforce a personal one. Damage, each drawn per record:
typos (insert, delete, substitute, adjacent transposition) in names, nicknames (Robert ↔ Bob),
first and last name exchanged, fields missing, "Street"/"St" and "Inc"/"Incorporated", state and
country written out or coded, a mistyped postcode or phone digit, day and month of the birth date
exchanged, a person who moved. Households: people sharing a street address, mostly a last name,
sometimes a landline; they are the hard non-matches. ``person`` is the truth column.
"""

from __future__ import annotations

import csv
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Truth", "generate", "write_files", "LEFT_COLUMNS", "RIGHT_COLUMNS", "FIELDS_YAML"]

_FIRST = ("robert william james john michael david richard joseph thomas charles christopher daniel matthew "
          "anthony donald steven paul andrew joshua kenneth kevin brian george edward ronald timothy jason "
          "jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin samuel "
          "frank gregory raymond alexander patrick jack dennis jerry tyler aaron henry douglas peter adam "
          "mary patricia jennifer linda elizabeth barbara susan jessica sarah karen nancy lisa margaret betty "
          "sandra ashley dorothy kimberly emily donna michelle carol amanda melissa deborah stephanie rebecca "
          "laura sharon cynthia kathleen amy shirley angela helen anna brenda pamela nicole samantha katherine "
          "christine debra rachel catherine carolyn janet ruth maria heather diane virginia julie joyce victoria "
          "olivia kelly christina lauren joan evelyn judith megan cheryl andrea hannah martha jacqueline").split()
_LAST = ("smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez "
         "wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark "
         "ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams "
         "nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker "
         "cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper "
         "peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez wood james "
         "bennett gray mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster jimenez "
         "powell jenkins perry russell sullivan bell coleman butler henderson barnes gonzales fisher vasquez "
         "simmons romero jordan patterson alexander hamilton graham reynolds griffin wallace moreno west cole "
         "hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford castro marshall owens").split()
_SYLLABLES = "an ber cal dor el fen gar hol ist jen kor lan mer nor ost pel quin ros sten tor ul van wen yar zel".split()
_STREETS = ("main oak pine maple cedar elm washington lake hill park walnut sunset lincoln jackson church river "
            "spring highland forest meadow ridge valley willow chestnut franklin madison jefferson adams center "
            "mill school north south").split()
_SUFFIXES = (("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"), ("Lane", "Ln"),
             ("Boulevard", "Blvd"), ("Court", "Ct"), ("Place", "Pl"))
_CITIES = (("Springfield", "IL", "Illinois", "627"), ("Columbus", "OH", "Ohio", "432"), ("Austin", "TX", "Texas", "787"),
           ("Denver", "CO", "Colorado", "802"), ("Portland", "OR", "Oregon", "972"), ("Madison", "WI", "Wisconsin", "537"),
           ("Albany", "NY", "New York", "122"), ("Salem", "MA", "Massachusetts", "019"), ("Tulsa", "OK", "Oklahoma", "741"),
           ("Boise", "ID", "Idaho", "837"), ("Reno", "NV", "Nevada", "895"), ("Dayton", "OH", "Ohio", "454"),
           ("Fresno", "CA", "California", "937"), ("Raleigh", "NC", "North Carolina", "276"), ("Tampa", "FL", "Florida", "336"))
_COMPANY_WORDS = ("acme apex summit pioneer atlas liberty eagle harbor keystone beacon granite cascade frontier "
                  "northwind bluewater ironwood redrock silverline evergreen lakeside").split()
_COMPANY_KINDS = ("Welding", "Gas Supply", "Fabrication", "Machine Works", "Industrial", "Construction", "Metals")
_LEGAL = (("Inc", "Incorporated", "Inc."), ("LLC", "L.L.C.", "LLC"), ("Co", "Company", "Co."), ("Corp", "Corporation", "Corp."))
_NICKNAMES = {"robert": "bob", "william": "bill", "james": "jim", "john": "jack", "michael": "mike", "richard": "rick",
              "joseph": "joe", "thomas": "tom", "charles": "charlie", "christopher": "chris", "daniel": "dan",
              "matthew": "matt", "anthony": "tony", "donald": "don", "steven": "steve", "andrew": "andy",
              "kenneth": "ken", "edward": "ed", "ronald": "ron", "timothy": "tim", "jacob": "jake", "nicholas": "nick",
              "samuel": "sam", "gregory": "greg", "alexander": "alex", "patrick": "pat", "benjamin": "ben",
              "elizabeth": "liz", "patricia": "patty", "jennifer": "jen", "barbara": "barb", "susan": "sue",
              "jessica": "jess", "margaret": "maggie", "deborah": "debbie", "rebecca": "becky", "katherine": "kate",
              "catherine": "cathy", "samantha": "sam", "christina": "tina", "victoria": "vicky", "judith": "judy"}
_FREEMAIL = ("mail.example", "inbox.example", "post.example")

LEFT_COLUMNS = ("customer_id", "first_name", "last_name", "email", "phone", "company", "street", "city", "postal_code",
                "state", "country", "birth_date", "person")
RIGHT_COLUMNS = ("Id", "FirstName", "LastName", "Email", "Phone", "Company", "MailingStreet", "MailingCity",
                 "MailingPostalCode", "MailingState", "MailingCountry", "Birthdate", "person")
#: the fields.yaml of these two files for ``stream-app identity link``
FIELDS_YAML = """\
left:
  id: customer_id
  first_name: first_name
  last_name: last_name
  email: email
  phone: phone
  company: company
  street: street
  city: city
  postcode: postal_code
  state: state
  country: country
  birth_date: birth_date
right:
  id: Id
  first_name: FirstName
  last_name: LastName
  email: Email
  phone: Phone
  company: Company
  street: MailingStreet
  city: MailingCity
  postcode: MailingPostalCode
  state: MailingState
  country: MailingCountry
  birth_date: Birthdate
"""


@dataclass(frozen=True)
class Truth:
    """The generated files and the pairs that are one person."""

    left: list[dict[str, str]]
    right: list[dict[str, str]]
    matches: set[tuple[str, str]]


@dataclass
class _Person:
    key: int
    first: str
    last: str
    street_no: int
    street: str
    suffix: int
    city: int
    zip: str
    phone: str
    company: tuple[str, int] | None
    birth: str


def _last_name(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_LAST)
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3))))


def _zip(rng: random.Random, city: int) -> str:
    return _CITIES[city][3] + f"{rng.randrange(100):02d}"


def _phone(rng: random.Random) -> str:
    return f"{rng.randrange(201, 990)}{rng.randrange(200, 1000)}{rng.randrange(10000):04d}"


def _people(rng: random.Random, count: int) -> list[_Person]:
    people: list[_Person] = []
    while len(people) < count:
        city = rng.randrange(len(_CITIES))
        head = _Person(len(people), rng.choice(_FIRST), _last_name(rng), rng.randrange(1, 9999), rng.choice(_STREETS),
                       rng.randrange(len(_SUFFIXES)), city, _zip(rng, city), _phone(rng),
                       (f"{rng.choice(_COMPANY_WORDS).title()} {rng.choice(_COMPANY_KINDS)}", rng.randrange(len(_LEGAL)))
                       if rng.random() < 0.7 else None,
                       f"{rng.randrange(1945, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}")
        people.append(head)
        if rng.random() < 0.25:  # a household: one to three more people at the same address
            for _ in range(rng.choice((1, 1, 2, 3))):
                if len(people) >= count:
                    break
                member = _Person(len(people), rng.choice(_FIRST), head.last if rng.random() < 0.7 else _last_name(rng),
                                 head.street_no, head.street, head.suffix, head.city, head.zip,
                                 head.phone if rng.random() < 0.3 else _phone(rng), None if rng.random() < 0.5 else head.company,
                                 f"{rng.randrange(1945, 2004)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}")
                people.append(member)
    return people


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(4)
    letter = rng.choice(string.ascii_lowercase)
    if kind == 0:
        return text[:i] + letter + text[i:]
    if kind == 1:
        return text[:i] + text[i + 1:]
    if kind == 2:
        return text[:i] + letter + text[i + 1:]
    return text[:i - 1] + text[i] + text[i - 1] + text[i + 1:]


def _digit_typo(rng: random.Random, digits: str) -> str:
    i = rng.randrange(len(digits))
    return digits[:i] + str((int(digits[i]) + rng.randrange(1, 10)) % 10) + digits[i + 1:]


def _maybe(rng: random.Random, p: float, value: str) -> str:
    """``value``, or blank with probability ``p`` (a field left empty)."""
    return "" if rng.random() < p else value


def _view(rng: random.Random, person: _Person, moved: bool) -> dict[str, str]:
    """One system's record of ``person``, with that system's damage (keys are the roles)."""
    first, last = person.first, person.last
    if first in _NICKNAMES and rng.random() < 0.2:
        first = _NICKNAMES[first]
    if rng.random() < 0.12:
        first = _typo(rng, first)
    if rng.random() < 0.12:
        last = _typo(rng, last)
    if rng.random() < 0.03:
        first, last = last, first
    street_no, street, suffix, city, zip_code = person.street_no, person.street, person.suffix, person.city, person.zip
    if moved:
        city = rng.randrange(len(_CITIES))
        street_no, street, suffix, zip_code = rng.randrange(1, 9999), rng.choice(_STREETS), rng.randrange(len(_SUFFIXES)), _zip(rng, city)
    name, code, state, _ = _CITIES[city]
    street_text = f"{street_no} {street.title()} {_SUFFIXES[suffix][rng.randrange(2)]}"
    if rng.random() < 0.05:
        street_text = _typo(rng, street_text)
    company = ""
    if person.company:
        company = f"{person.company[0]} {rng.choice(_LEGAL[person.company[1]])}" if rng.random() < 0.7 else person.company[0]
    birth = person.birth
    if rng.random() < 0.04:
        birth = f"{birth[:4]}-{birth[8:10]}-{birth[5:7]}"
    zip_text = _digit_typo(rng, zip_code) if rng.random() < 0.03 else zip_code
    phone = _digit_typo(rng, person.phone) if rng.random() < 0.04 else person.phone
    return {
        "first_name": first.title(), "last_name": last.title(),
        "phone": _maybe(rng, 0.25, f"({phone[:3]}) {phone[3:6]}-{phone[6:]}" if rng.random() < 0.5 else f"+1{phone}"),
        "company": _maybe(rng, 0.2, company), "street": _maybe(rng, 0.1, street_text), "city": _maybe(rng, 0.05, name),
        "postcode": _maybe(rng, 0.1, zip_text), "state": code if rng.random() < 0.7 else state,
        "country": rng.choice(("US", "USA", "United States", "")), "birth_date": _maybe(rng, 0.4, birth),
    }


def _company_email(person: _Person) -> str:
    domain = (person.company[0].split()[0].lower() if person.company else "home") + ".example"
    return f"{person.first[0]}{person.last}@{domain}"


def generate(people: int = 2000, seed: int = 7, overlap: float = 0.8) -> Truth:
    """Two files of about ``overlap`` × ``people`` records each; their common people are the matches."""
    rng = random.Random(seed)
    population = _people(rng, people)
    left: list[dict[str, str]] = []
    right: list[dict[str, str]] = []
    on_left: dict[int, str] = {}
    matches: set[tuple[str, str]] = set()
    for person in population:
        in_left, in_right = rng.random() < overlap, rng.random() < overlap
        moved = rng.random() < 0.05
        if in_left:
            view = _view(rng, person, moved=False)
            record_id = f"C{rng.randrange(10**8):08d}"
            on_left[person.key] = record_id
            left.append(dict(zip(LEFT_COLUMNS, (record_id, view["first_name"], view["last_name"],
                                                _maybe(rng, 0.3, _company_email(person)), view["phone"], view["company"],
                                                view["street"], view["city"], view["postcode"], view["state"],
                                                view["country"], view["birth_date"], f"p{person.key}"))))
        if in_right:
            view = _view(rng, person, moved=moved)
            record_id = "003" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(15))
            email = f"{person.first}.{person.last}{rng.randrange(10, 99)}@{rng.choice(_FREEMAIL)}"
            right.append(dict(zip(RIGHT_COLUMNS, (record_id, view["first_name"], view["last_name"], _maybe(rng, 0.2, email),
                                                  view["phone"], view["company"], view["street"], view["city"],
                                                  view["postcode"], view["state"], view["country"],
                                                  view["birth_date"], f"p{person.key}"))))
            if in_left:
                matches.add((on_left[person.key], record_id))
    rng.shuffle(left)
    rng.shuffle(right)
    return Truth(left, right, matches)


def roles(record: dict[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """A generated row as role → value (the column order of LEFT_COLUMNS/RIGHT_COLUMNS)."""
    names = ("id", "first_name", "last_name", "email", "phone", "company", "street", "city", "postcode", "state",
             "country", "birth_date")
    return {role: record[column] for role, column in zip(names, columns)}


def write_files(directory: Path, people: int, seed: int) -> tuple[Path, Path, Path, int]:
    """left.csv, right.csv and fields.yaml of a generated pair in ``directory``, and the number
    of true pairs."""
    data = generate(people=people, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows, columns in (("left.csv", data.left, LEFT_COLUMNS), ("right.csv", data.right, RIGHT_COLUMNS)):
        with (directory / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    (directory / "fields.yaml").write_text(FIELDS_YAML)
    return directory / "left.csv", directory / "right.csv", directory / "fields.yaml", len(data.matches)
