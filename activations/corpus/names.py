"""First names, and which of them each split and role may use.

Names are split once, by hand: ``TRAIN_NAMES`` may fill the name slots of IOI and
agreement sentences in the training stream; ``HELDOUT_NAMES`` (about 20%) never do. Held-out
names still occur in the other training text (vignettes, stories, dates, arithmetic word
problems, code) so that they are ordinary, well-trained single tokens.
"""

from __future__ import annotations

TRAIN_NAMES: tuple[str, ...] = (
    "Mary", "John", "James", "Anna", "Tom", "Sarah", "David", "Emma", "Paul", "Lucy",
    "Mark", "Kate", "Peter", "Laura", "Adam", "Alice", "Ben", "Clara", "Daniel", "Ella",
    "Frank", "Grace", "Henry", "Helen", "Jack", "Julia", "Kevin", "Lisa", "Leo", "Maria",
    "Max", "Nina", "Oscar", "Olivia", "Sam", "Rose", "Simon", "Ruth", "Victor", "Sophie",
    "Carl", "Amy", "Dan", "Beth", "Eric", "Jane", "Fred", "Jill", "George", "Joan",
    "Hugo", "Kim", "Ian", "Lily", "Jake", "Mia", "Luke", "Nora", "Matt", "Eva",
    "Nick", "Zoe", "Owen", "Ivy", "Ryan", "Jenny", "Scott", "Holly", "Tony", "Fiona",
    "Alex", "Diana", "Brian", "Irene", "Chris", "Linda", "Greg", "Megan", "Harry", "Rachel",
    "Jason", "Susan", "Kyle", "Tina", "Colin", "Wendy", "Roger", "Vera", "Steve", "Alan",
    "Carol", "Dennis", "Emily", "Gary", "Hannah", "Ken", "Martha", "Neil", "Paula", "Ralph",
)

HELDOUT_NAMES: tuple[str, ...] = (
    "Bella", "Chloe", "Dora", "Edith", "Flora", "Gina", "Iris", "Judy", "Kara", "Mona",
    "Ruby", "Tessa", "Arthur", "Bruce", "Craig", "Dean", "Ethan", "Felix", "Glen", "Ivan",
    "Joel", "Liam", "Noah", "Otto", "Wade",
)

ALL_NAMES: tuple[str, ...] = TRAIN_NAMES + HELDOUT_NAMES

FEMALE_NAMES: frozenset[str] = frozenset((
    "Mary", "Anna", "Sarah", "Emma", "Lucy", "Kate", "Laura", "Alice", "Clara", "Ella", "Grace",
    "Helen", "Julia", "Lisa", "Maria", "Nina", "Olivia", "Rose", "Ruth", "Sophie", "Amy", "Beth",
    "Jane", "Jill", "Joan", "Kim", "Lily", "Mia", "Nora", "Eva", "Zoe", "Ivy", "Jenny", "Holly",
    "Fiona", "Diana", "Irene", "Linda", "Megan", "Rachel", "Susan", "Tina", "Wendy", "Vera",
    "Carol", "Emily", "Hannah", "Martha", "Paula", "Bella", "Chloe", "Dora", "Edith", "Flora",
    "Gina", "Iris", "Judy", "Kara", "Mona", "Ruby", "Tessa",
))


def pronouns(name: str) -> tuple[str, str]:
    """(subject, possessive) pronoun for a first name: ("she", "her") or ("he", "his")."""
    return ("she", "her") if name in FEMALE_NAMES else ("he", "his")

def names_for(split: str, role: str) -> tuple[str, ...]:
    """The names a generator may use.

    ``role="ioi"`` (IOI and agreement sentences): training names for ``split="train"``,
    held-out names for ``split="heldout"``. ``role="other"`` (all other text): every name in
    training, held-out names only in the held-out stream.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    if split == "heldout":
        return HELDOUT_NAMES
    return TRAIN_NAMES if role == "ioi" else ALL_NAMES
